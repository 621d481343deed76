#!/usr/bin/env python3
"""Minimal JSON-RPC client for an SPDK app's Unix socket (no SPDK python package needed); shared by
tests/spdk/jrpc.py and scripts/bench/bdevperf_rpc.py."""
import json
import socket


def call(sock_path, method, params=None, timeout=60.0):
    """Send one request and return the decoded answer object."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    req = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        req["params"] = params
    s.sendall(json.dumps(req).encode())
    buf = b""
    dec = json.JSONDecoder()
    while True:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise RuntimeError(f"{method}: connection closed before an answer")
        buf += chunk
        try:
            obj, _ = dec.raw_decode(buf.decode())
        except ValueError:
            continue
        s.close()
        return obj

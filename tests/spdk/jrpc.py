#!/usr/bin/env python3
"""Minimal JSON-RPC client for SPDK's Unix socket: jrpc.py SOCK METHOD [PARAMS-JSON]."""
import json
import socket
import sys


def call(sock, method, params=None, timeout=60):
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(timeout)
    s.connect(sock)
    req = {"jsonrpc": "2.0", "id": 1, "method": method}
    if params is not None:
        req["params"] = params
    s.sendall(json.dumps(req).encode())
    buf = b""
    dec = json.JSONDecoder()
    while True:
        d = s.recv(1 << 20)
        if not d:
            raise RuntimeError("connection closed")
        buf += d
        try:
            obj, _ = dec.raw_decode(buf.decode())
            s.close()
            return obj
        except ValueError:
            continue


if __name__ == "__main__":
    params = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(call(sys.argv[1], sys.argv[2], params)))

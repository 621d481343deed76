#!/usr/bin/env python3
"""Minimal JSON-RPC client for a bdevperf started with -z (no SPDK python package needed).

    bdevperf_rpc.py SOCK wait                 wait until the socket answers (bdevperf is up)
    bdevperf_rpc.py SOCK perform_tests JSON   run one test; print the result object as JSON
    bdevperf_rpc.py SOCK METHOD [JSON]        any other RPC the app serves (bdev_jraid_get_bdevs,
                                              bdev_get_bdevs, ...); print its result as JSON

perform_tests takes {queue_depth, io_size, workload_type, time_in_sec, rw_percentage}; its answer is
bdevperf's own JSON ({"results": [{"job", "iops", "mibps", "avg_latency_us", ...}], "core_count"}).
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
from spdk_jsonrpc import call  # noqa: E402


def main():
    sock, what = sys.argv[1], sys.argv[2]
    if what == "wait":
        deadline = time.time() + float(sys.argv[3] if len(sys.argv) > 3 else 60)
        while time.time() < deadline:
            try:
                r = call(sock, "spdk_get_version", timeout=2)
                if "result" in r:
                    return 0
            except OSError:
                pass
            time.sleep(0.1)
        print(f"bdevperf at {sock} did not come up", file=sys.stderr)
        return 1
    params = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    r = call(sock, what, params, timeout=600.0)
    if "error" in r:
        print(f"{what} failed: {json.dumps(r['error'])}", file=sys.stderr)
        return 1
    print(json.dumps(r.get("result")))
    return 0


if __name__ == "__main__":
    sys.exit(main())

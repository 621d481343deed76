#!/usr/bin/env python3
"""JSON-RPC to SPDK's Unix socket from the shell: jrpc.py SOCK METHOD [PARAMS-JSON]."""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "scripts"))
from spdk_jsonrpc import call  # noqa: E402

if __name__ == "__main__":
    params = json.loads(sys.argv[3]) if len(sys.argv) > 3 else None
    print(json.dumps(call(sys.argv[1], sys.argv[2], params)))

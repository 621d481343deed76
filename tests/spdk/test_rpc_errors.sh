#!/usr/bin/env bash
# (e) bad RPC inputs, shared journals, save_config round trip (see rpc_errors.py).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap stop_tgt EXIT
sock=$WORK/rpc_errors.sock
start_tgt "$sock" "$WORK/rpc_errors.log"
(cd "$here" && python3 rpc_errors.py "$sock") || { tail -20 "$WORK/rpc_errors.log" >&2; die "rpc_errors.py"; }
log "test_rpc_errors: OK"

# Helpers for tests that drive a bdevperf started with -z (waiting for RPC) while they change
# the volume under its load over the same socket. Sourced after lib.sh.
BDEVPERF_PY=${BDEVPERF_PY:-$SPDK_DIR/examples/bdev/bdevperf/bdevperf.py}
# Memory for these runs: plain memory unless told otherwise (hugepages are shared on this
# machine); BP_MEM_ARGS overrides.
if [ -z "${BP_MEM_ARGS+x}" ]; then BP_MEM_ARGS=(--no-huge -s 1536 --disable-cpumask-locks); fi

# bp_start SOCK LOG CFG ARGS...: start bdevperf -z with the module preloaded; sets BP_PID.
bp_start() {
    local sock=$1 logf=$2 cfg=$3; shift 3
    rm -f "$sock"
    env LD_LIBRARY_PATH="$SPDK_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" LD_PRELOAD="$JRAID_LIB" \
        "$BDEVPERF" --json "$cfg" -z -r "$sock" -m 0x3 "${BP_MEM_ARGS[@]}" "$@" >"$logf" 2>&1 &
    BP_PID=$!
    for _ in $(seq 1 300); do
        [ -S "$sock" ] && rpc "$sock" bdev_jraid_get_bdevs >/dev/null 2>&1 && return 0
        kill -0 "$BP_PID" 2>/dev/null || { tail -40 "$logf" >&2; die "bdevperf exited"; }
        sleep 0.1
    done
    die "bdevperf did not come up"
}

bp_stop() {
    [ -n "${BP_PID:-}" ] || return 0
    kill -TERM "$BP_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$BP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BP_PID" 2>/dev/null || true
    wait "$BP_PID" 2>/dev/null || true
    BP_PID=
}

# bp_perform SOCK OUT: run the configured test (bdevperf.py perform_tests) in the background;
# sets PERF_PID. Its output goes to OUT.
bp_perform() {
    python3 "$BDEVPERF_PY" -s "$1" -t 600 perform_tests >"$2" 2>&1 &
    PERF_PID=$!
}

# bp_check_total LOG WHAT: the last "Total" line of a bdevperf log has 0 failed I/O per second;
# prints "IOPS MiB/s".
bp_check_total() {
    local total iops mibs fails
    total=$(tr '\r' '\n' <"$1" | grep -aE '^ *Total +: +[0-9]' | tail -1 | sed 's/.*Total *://')
    [ -n "$total" ] || { tail -30 "$1" >&2; die "$2: no bdevperf result"; }
    read -r iops mibs fails _ <<<"$total"
    awk -v f="$fails" 'BEGIN{exit !(f == 0)}' || { tail -30 "$1" >&2; die "$2: $fails failed I/O per second"; }
    echo "$iops $mibs"
}

# jget SOCK EXPR: evaluate a Python expression over v = bdev_jraid_get_bdevs()[0].
jget() {
    rpc_ok "$1" bdev_jraid_get_bdevs | python3 -c "import json,sys; v=json.load(sys.stdin)[0]; print($2)"
}

#!/usr/bin/env bash
# jraid time to serve after a crash: restart-to-registered and restart-to-resynced with N stripes
# listed in the journal, online recovery (the volume serves I/O while it resyncs; the default)
# beside the recovery that holds the volume back until it has resynced (as before; still
# `bdev_jraid_set_options {"recovery_online": false}`), side by side in one run.
#
#   scripts/bench/time_to_serve.sh [--counts "100 10000 100000"] [--reps N] [--out DIR]
#
# Set-up: four sparse AIO member files (4 KiB strips, 131,072 stripes) and an 8 MiB AIO journal
# file, formatted once by bdev_jraid_create in bdevperf -z (no test is run) and stopped cleanly.
# For each count and mode: forge_listed.py makes the journal list N stripes spread over the volume
# (a checkpoint one generation above the newest, as a crash leaves it), then bdevperf -z starts
# over the same files; examine re-assembles r0 and recovers. Times come from the app's own log
# timestamps: restart = its first line, registered = "jraid volume r0 online", resynced = the
# recovery's "recovered (...)" line. The volume is stopped cleanly (SIGINT) between runs.
#
# Output: results.md (printed) and logs/ under --out (default results/time-to-serve-<stamp>/).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
PYTHON=${PYTHON:-python3}
counts="100 10000 100000" reps=1 out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --counts) counts=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "time_to_serve.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
log() { echo "[$(date +%T)] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# shellcheck source=scripts/bench/common.sh
source "$here/common.sh"
bench_find_spdk
LIBPATH=$SPDK_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
stamp=$(date +%Y%m%d-%H%M%S)
out=${out:-$root/results/time-to-serve-$stamp}
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/jraid-tts.XXXXXX)
bench_setup_cleanup
bench_mem_args 512

stripes=131072
member_bytes=$((1024 * 1024 + stripes * 4096))
for i in 0 1 2 3; do truncate -s "$member_bytes" "$work/m$i"; done
truncate -s 8M "$work/jl"
aio() {
    local sep=""
    for n in m0 m1 m2 m3 jl; do
        printf '%s{"method":"bdev_aio_create","params":{"name":"%s","filename":"%s","block_size":4096}}' \
            "$sep" "$n" "$work/$n"
        sep=","
    done
}
config() { # FILE ENTRIES
    printf '{"subsystems":[{"subsystem":"bdev","config":[%s,{"method":"bdev_wait_for_examine"}]}]}\n' "$2" >"$1"
}
create='{"method":"bdev_jraid_create","params":{"name":"r0","strip_size_kb":4,"base_bdevs":["m0","m1","m2","m3"],"journal_bdev":"jl","assume_clean":true}}'
config "$work/create.json" "$(aio),$create"

run_app() { # CONFIG LOG WAIT: bdevperf -z until r0 is registered and WAIT (a grep pattern) is
    # logged (or 600 s), then SIGINT
    local cfg=$1 logf=$2 until=$3 sock=$work/bp.sock
    rm -f "$sock"
    env LD_LIBRARY_PATH="$LIBPATH" LD_PRELOAD="$JRAID_LIB" "$BDEVPERF" --json "$cfg" -m 0x1 \
        "${MEM_ARGS[@]}" -z -r "$sock" -q 1 -o 4096 -w randwrite -t 1 >"$logf" 2>&1 &
    BP_PID=$!
    for _ in $(seq 1 6000); do
        grep -aq "jraid volume r0 online" "$logf" && grep -aq "$until" "$logf" && break
        kill -0 "$BP_PID" 2>/dev/null || { tail -20 "$logf" >&2; die "bdevperf exited ($logf)"; }
        sleep 0.1
    done
    bench_stop_bdevperf
    grep -aq "jraid volume r0 stopped" "$logf" || { tail -20 "$logf" >&2; die "r0 did not stop cleanly ($logf)"; }
}

log "formatting r0 (4 x $((member_bytes >> 20)) MiB sparse AIO files, $stripes stripes)"
run_app "$work/create.json" "$out/logs/create.log" "jraid volume r0 online"

rows=()
for n in $counts; do
    for rep in $(seq 1 "$reps"); do
        for mode in offline online; do
            on=$([ $mode = online ] && echo true || echo false)
            config "$work/restart.json" \
                "{\"method\":\"bdev_jraid_set_options\",\"params\":{\"recovery_online\":$on}},$(aio)"
            "$PYTHON" "$here/forge_listed.py" "$work/jl" 0 "$n" "$stripes" >&2
            logf=$out/logs/restart-$n-$mode-$rep.log
            run_app "$work/restart.json" "$logf" "recovered ("
            row=$("$PYTHON" - "$logf" "$n" "$mode" <<'EOF'
import re, sys
from datetime import datetime
logf, n, mode = sys.argv[1], sys.argv[2], sys.argv[3]
def t(line):
    m = re.match(r"\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d+)\]", line)
    return datetime.strptime(m.group(1), "%Y-%m-%d %H:%M:%S.%f") if m else None
start = reg = done = None
resynced = ""
for line in open(logf, errors="replace"):
    ts = t(line)
    if ts is None:
        continue
    start = start or ts
    if "jraid volume r0 online" in line:
        reg = reg or ts
    m = re.search(r"recovered \((\d+) stripes resynced", line)
    if m:
        done, resynced = ts, m.group(1)
assert start and reg and done, f"{logf}: missing log lines"
print(f"{n} {mode} {(reg - start).total_seconds():.3f} {(done - start).total_seconds():.3f} {resynced}")
EOF
            )
            log "$row"
            rows+=("$row")
        done
    done
done

{
    echo "# jraid time to serve after a crash $stamp"
    echo
    echo "- $(nproc) CPU(s), $(uname -r); $SPDK_DIR; jraid $(git -C "$root" describe --always --dirty 2>/dev/null) ($JRAID_LIB)"
    echo "- bdevperf -z ${MEM_ARGS[*]}, 4 sparse AIO members, 4 KiB strips, $stripes stripes, 8 MiB AIO journal; N listed stripes forged into the journal (scripts/bench/forge_listed.py); times from the app log (first line = restart)"
    echo
    echo "| listed stripes | recovery | restart → registered (s) | restart → resynced (s) | resynced |"
    echo "|---:|---|---:|---:|---:|"
    for r in "${rows[@]}"; do
        read -r n mode reg resync_s resynced <<<"$r"
        label=$([ "$mode" = online ] && echo "online (serves while resyncing)" || echo "held back until resynced (before)")
        printf "| %s | %s | %s | %s | %s |\n" "$n" "$label" "$reg" "$resync_s" "$resynced"
    done
} >"$out/results.md"
cat "$out/results.md"
log "results in $out"

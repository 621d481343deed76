#!/usr/bin/env bash
# Cost of a journal of two bdevs beside one, under SPDK: the same jraid volume (four null
# members) with one malloc journal bdev, with two in "alternate" mode, with two in "mirror"
# mode, and with the journal on the members ("journal_on_members": a mirrored copy in the
# journal areas of members 0 and 1), side by side in one run (interleaved rounds), one reactor,
# bdevperf 4 KiB random writes at QD 1 and QD 128.
#
#   scripts/bench/journal_devices.sh [-t SECONDS] [--reps N] [--member-size SIZE] [--out DIR]
#
#   -t SECONDS       seconds per test (default 5)
#   --reps N         rounds (default 3); each round runs every (mode, QD) once, the medians
#                    are compared
#   --member-size S  null member size in MiB (default 1024)
#   --out DIR        results folder (default results/journal-devices-<date>-<time>/)
#
# Malloc journals cost no device time: what the rows compare is the CPU and the I/O count a
# record costs in each mode (alternate: each record to one device, plus the delta the other one
# got before it; mirror: every record to both; on the members: as mirror, to two null members). The io_uring runtime's `jraid bench` measures
# the same over files (docs/bench/20261202-journal-devices/uring.md).
#
# Environment as scripts/bench/journal_scale.sh (SPDK_DIR, BDEVPERF, JRAID_LIB, NO_HUGE).
# Output: results.md (printed at the end), raw.txt (one line per test), logs/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
PYTHON=${PYTHON:-python3}

T=5 reps=3 member_mb=1024 out=""
while [ $# -gt 0 ]; do
    case "$1" in
        -t|--time) T=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --member-size) member_mb=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
        *) echo "journal_devices.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done
for v in "$T" "$reps" "$member_mb"; do
    case "$v" in '' | *[!0-9]* | 0) echo "journal_devices.sh: want whole numbers > 0" >&2; exit 2 ;; esac
done

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# shellcheck source=scripts/bench/common.sh
source "$here/common.sh"
bench_find_spdk
LIBPATH=$SPDK_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
stamp=$(date +%Y%m%d-%H%M%S)
out=${out:-$root/results/journal-devices-$stamp}
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/jraid-jdev.XXXXXX)
bench_setup_cleanup
bench_mem_args 512
blk=4096
nb=$((member_mb * 1024 * 1024 / blk))

mk_config() { # one|alternate|mirror > config
    local mode=$1 i journal
    echo '{"subsystems":[{"subsystem":"bdev","config":['
    for i in 0 1 2 3; do
        echo "{\"method\":\"bdev_null_create\",\"params\":{\"name\":\"m$i\",\"num_blocks\":$nb,\"block_size\":$blk}},"
    done
    for i in 0 1; do
        echo "{\"method\":\"bdev_malloc_create\",\"params\":{\"name\":\"j$i\",\"num_blocks\":2048,\"block_size\":$blk}},"
    done
    if [ "$mode" = one ]; then
        journal='"journal_bdev":"j0"'
    elif [ "$mode" = members ]; then
        journal='"journal_on_members":true'
    else
        journal="\"journal_bdevs\":[\"j0\",\"j1\"],\"journal_mode\":\"$mode\""
    fi
    echo "{\"method\":\"bdev_jraid_create\",\"params\":{\"name\":\"r0\",\"strip_size_kb\":64,\"base_bdevs\":[\"m0\",\"m1\",\"m2\",\"m3\"],\"assume_clean\":true,$journal}},"
    echo '{"method":"bdev_wait_for_examine"}'
    echo ']}]}'
}

raw=$out/raw.txt
: >"$raw"
modes="one alternate mirror members"
for m in $modes; do mk_config "$m" >"$work/$m.json"; done
log "$reps rounds of: modes ($modes) x QD (1 128), ${T} s each, null members of $member_mb MiB"
for r in $(seq 1 "$reps"); do
    for qd in 1 128; do
        for m in $modes; do
            logf=$out/logs/$m-qd$qd-$r.log
            env LD_LIBRARY_PATH="$LIBPATH" LD_PRELOAD="$JRAID_LIB" "$BDEVPERF" --json "$work/$m.json" \
                -m 0x1 "${MEM_ARGS[@]}" -q "$qd" -o 4096 -w randwrite -t "$T" -T r0 >"$logf" 2>&1 ||
                die "bdevperf $m QD $qd failed: $(tail -5 "$logf")"
            # The Total row: IOPS, MiB/s, Fail/s, TO/s, average, min, max latency (us).
            line=$(grep -a "Total  *:" "$logf" | tail -1 || true)
            [ -n "$line" ] || die "no result in $logf"
            read -r iops lat <<<"$(sed "s/.*Total *: *//" <<<"$line" | awk '{print $1, $5}')"
            echo "$m $qd $r $iops $lat" >>"$raw"
            log "round $r QD $qd $m: $iops IOPS, $lat us average"
        done
    done
done

"$PYTHON" - "$raw" "$T" "$reps" "$member_mb" >"$out/results.md" <<'PY'
import statistics, sys
raw, t, reps, mb = sys.argv[1:5]
rows = [l.split() for l in open(raw) if l.strip()]
med = {}
for m, qd, _r, iops, lat in rows:
    med.setdefault((m, int(qd)), ([], []))
    med[(m, int(qd))][0].append(float(iops))
    med[(m, int(qd))][1].append(float(lat))
print(f"# Journal of one bdev vs two vs on the members (bdevperf, 1 core, 4 KiB random writes, {reps} rounds of {t} s, "
      f"4 null members of {mb} MiB, malloc journals; medians)\n")
print("| journal | QD | IOPS | ÷ one device | average latency (µs) |")
print("|---|---:|---:|---:|---:|")
for qd in (1, 128):
    base = statistics.median(med[("one", qd)][0])
    for m in ("one", "alternate", "mirror", "members"):
        i = statistics.median(med[(m, qd)][0])
        lat = statistics.median(med[(m, qd)][1])
        name = {"one": "one bdev", "alternate": "two, alternate", "mirror": "two, mirror",
                "members": "on the members (mirror)"}[m]
        print(f"| {name} | {qd} | {i:,.0f} | {i / base:.3f} | {lat:.1f} |")
PY
cat "$out/results.md"

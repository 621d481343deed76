#!/usr/bin/env bash
# Where the time of a jraid I/O goes, journal on beside journal off: bdevperf (one reactor, 4 null
# members, 8 MiB malloc journal) with perf sampling the reactor in the middle of the run, once per
# setting, then the nanoseconds per I/O of each symbol in both and their difference (samples ×
# time per I/O from the run's own IOPS), largest first.
#
#   scripts/bench/profile.sh [-t SECONDS] [--size SIZE] [-w WORKLOAD] [-q QD] [-o BYTES]
#                            [--out DIR] [LIB]
#
#   -t SECONDS   seconds per run (default 12; perf samples 5 s from the middle)
#   --size SIZE  bytes per member, K/M/G/T suffixes (default 1T)
#   -w, -q, -o   bdevperf workload (randwrite), queue depth (128), I/O size (4096)
#   --out DIR    keep perf.data, the symbol lists and the comparison there (default: a temp dir)
#   LIB          libjraid.so (default target/release/libjraid.so)
#
# Needs perf. Environment as for run.sh: SPDK_DIR, BDEVPERF, NO_HUGE=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
log() { echo "[$(date +%T)] $*" >&2; }
die() { echo "profile.sh: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/jraid-profile.XXXXXX)
# shellcheck source=scripts/bench/common.sh
. "$root/scripts/bench/common.sh"
bench_setup_cleanup

T=12 SIZE=1T WL=randwrite QD=128 IO=4096 OUT=""
while [ $# -gt 0 ]; do
    case $1 in
        -t) T=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        -w) WL=$2; shift 2 ;;
        -q) QD=$2; shift 2 ;;
        -o) IO=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,16p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) JRAID_LIB=$1; shift ;;
    esac
done
command -v perf >/dev/null || die "perf not found"
[ "$T" -ge 8 ] || die "-t must be at least 8 (perf samples 5 s after a 3 s start)"
bytes=$(numfmt --from=iec "$SIZE") || die "bad size $SIZE"
bench_find_spdk
bench_mem_args 512
dir=${OUT:-$work}
mkdir -p "$dir"

declare -A iops
for j in on off; do
    extra=""
    [ "$j" = off ] && extra=',"journal":false'
    cfg=$work/$j.json
    bench_null_volume_config "$cfg" "$bytes" "$extra"
    log "$WL, QD $QD, $IO bytes, members of $SIZE, journal $j: $T s, perf from 3 s to 8 s"
    env LD_LIBRARY_PATH="$SPDK_LIBDIR:$SPDK_DIR/dpdk/build/lib" LD_PRELOAD="$JRAID_LIB" \
        "$BDEVPERF" --json "$cfg" -m 0x1 "${MEM_ARGS[@]}" -q "$QD" -o "$IO" -w "$WL" -t "$T" -T r0 \
        >"$dir/$j.bdevperf" 2>&1 &
    BP_PID=$!
    sleep 3
    perf record -F 1999 -p "$BP_PID" -o "$dir/$j.perf.data" -- sleep 5 >/dev/null 2>&1 ||
        die "perf record failed"
    wait "$BP_PID" || { tail -20 "$dir/$j.bdevperf" >&2; die "bdevperf failed"; }
    BP_PID=""
    iops[$j]=$(awk '$1 == "r0" && $2 == ":" {v = $4} END {print v}' "$dir/$j.bdevperf")
    [ -n "${iops[$j]}" ] || die "no IOPS from bdevperf (journal $j)"
    log "journal $j: ${iops[$j]} IOPS"
    perf report -i "$dir/$j.perf.data" --no-children --sort symbol --stdio 2>/dev/null |
        awk '/^ +[0-9.]+%/ {p = $1; sub("%", "", p); $1 = ""; $2 = ""; print p "\t" $0}' >"$dir/$j.symbols"
done

python3 - "$dir/on.symbols" "${iops[on]}" "$dir/off.symbols" "${iops[off]}" <<'PY' | tee "$dir/compare.txt"
import sys
def load(path):
    d = {}
    for line in open(path):
        try:
            p, s = line.split("\t", 1)
            p = float(p)
        except ValueError:
            continue
        s = s.strip().rstrip("-").strip()
        d[s] = d.get(s, 0.0) + p
    return d
on, off = load(sys.argv[1]), load(sys.argv[3])
t_on, t_off = 1e9 / float(sys.argv[2]), 1e9 / float(sys.argv[4])
print(f"journal on {float(sys.argv[2]):,.0f} IOPS ({t_on:.0f} ns per I/O), "
      f"off {float(sys.argv[4]):,.0f} IOPS ({t_off:.0f} ns); on ÷ off {t_off / t_on:.3f}")
print("  on−off     on    off  (ns per I/O)  symbol")
rows = sorted(((on.get(s, 0) * t_on / 100, off.get(s, 0) * t_off / 100, s) for s in set(on) | set(off)),
              key=lambda r: r[0] - r[1], reverse=True)
for a, b, s in rows[:30]:
    print(f"{a - b:+7.1f} {a:6.1f} {b:6.1f}  {s[:100]}")
PY

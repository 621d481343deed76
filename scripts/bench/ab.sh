#!/usr/bin/env bash
# A/B of jraid builds: the same bdevperf test over the same volume, each build in turn, for a
# number of rounds; prints each build's median IOPS and, for every build after the first, the
# median of its per-round ratio to the first (a round runs the builds back to back, so the
# machine's drift between rounds cancels). One reactor (or --cores N), 4 null members, 8 MiB
# malloc journal. Each run's log line also gives the share of the reactor cores' time the
# hypervisor stole over the bdevperf process's life (/proc/stat's steal).
#
#   scripts/bench/ab.sh [-t SECONDS] [--rounds N] [--size SIZE] [--journal on|off] [--cores N]
#                       [-w WORKLOAD] [-q QD] [-o BYTES] [--delay US] [--journal-delay US]
#                       [--journal-mb MB] [--profile [--out DIR]] LIB_A LIB_B [LIB ...]
#
#   -t SECONDS      seconds per test (default 4)
#   --rounds N      rounds (default 4)
#   --size SIZE     bytes per member, K/M/G/T suffixes (default 1G)
#   --journal X     on (default) or off ("journal": false: the volume without its journal)
#   --cores N       reactors (default 1): bdevperf -m <first N cores> -C, one job per reactor at
#                   the queue depth below each, IOPS summed; with --profile, ns per I/O are
#                   reactor-ns (N × 10^9 ÷ IOPS)
#   -w WORKLOAD     bdevperf workload (default randwrite); -q queue depth (128); -o I/O size (4096)
#   --delay US      members are bdev_delay over the null bdevs, US µs per read and write on
#                   average (default 0: plain null members)
#   --journal-delay US  the journal is a bdev_delay over its malloc bdev, US µs per I/O on
#                   average (default 0)
#   --journal-mb MB size of the malloc journal (default 8; 2: areas of ~43k entries, fewer than
#                   the stripes of 8 GiB members, which then get the shorter first hysteresis)
#   --profile       also sample the reactor with perf (15 kHz, 3 s from the middle of each run)
#                   and print, per build, the median time per I/O, of it jraid's own code
#                   (libjraid.so) and the journal's (journal:: and prefetch symbols), then each
#                   symbol's mean ns per I/O where the builds differ by 2 ns or more. Where IOPS
#                   move by ±10 % between runs of one binary (as on a shared 2-core VM), a
#                   change of a few percent shows here and not in IOPS. Needs perf, -t 5 or more.
#   --out DIR       with --profile: keep each run's perf.data and symbol list there
#   LIB ...         libjraid.so files to compare (copy each build aside first: cargo overwrites
#                   target/release/libjraid.so); LIB@off runs that build with its volume's
#                   journal off and LIB@on with it on, whatever --journal says (one build beside
#                   itself: what the journal costs, symbol by symbol)
#
# Environment as for run.sh: SPDK_DIR, BDEVPERF, NO_HUGE=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
log() { echo "[$(date +%T)] $*" >&2; }
die() { echo "ab.sh: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/jraid-ab.XXXXXX)
# shellcheck source=scripts/bench/common.sh
. "$root/scripts/bench/common.sh"
bench_setup_cleanup

CORES=1 T=4 ROUNDS=4 SIZE=1G JOURNAL=on WL=randwrite QD=128 IO=4096 DELAY=0 JDELAY=0 PROFILE=0 OUT=""
libs=()
while [ $# -gt 0 ]; do
    case $1 in
        -t) T=$2; shift 2 ;;
        --rounds) ROUNDS=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --journal) JOURNAL=$2; shift 2 ;;
        --cores) CORES=$2; shift 2 ;;
        --journal-mb) export JOURNAL_MB=$2; shift 2 ;;
        -w) WL=$2; shift 2 ;;
        -q) QD=$2; shift 2 ;;
        -o) IO=$2; shift 2 ;;
        --delay) DELAY=$2; shift 2 ;;
        --journal-delay) JDELAY=$2; shift 2 ;;
        --profile) PROFILE=1; shift ;;
        --out) OUT=$2; shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) libs+=("$1"); shift ;;
    esac
done
[ ${#libs[@]} -ge 2 ] || die "name two or more libjraid.so files"
# Each entry's file and journal mode (LIB@on / LIB@off override --journal).
files=() modes=()
for l in "${libs[@]}"; do
    case $l in
        *@on) files+=("${l%@on}"); modes+=(on) ;;
        *@off) files+=("${l%@off}"); modes+=(off) ;;
        *) files+=("$l"); modes+=("$JOURNAL") ;;
    esac
    [ -f "${files[-1]}" ] || die "${files[-1]} not found"
done
if [ "$PROFILE" = 1 ]; then
    command -v perf >/dev/null || die "perf not found"
    [ "$T" -ge 5 ] || die "--profile needs -t 5 or more (perf samples 3 s from the middle)"
fi
case "$CORES" in '' | *[!0-9]* | 0) die "--cores wants a whole number > 0" ;; esac
[ "$CORES" -le "$(nproc)" ] || die "--cores $CORES: this machine has $(nproc) CPU(s)"
core_args=(-m "$(printf '0x%x' $(((1 << CORES) - 1)))")
[ "$CORES" -gt 1 ] && core_args+=(-C)
pdir=${OUT:-$work}
mkdir -p "$pdir"
bytes=$(numfmt --from=iec "$SIZE") || die "bad size $SIZE"
JRAID_LIB=${files[0]}
bench_find_spdk
bench_mem_args 512

bench_null_volume_config "$work/ab-on.json" "$bytes" "" "$DELAY" "$JDELAY"
bench_null_volume_config "$work/ab-off.json" "$bytes" ',"journal":false' "$DELAY" "$JDELAY"

log "$CORES reactor(s), $WL, QD $QD, $IO bytes, members of $SIZE (delay $DELAY µs), journal $JOURNAL (delay $JDELAY µs): $ROUNDS round(s) of ${#libs[@]} builds, $T s each"
rows=$work/rows
for r in $(seq 1 "$ROUNDS"); do
    for i in "${!libs[@]}"; do
        st0=$(bench_cpu_stat "$CORES")
        env LD_LIBRARY_PATH="$SPDK_LIBDIR:$SPDK_DIR/dpdk/build/lib" LD_PRELOAD="${files[$i]}" \
            "$BDEVPERF" --json "$work/ab-${modes[$i]}.json" "${core_args[@]}" "${MEM_ARGS[@]}" -q "$QD" -o "$IO" -w "$WL" -t "$T" -T r0 \
            >"$work/run.out" 2>&1 &
        BP_PID=$!
        if [ "$PROFILE" = 1 ]; then
            # bdevperf spends about a second on start-up before its -t seconds.
            sleep $((T / 2))
            perf record -F 15000 -p "$BP_PID" -o "$pdir/r$r-b$i.perf.data" -- sleep 3 >/dev/null 2>&1 ||
                die "perf record failed"
        fi
        wait "$BP_PID" || { tail -20 "$work/run.out" >&2; die "bdevperf failed with ${libs[$i]}"; }
        BP_PID=""
        steal=$(bench_steal "$st0" "$(bench_cpu_stat "$CORES")")
        out=$(cat "$work/run.out")
        # One job: its row; several (--cores): the Total row (after a carriage return).
        iops=$(echo "$out" | tr -d '\r' | awk -v n="$CORES" \
            'n == 1 && $1 == "r0" && $2 == ":" {print $4; exit} n > 1 && $1 == "Total" && $2 == ":" {print $3; exit}')
        [ -n "$iops" ] || { echo "$out" | tail -20 >&2; die "no IOPS from bdevperf with ${libs[$i]}"; }
        log "round $r: ${libs[$i]}: $iops IOPS, steal $steal"
        echo "$r $i $iops $steal" >>"$rows"
        if [ "$PROFILE" = 1 ]; then
            perf report -i "$pdir/r$r-b$i.perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
                awk '/^ +[0-9.]+%/ {p = $1; sub("%", "", p); d = $2; $1 = ""; $2 = ""; $3 = ""; print p "\t" d "\t" $0}' \
                    >"$pdir/r$r-b$i.symbols"
        fi
    done
done
python3 - "$rows" "${libs[@]}" <<'EOF'
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
libs = sys.argv[2:]
iops = {i: {int(r): float(v) for r, li, v, _ in rows if int(li) == i} for i in range(len(libs))}
for i, lib in enumerate(libs):
    print(f"{lib}: median {statistics.median(iops[i].values()):,.0f} IOPS "
          f"({', '.join(f'{v / 1000:,.0f}k' for v in iops[i].values())})")
for i, lib in enumerate(libs[1:], 1):
    pr = [iops[i][r] / iops[0][r] for r in iops[i] if iops[0].get(r)]
    print(f"{lib} / {libs[0]}: paired median {statistics.median(pr):.3f} "
          f"({' '.join(f'{x:.3f}' for x in pr)})")
EOF
[ "$PROFILE" = 1 ] || exit 0
AB_CORES=$CORES python3 - "$rows" "$pdir" "${libs[@]}" <<'EOF'
import collections, os, re, statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
pdir, libs = sys.argv[2], sys.argv[3:]
total = collections.defaultdict(list)  # build -> ns per I/O of each run
own = collections.defaultdict(list)    # build -> ns per I/O in the build's library
jour = collections.defaultdict(list)   # build -> ns per I/O in the journal's symbols
sym = collections.defaultdict(lambda: collections.defaultdict(float))  # symbol -> build -> sum
cores = int(os.environ.get("AB_CORES", "1"))
for r, i, v, _ in rows:
    i, t = int(i), cores * 1e9 / float(v)
    total[i].append(t)
    o = j = 0.0
    for line in open(f"{pdir}/r{r}-b{i}.symbols"):
        try:
            p, dso, s = line.rstrip("\n").split("\t", 2)
            ns = float(p) * t / 100
        except ValueError:
            continue
        s = re.sub(r"(\s*-)+$", "", s.strip())
        if dso == os.path.basename(re.sub(r"@(on|off)$", "", libs[i])):
            o += ns
            if "journal::" in s or "prefetch" in s:
                j += ns
        sym[s][i] += ns
    own[i].append(o)
    jour[i].append(j)
print("profile (ns per I/O, median of the rounds): build: total, jraid's code, journal")
for i, lib in enumerate(libs):
    print(f"  {lib}: {statistics.median(total[i]):.0f}, {statistics.median(own[i]):.0f}, "
          f"{statistics.median(jour[i]):.0f}")
n = {i: len(total[i]) for i in range(len(libs))}
print("symbols, mean ns per I/O per build (in the order above), where they differ by 2 ns or more:")
out = []
for s, d in sym.items():
    means = [d.get(i, 0.0) / n[i] for i in range(len(libs))]
    if max(means) - min(means) >= 2:
        out.append((means[-1] - means[0], means, s))
for _, means, s in sorted(out, key=lambda x: x[0]):
    print("  " + " ".join(f"{m:7.1f}" for m in means) + f"  {s[:90]}")
EOF

#!/usr/bin/env bash
# Where the time of an I/O goes, jraid beside SPDK's own RAID on the same members: bdevperf (one
# reactor, or --cores) over jraid (journal on), raid1 over two members and raid5f over four, with
# perf sampling the reactors in the middle of each run; each profile is split by library and symbol
# into what every bdev stack pays (SPDK's bdev layer, the member driver, bdevperf and the
# reactor, the clock), the XOR kernels, the journal and the RAID module's own code, in
# nanoseconds per I/O. For each CPU target of scripts/bench/run.sh (4 KiB writes ÷ half raid1's,
# 4 KiB reads ÷ raid1's, full stripes ÷ raid5f's) it prints the measured ratio and the floor: the
# ratio jraid would reach if its module and journal cost nothing, its member I/Os, XOR and
# everything SPDK does for them left as measured. A floor under the target says the target
# cannot be met on those members by cutting jraid's code; above it, the module's own
# nanoseconds are what stands between.
#
#   scripts/bench/breakdown.sh [-t SECONDS] [--cores N] [--reps N] [--size SIZE]
#                              [--kinds "null malloc"] [--out DIR | --report DIR] [LIB]
#
#   -t SECONDS   seconds per run (default 10; perf samples 5 s from the 3rd)
#   --cores N    reactors (default 1): -m with N cores and -C (one job per reactor, each at the
#                queue depth below); ns per I/O are then reactor-ns (N × 10^9 ÷ IOPS), so a
#                category that grows from one reactor to two is one the reactors contend for
#   --reps N     runs of each (stack, workload), each a fresh process, interleaved with the
#                anchor's (default 3), after one warm-up run of each member kind that is not
#                kept; the run of median IOPS gives the breakdown. Full-stripe
#                runs here go at one of two speeds (jraid's and raid5f's alike, e.g. 150k or 190k
#                IOPS from one build and command), for seconds at a time and changing within a
#                run too (bdevperf -S 1: 150k for 7 s, then 180k-196k), the XOR's time making
#                the difference: one run each can compare a slow stretch with a fast one.
#   --size SIZE  bytes per member, K/M/G/T suffixes (default 64M)
#   --kinds K    member kinds (default "null malloc")
#   --out DIR    keep the profiles, symbol lists and results.md there (default: a temp dir)
#   --report DIR print the tables again from the runs kept in DIR (no new run; DIR/results.md
#                is left as it is)
#   LIB          libjraid.so (default target/release/libjraid.so); perf names its samples by
#                the file's name, so a copy under another name is told apart as well
#
# Workloads (as scripts/bench/run.sh's targets): 4 KiB random writes QD 128 (anchor: raid1 ÷ 2,
# a RAID-5 small write being twice raid1's member I/O), 4 KiB random reads QD 128 (raid1),
# full-stripe writes QD 32 (raid5f; strip 64 KiB, 192 KiB). Needs perf; raid5f rows read n/a
# when the installed SPDK lacks it. Environment as for run.sh: SPDK_DIR, BDEVPERF, NO_HUGE=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
log() { echo "[$(date +%T)] $*" >&2; }
die() { echo "breakdown.sh: $*" >&2; exit 1; }
work=$(mktemp -d /tmp/jraid-breakdown.XXXXXX)
# shellcheck source=scripts/bench/common.sh
. "$root/scripts/bench/common.sh"
bench_setup_cleanup

T=10 CORES=1 REPS=3 SIZE=64M KINDS="null malloc" OUT="" REPORT=""
while [ $# -gt 0 ]; do
    case $1 in
        -t) T=$2; shift 2 ;;
        --reps) REPS=$2; shift 2 ;;
        --cores) CORES=$2; shift 2 ;;
        --size) SIZE=$2; shift 2 ;;
        --kinds) KINDS=$2; shift 2 ;;
        --out) OUT=$2; shift 2 ;;
        --report) REPORT=$2; shift 2 ;;
        -h|--help) sed -n '2,39p' "$0"; exit 0 ;;
        -*) die "unknown option $1" ;;
        *) JRAID_LIB=$1; shift ;;
    esac
done
if [ -z "$REPORT" ]; then
    command -v perf >/dev/null || die "perf not found"
    [ "$T" -ge 8 ] || die "-t must be at least 8 (perf samples 5 s after a 3 s start)"
    bytes=$(numfmt --from=iec "$SIZE") || die "bad size $SIZE"
    bench_find_spdk
    dir=${OUT:-$work}
    mkdir -p "$dir"
    JRAID_LIB=$(realpath "$JRAID_LIB")
fi

# config FILE KIND RAID: members of $bytes of KIND under RAID (jraid: 4 members and an 8 MiB
# malloc journal; raid1: 2; raid5f: 4), the volume named r0.
config() {
    local file=$1 kind=$2 raid=$3 n=4 i names=""
    [ "$raid" = raid1 ] && n=2
    {
        echo '{"subsystems":[{"subsystem":"bdev","config":['
        for i in $(seq 0 $((n - 1))); do
            if [ "$kind" = malloc ]; then
                echo "{\"method\":\"bdev_malloc_create\",\"params\":{\"name\":\"m$i\",\"num_blocks\":$((bytes / 4096)),\"block_size\":4096}},"
            else
                echo "{\"method\":\"bdev_null_create\",\"params\":{\"name\":\"m$i\",\"num_blocks\":$((bytes / 4096)),\"block_size\":4096}},"
            fi
            names="$names${names:+,}\"m$i\""
        done
        case $raid in
            jraid)
                echo '{"method":"bdev_malloc_create","params":{"name":"jl","num_blocks":2048,"block_size":4096}},'
                echo "{\"method\":\"bdev_jraid_create\",\"params\":{\"name\":\"r0\",\"strip_size_kb\":64,\"base_bdevs\":[$names],\"journal_bdev\":\"jl\",\"assume_clean\":true}}," ;;
            raid1)
                echo "{\"method\":\"bdev_raid_create\",\"params\":{\"name\":\"r0\",\"raid_level\":\"raid1\",\"base_bdevs\":[$names]}}," ;;
            raid5f)
                echo "{\"method\":\"bdev_raid_create\",\"params\":{\"name\":\"r0\",\"raid_level\":\"raid5f\",\"strip_size_kb\":64,\"base_bdevs\":[$names]}}," ;;
        esac
        echo '{"method":"bdev_wait_for_examine"}'
        echo ']}]}'
    } >"$file"
}

# run NAME KIND RAID WORKLOAD QD BYTES: one profiled bdevperf run; writes NAME.bdevperf,
# NAME.perf.data, NAME.symbols (percent, library, symbol) and NAME.iops.
run() {
    local name=$1 kind=$2 raid=$3 wl=$4 qd=$5 io=$6 preload="" mb=512
    [ "$kind" = malloc ] && mb=$((512 + 4 * bytes / 1048576))
    bench_mem_args "$mb"
    [ "$raid" = jraid ] && preload=$JRAID_LIB
    config "$work/$name.json" "$kind" "$raid"
    log "$name: $kind members of $SIZE, $raid, $wl QD $qd, $io bytes, $T s"
    env LD_LIBRARY_PATH="$SPDK_LIBDIR:$SPDK_DIR/dpdk/build/lib" LD_PRELOAD="$preload" \
        "$BDEVPERF" --json "$work/$name.json" "${CORE_ARGS[@]}" "${MEM_ARGS[@]}" -q "$qd" -o "$io" \
        -w "$wl" -t "$T" -T r0 >"$dir/$name.bdevperf" 2>&1 &
    BP_PID=$!
    sleep 3
    if ! kill -0 "$BP_PID" 2>/dev/null; then
        BP_PID=""
        return 1
    fi
    perf record -F 1999 -p "$BP_PID" -o "$dir/$name.perf.data" -- sleep 5 >/dev/null 2>&1 ||
        die "perf record failed"
    wait "$BP_PID" || { BP_PID=""; return 1; }
    BP_PID=""
    # The "Total" row: every job's IOPS together (one job per reactor with -C).
    tr -d '\r' <"$dir/$name.bdevperf" | awk '$1 == "Total" && $2 == ":" {v = $3} END {print v}' \
        >"$dir/$name.iops"
    [ -s "$dir/$name.iops" ] || return 1
    perf report -i "$dir/$name.perf.data" --no-children --sort dso,symbol --stdio 2>/dev/null |
        awk '/^ +[0-9.]+%/ {p = $1; sub("%", "", p); d = $2; $1 = ""; $2 = ""; $3 = ""; print p "\t" d "\t" $0}' \
            >"$dir/$name.symbols"
}

[[ $CORES =~ ^[1-9][0-9]*$ ]] || die "bad --cores $CORES"
CORE_ARGS=(-m "0x$(printf %x $(((1 << CORES) - 1)))")
[ "$CORES" -gt 1 ] && CORE_ARGS+=(-C)
rows=()
[ -z "$REPORT" ] || KINDS=""
for kind in $KINDS; do
    # One run of each kind first, not kept: the first bdevperf after hugepages are reserved
    # (each kind's memory need may reserve more) spent 14-40 % of its sampled time in the
    # kernel's clear_page_erms on a VM (likely pages the host had not backed yet), the later
    # ones none; such a run was once the median of its three (docs/bench/20261207-breakdown-head/).
    log "$kind: warm-up run (not kept)"
    run "warmup-$kind" "$kind" jraid randwrite 128 4096 ||
        log "warm-up run failed (see $dir/warmup-$kind.bdevperf)"
    rm -f "$dir/warmup-$kind".*
    for w in "write randwrite 128 4096 raid1" "read randread 128 4096 raid1" "stripe write 32 196608 raid5f"; do
        read -r tag wl qd io anchor <<<"$w"
        for rep in $(seq 1 "$REPS"); do
            for raid in jraid "$anchor"; do
                if run "$kind-$tag-$raid.$rep" "$kind" "$raid" "$wl" "$qd" "$io"; then
                    rows+=("$kind-$tag-$raid.$rep")
                else
                    log "$kind-$tag-$raid.$rep did not run (see $dir/$kind-$tag-$raid.$rep.bdevperf)"
                fi
            done
        done
    done
done
if [ -n "$REPORT" ]; then
    dir=$REPORT
    KINDS=$(cat "$dir/kinds") SIZE=$(cat "$dir/size") CORES=$(cat "$dir/cores")
    JRAID_LIB=$(cat "$dir/lib")
    for f in "$dir"/*.iops; do
        f=${f##*/}
        rows+=("${f%.iops}")
    done
else
    echo "$KINDS" >"$dir/kinds"
    echo "$SIZE" >"$dir/size"
    echo "$CORES" >"$dir/cores"
    echo "$JRAID_LIB" >"$dir/lib"
fi
[ "${#rows[@]}" -gt 0 ] || die "no run completed"
results=$dir/results.md
[ -z "$REPORT" ] || results=/dev/null

python3 - "$dir" "$(basename "$JRAID_LIB")" "$SIZE" "$KINDS" "$CORES" "${rows[@]}" <<'PY' | tee "$results"
import os, re, sys
d, jlib, size, kinds, cores, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(), int(sys.argv[5]), sys.argv[6:]
XOR = re.compile(r"^(jraid::parity::|jraid::spdk::xor::|jraid::spdk::ffi::xor_gen|xor_gen|next_vect|loop128|do_xor_gen|spdk_xor_gen|gf_|pq_gen)")
JOURNAL = re.compile(r"^(jraid::journal::|crossbeam_queue::|crc32c::)")
CATS = ["bdev layer", "member driver", "accel", "app+reactor", "clock", "libc copy", "XOR", "journal", "module", "kernel+other"]
def category(lib, sym):
    if XOR.match(sym) or lib.startswith("libisal"):
        return "XOR"
    if sym.startswith("spdk_get_ticks"):
        return "clock"
    if lib == jlib:
        return "journal" if JOURNAL.match(sym) else "module"
    if lib.startswith("libspdk_bdev_raid"):
        return "module"
    if lib.startswith("libspdk_accel"):
        # Malloc members copy through it; raid5f also computes its parity through it.
        return "accel"
    if lib.startswith("libspdk_bdev_null") or lib.startswith("libspdk_bdev_malloc"):
        return "member driver"
    if lib.startswith("libspdk_bdev."):
        return "bdev layer"
    if lib.startswith("libc"):
        return "libc copy"
    if lib == "bdevperf" or lib.startswith(("libspdk_thread", "libspdk_event", "libspdk_env", "libspdk_util", "librte")):
        return "app+reactor"
    return "kernel+other"
def load(n):
    iops = float(open(os.path.join(d, n + ".iops")).read().strip())
    ns = cores * 1e9 / iops
    cats = dict.fromkeys(CATS, 0.0)
    for line in open(os.path.join(d, n + ".symbols")):
        try:
            p, lib, sym = line.rstrip("\n").split("\t", 2)
            p = float(p)
        except ValueError:
            continue
        cats[category(lib, sym.strip().rstrip("-").strip())] += p * ns / 100
    return iops, ns, cats
# Each (stack, workload): its runs' IOPS, and the breakdown of the run of median IOPS.
runs = {}
for n in names:
    runs.setdefault(n.rsplit(".", 1)[0], []).append(load(n))
prof, reps = {}, {}
for k, rs in runs.items():
    rs.sort(key=lambda r: r[0])
    prof[k] = rs[(len(rs) - 1) // 2]
    reps[k] = [r[0] for r in rs]
names = list(runs)
print(f"# jraid beside SPDK's RAID: where an I/O's time goes\n")
where = "One reactor" if cores == 1 else f"{cores} reactors (-C: one job per reactor)"
print(f"{where}, members of {size}, jraid with its journal on (8 MiB malloc journal), strip 64 KiB; "
      "nanoseconds per I/O from perf samples of the reactors (5 s mid-run) times the run's own "
      "reactor time per I/O (reactors × 10^9 ÷ IOPS).\n")
print("| run | IOPS (median run) | every run | ns / I/O | " + " | ".join(CATS) + " |")
print("|---|---:|---|---:|" + "---:|" * len(CATS))
for n in names:
    iops, ns, c = prof[n]
    every = " ".join(f"{x / 1000:,.0f}k" for x in reps[n])
    print(f"| {n} | {iops:,.0f} | {every} | {ns:.0f} | " + " | ".join(f"{c[k]:.0f}" for k in CATS) + " |")
print("\n## Targets: measured ratio and floor\n")
print("floor: the ratio with jraid's module and journal at zero cost (everything else as measured).\n")
print("| kind | target | goal | measured | floor | jraid module + journal ns | anchor module ns (raid5f: + accel) |")
print("|---|---|---:|---:|---:|---:|---:|")
for kind in kinds:
    for tag, anchor, div, what, goal in [("write", "raid1", 2, "4 KiB randwrite ÷ (raid1 ÷ 2)", 0.8),
                                         ("read", "raid1", 1, "4 KiB randread ÷ raid1", 0.9),
                                         ("stripe", "raid5f", 1, "full-stripe write ÷ raid5f", 1.0)]:
        j, a = prof.get(f"{kind}-{tag}-jraid"), prof.get(f"{kind}-{tag}-{anchor}")
        if not j or not a:
            print(f"| {kind} | {what} | {goal} | n/a | n/a | n/a | n/a |")
            continue
        base = a[0] / div
        own = j[2]["module"] + j[2]["journal"]
        floor = cores * 1e9 / (j[1] - own) / base
        am = a[2]["module"] + (a[2]["accel"] if anchor == "raid5f" and kind == "null" else 0)
        print(f"| {kind} | {what} | {goal} | {j[0] / base:.3f} | {floor:.3f} | {own:.0f} | {am:.0f} |")
PY
log "results in $dir"

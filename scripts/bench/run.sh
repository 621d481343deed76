#!/usr/bin/env bash
# jraid performance bench: bdevperf over jraid, jraid without journal, a raw member and SPDK's own
# RAID as anchors (raid1 over two members, raid5f over as many as jraid), on malloc,
# delay-over-malloc (NVMe-like latency) and null members; the CPU-per-I/O ratios (4 KiB random
# writes ÷ half raid1's, random reads ÷ raid1's, full stripes ÷ raid5f's) on one reactor and on
# two.
#
#   scripts/bench/run.sh [--quick] [-t SECONDS] [--kinds "malloc delay null"] [--out DIR]
#                        [--members N] [--member-mb MB] [--strip-kb KB] [--reactors N] [--no-plot]
#
#   --quick        1 s per test (smoke; ~1.5 min); default 3 s per test (~4 min on 2 cores)
#   -t SECONDS     seconds per test
#   --kinds LIST   member kinds to run (default "malloc delay null")
#   --out DIR      results folder (default results/bench-<date>-<time>/ at the repository root)
#   --members N    members per volume (default 4); --strip-kb KB strip size (default 64)
#   --member-mb MB size of each member (default 64; malloc/delay use hugepage memory)
#   --reactors N   largest reactor count of the scaling test (default: number of CPUs)
#   --no-plot      skip the PNG (no matplotlib needed)
#   --reps N       run the whole set N times (default 1), one repetition after the other; the
#                  tables show each test's run of median IOPS, each target the median of its
#                  N per-repetition ratios (both sides of a ratio run minutes apart at most
#                  within a repetition), with those N beside it. On a shared VM one run of a test
#                  can be off by ±30 % or more; use 3 or more for figures to report.
#
# Environment: SPDK_DIR (default: from pkg-config spdk_bdev, else /opt/jraid-spdk/v26.01/spdk), BDEVPERF, JRAID_LIB
# (default target/release/libjraid.so, built with `cargo build --release --features spdk --lib` when
# missing), PYTHON (default python3).
#
# One bdevperf process per (member kind, target bdev, reactor count), started with -z over a JSON
# config that builds every bdev of that kind; each test of the session is one perform_tests RPC,
# whose JSON answer is stored as it is (raw.jsonl). report.py turns raw.jsonl into results.json,
# results.md (tables + target ratios) and results.png.
#
# raid5f: the installed SPDK must include it, or RAID5F_LIB_DIR must name a directory with a
# libspdk_bdev_raid.so that does (put first in LD_LIBRARY_PATH); otherwise raid5f rows read n/a.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
PYTHON=${PYTHON:-python3}

# --------------------------------------------------------------------------------------------
# Options
T=3 kinds="malloc delay null" out="" members=4 member_mb=64 strip_kb=64 max_reactors="" plot=1 quick=0
REPS=1 REP=1
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; T=1; shift ;;
        -t|--time) T=$2; shift 2 ;;
        --kinds) kinds=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        --members) members=$2; shift 2 ;;
        --member-mb) member_mb=$2; shift 2 ;;
        --strip-kb) strip_kb=$2; shift 2 ;;
        --reactors) max_reactors=$2; shift 2 ;;
        --no-plot) plot=0; shift ;;
        --reps) REPS=$2; shift 2 ;;
        -h|--help) sed -n '2,33p' "$0"; exit 0 ;;
        *) echo "run.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done

case "$REPS" in '' | *[!0-9]* | 0) echo "run.sh: --reps wants a whole number > 0" >&2; exit 2 ;; esac

# --------------------------------------------------------------------------------------------
# The journal-off variant. bdev_jraid_create has no switch for it yet; the parameter below is the one
# requested from the SPDK adapter (src/spdk/rpc.rs). It is probed at start: if this libjraid.so
# rejects it, the journal-off rows read n/a and the script goes on. Change this one line if the
# adapter spells it differently.
JRAID_NOJOURNAL_PARAMS='"journal": false'

# Delay bdevs emulating NVMe (microseconds): avg and p99 per direction.
DELAY_READ_AVG=10 DELAY_READ_P99=25 DELAY_WRITE_AVG=20 DELAY_WRITE_P99=50

QDS_RANDWRITE="1 32 128"
QDS_RANDREAD="1 32 128"
QD_SEQ=32
QD_SCALING=128

# --------------------------------------------------------------------------------------------
# SPDK, bdevperf, the module
log() { echo "[$(date +%T)] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# shellcheck source=scripts/bench/common.sh
source "$here/common.sh"
bench_find_spdk

stamp=$(date +%Y%m%d-%H%M%S)
out=${out:-$root/results/bench-$stamp}
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/jraid-bench.XXXXXX)
raw=$out/raw.jsonl
: >"$raw"

ncpu=$(nproc)
max_reactors=${max_reactors:-$ncpu}
[ "$max_reactors" -le "$ncpu" ] || max_reactors=$ncpu
reactor_counts=""
n=2
while [ "$n" -lt "$max_reactors" ]; do reactor_counts="$reactor_counts $n"; n=$((n * 2)); done
[ "$max_reactors" -gt 1 ] && reactor_counts="$reactor_counts $max_reactors"

# --------------------------------------------------------------------------------------------
# Cleanup: every bdevperf we start, the hugepage setting, the temp dir.
bench_setup_cleanup

# --------------------------------------------------------------------------------------------
# Memory: malloc (and delay-over-malloc) members live in DPDK memory. Other SPDK processes may hold
# hugepages too, so what counts is HugePages_Free; the reservation is raised when short (and restored
# at exit), else the run falls back to --no-huge.
blk=4096
member_blocks=$((member_mb * 1024 * 1024 / blk))
journal_blocks=2048 # 8 MiB
set_mem_args() { # KIND -> MEM_ARGS
    local mb=512
    # per kind: members x (jraid + jraid-nj + raid5f) + raw member + 2 raid1 members + journal,
    # plus bdevperf's own
    [ "$1" = null ] || mb=$((mb + (3 * members + 3) * member_mb + journal_blocks * blk / 1048576))
    bench_mem_args "$mb"
}

LIBPATH=$SPDK_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

# --------------------------------------------------------------------------------------------
# JSON config of one member kind.
#   jraid volume jr (members <k>0..), jraid without journal jn (<k>n0..), raid5f r5 (<k>f0..),
#   raid1 r1 (<k>m0, <k>m1), raw member <k>raw, journal <k>jl. Delay members sit on malloc bdevs
#   named <name>_m.
# with_r5 / with_nj: 0 leaves that volume out.
member_cmd() { # KIND NAME BLOCKS
    local kind=$1 name=$2 nb=$3
    case "$kind" in
        malloc) echo "{\"method\":\"bdev_malloc_create\",\"params\":{\"name\":\"$name\",\"num_blocks\":$nb,\"block_size\":$blk}}," ;;
        null) echo "{\"method\":\"bdev_null_create\",\"params\":{\"name\":\"$name\",\"num_blocks\":$nb,\"block_size\":$blk}}," ;;
        delay)
            echo "{\"method\":\"bdev_malloc_create\",\"params\":{\"name\":\"${name}_m\",\"num_blocks\":$nb,\"block_size\":$blk}},"
            echo "{\"method\":\"bdev_delay_create\",\"params\":{\"base_bdev_name\":\"${name}_m\",\"name\":\"$name\",\"avg_read_latency\":$DELAY_READ_AVG,\"p99_read_latency\":$DELAY_READ_P99,\"avg_write_latency\":$DELAY_WRITE_AVG,\"p99_write_latency\":$DELAY_WRITE_P99}},"
            ;;
    esac
}
names() { # PREFIX -> "P0","P1",...
    local i s=""
    for ((i = 0; i < members; i++)); do s="$s${s:+,}\"$1$i\""; done
    echo "$s"
}
mk_config() { # KIND WITH_R5 WITH_NJ > config
    local kind=$1 with_r5=$2 with_nj=$3 p i
    p=${kind:0:1}
    echo '{"subsystems":[{"subsystem":"bdev","config":['
    for ((i = 0; i < members; i++)); do member_cmd "$kind" "$p$i" "$member_blocks"; done
    member_cmd "$kind" "${p}jl" "$journal_blocks"
    member_cmd "$kind" "${p}raw" "$member_blocks"
    echo "{\"method\":\"bdev_jraid_create\",\"params\":{\"name\":\"jr\",\"strip_size_kb\":$strip_kb,\"base_bdevs\":[$(names "$p")],\"journal_bdev\":\"${p}jl\",\"assume_clean\":true}},"
    member_cmd "$kind" "${p}m0" "$member_blocks"
    member_cmd "$kind" "${p}m1" "$member_blocks"
    echo "{\"method\":\"bdev_raid_create\",\"params\":{\"name\":\"r1\",\"raid_level\":\"raid1\",\"strip_size_kb\":0,\"base_bdevs\":[\"${p}m0\",\"${p}m1\"]}},"
    if [ "$with_nj" = 1 ]; then
        for ((i = 0; i < members; i++)); do member_cmd "$kind" "${p}n$i" "$member_blocks"; done
        # The journal bdev still holds the superblock; records are not written with the journal off.
        member_cmd "$kind" "${p}nj" "$journal_blocks"
        echo "{\"method\":\"bdev_jraid_create\",\"params\":{\"name\":\"jn\",\"strip_size_kb\":$strip_kb,\"base_bdevs\":[$(names "${p}n")],\"journal_bdev\":\"${p}nj\",\"assume_clean\":true,$JRAID_NOJOURNAL_PARAMS}},"
    fi
    if [ "$with_r5" = 1 ]; then
        for ((i = 0; i < members; i++)); do member_cmd "$kind" "${p}f$i" "$member_blocks"; done
        echo "{\"method\":\"bdev_raid_create\",\"params\":{\"name\":\"r5\",\"raid_level\":\"raid5f\",\"strip_size_kb\":$strip_kb,\"base_bdevs\":[$(names "${p}f")]}},"
    fi
    echo '{"method":"bdev_wait_for_examine"}'
    echo ']}]}'
}

# --------------------------------------------------------------------------------------------
# bdevperf sessions
start_bdevperf() { # CONFIG TARGET NREACTORS LOG -> BP_PID, BP_SOCK; returns 1 if it did not come up
    local cfg=$1 target=$2 nr=$3 logf=$4 mask
    mask=$(printf '0x%x' $(((1 << nr) - 1)))
    BP_SOCK=$work/bp.sock
    rm -f "$BP_SOCK"
    local extra=()
    [ "$nr" -gt 1 ] && extra+=(-C)
    set_mem_args "${CUR_KIND:-null}"
    env LD_LIBRARY_PATH="$LIBPATH" LD_PRELOAD="$JRAID_LIB" \
        "$BDEVPERF" --json "$cfg" -m "$mask" "${MEM_ARGS[@]}" -u -r "$BP_SOCK" -z \
        -q 1 -o 4096 -w randwrite -t "$T" -T "$target" "${extra[@]}" >"$logf" 2>&1 &
    BP_PID=$!
    for _ in $(seq 1 600); do
        if [ -S "$BP_SOCK" ] && "$PYTHON" "$here/bdevperf_rpc.py" "$BP_SOCK" wait 1 2>/dev/null; then
            return 0
        fi
        kill -0 "$BP_PID" 2>/dev/null || { wait "$BP_PID" 2>/dev/null || true; BP_PID=""; return 1; }
        sleep 0.1
    done
    bench_stop_bdevperf
    return 1
}

# record KIND SCENARIO VARIANT TARGET NREACTORS WORKLOAD QD IOSIZE RESULT-JSON-or-"" [ERROR]
# (the row also carries the repetition it belongs to, $REP)
record() {
    "$PYTHON" - "$raw" "$REP" "$@" <<'PY'
import json, sys
raw, rep, kind, scen, var, target, nr, wl, qd, size, res = sys.argv[1:12]
err = sys.argv[12] if len(sys.argv) > 12 else None
row = {"kind": kind, "scenario": scen, "variant": var, "target": target, "reactors": int(nr),
       "workload": wl, "queue_depth": int(qd), "io_size": int(size), "rep": int(rep),
       "bdevperf": json.loads(res) if res else None}
if err:
    row["error"] = err
with open(raw, "a") as f:
    f.write(json.dumps(row) + "\n")
PY
}

# session KIND VARIANT TARGET NREACTORS "SCENARIO:WORKLOAD:QD:IOSIZE ..."
session() {
    local kind=$1 var=$2 target=$3 nr=$4 tests=$5 cfg=$work/config-$1.json t
    CUR_KIND=$kind
    local logf=$out/logs/$kind-$var-r$nr-rep$REP.log
    log "$kind / $var ($target) on $nr reactor(s): $(echo $tests | wc -w) test(s)"
    if ! start_bdevperf "$cfg" "$target" "$nr" "$logf"; then
        log "  bdevperf did not start (see $logf)"
        for t in $tests; do
            IFS=: read -r scen wl qd size <<<"$t"
            record "$kind" "$scen" "$var" "$target" "$nr" "$wl" "$qd" "$size" "" "bdevperf did not start"
        done
        return 0
    fi
    for t in $tests; do
        IFS=: read -r scen wl qd size <<<"$t"
        local res err=""
        if ! res=$("$PYTHON" "$here/bdevperf_rpc.py" "$BP_SOCK" perform_tests \
            "{\"workload_type\":\"$wl\",\"queue_depth\":$qd,\"io_size\":\"$size\",\"time_in_sec\":$T}" \
            2>"$work/rpc.err"); then
            err=$(cat "$work/rpc.err"); res=""
            log "  $scen $wl qd$qd ${size}B: $err"
        else
            log "  $scen $wl qd$qd ${size}B: $("$PYTHON" -c 'import json,sys; r=json.load(sys.stdin)["results"]; print("%.0f IOPS, %.1f MiB/s" % (sum(x["iops"] for x in r), sum(x["mibps"] for x in r)))' <<<"$res")"
        fi
        record "$kind" "$scen" "$var" "$target" "$nr" "$wl" "$qd" "$size" "$res" $err
    done
    bench_stop_bdevperf
}

# probe FRAGMENT-KIND WITH_R5 WITH_NJ: does a null-member config with that volume come up?
probe() {
    local cfg=$work/probe.json target=$3
    CUR_KIND=null
    mk_config null "$1" "$2" >"$cfg"
    if start_bdevperf "$cfg" "$target" 1 "$out/logs/probe-$target.log"; then
        bench_stop_bdevperf
        return 0
    fi
    return 1
}

# --------------------------------------------------------------------------------------------
# raid5f available? (RAID5F_LIB_DIR may name a directory holding an SPDK raid library with raid5f,
# built outside this project; it goes first in the library path.)
probe 0 0 jr || die "bdevperf with jraid over null members does not start (logs/probe-jr.log)"
with_r5=1
if [ -n "${RAID5F_LIB_DIR:-}" ]; then
    LIBPATH=$RAID5F_LIB_DIR:$LIBPATH
fi
if ! probe 1 0 r5; then
    with_r5=0
    log "the installed SPDK has no raid5f (set RAID5F_LIB_DIR to a raid library built with it): its rows read n/a"
fi
with_nj=1
if ! probe 0 1 jn; then
    with_nj=0
    log "bdev_jraid_create rejects {$JRAID_NOJOURNAL_PARAMS}: journal-off rows read n/a"
fi

# --------------------------------------------------------------------------------------------
# Metadata
stripe_bytes=$(((members - 1) * strip_kb * 1024))
"$PYTHON" - "$out/meta.json" <<PY
import json, platform, subprocess, sys
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""
meta = {
    "date": "$stamp", "seconds_per_test": $T, "quick": bool($quick), "kinds": "$kinds".split(),
    "members": $members, "member_mb": $member_mb, "strip_kb": $strip_kb,
    "stripe_bytes": $stripe_bytes, "reps": $REPS, "reactor_counts": [1] + [int(x) for x in "$reactor_counts".split()],
    "cpus": $ncpu, "cpu_model": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
    "kernel": platform.release(), "spdk": sh("$BDEVPERF --version 2>/dev/null | tail -1") or "$SPDK_DIR",
    "jraid_git": sh("git -C '$root' describe --always --dirty 2>/dev/null"),
    "jraid_lib": "$JRAID_LIB", "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    "delay_us": {"read_avg": $DELAY_READ_AVG, "read_p99": $DELAY_READ_P99,
                 "write_avg": $DELAY_WRITE_AVG, "write_p99": $DELAY_WRITE_P99},
    "raid5f": bool($with_r5), "journal_off": bool($with_nj),
    "journal_off_params": '$JRAID_NOJOURNAL_PARAMS',
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
PY

# --------------------------------------------------------------------------------------------
# The runs
t0=$(date +%s)
for REP in $(seq 1 "$REPS"); do
    if [ "$REPS" -gt 1 ]; then log "repetition $REP of $REPS"; fi
    for kind in $kinds; do
        case "$kind" in malloc | delay | null) ;; *) die "unknown kind $kind" ;; esac
        p=${kind:0:1}
        mk_config "$kind" "$with_r5" "$with_nj" >"$work/config-$kind.json"
        cp "$work/config-$kind.json" "$out/config-$kind.json"

        rw="" rr=""
        for q in $QDS_RANDWRITE; do rw="$rw randwrite:randwrite:$q:4096"; done
        for q in $QDS_RANDREAD; do rr="$rr randread:randread:$q:4096"; done
        seq="seqwrite:write:$QD_SEQ:$stripe_bytes"

        session "$kind" jraid jr 1 "$rw $rr $seq"
        session "$kind" raid1 r1 1 "$rw $rr"
        if [ "$with_nj" = 1 ]; then
            session "$kind" jraid-nojournal jn 1 "$rw"
        else
            for q in $QDS_RANDWRITE; do
                record "$kind" randwrite jraid-nojournal jn 1 randwrite "$q" 4096 "" "journal-off not supported by bdev_jraid_create"
            done
        fi
        session "$kind" raw "${p}raw" 1 "$rw $rr"
        if [ "$with_r5" = 1 ]; then
            session "$kind" raid5f r5 1 "$seq"
        else
            record "$kind" seqwrite raid5f r5 1 write "$QD_SEQ" "$stripe_bytes" "" "raid5f not available"
        fi
        for nr in $reactor_counts; do
            if [ "$nr" = 2 ]; then
                # Two reactors: every ratio's both sides, for the two-reactors ÷ one targets.
                two="scaling:randwrite:$QD_SCALING:4096 scaling:randread:$QD_SCALING:4096 scaling:write:$QD_SEQ:$stripe_bytes"
                session "$kind" jraid jr 2 "$two"
                session "$kind" raid1 r1 2 "scaling:randwrite:$QD_SCALING:4096 scaling:randread:$QD_SCALING:4096"
                [ "$with_r5" = 1 ] && session "$kind" raid5f r5 2 "scaling:write:$QD_SEQ:$stripe_bytes"
            else
                session "$kind" jraid jr "$nr" "scaling:randwrite:$QD_SCALING:4096"
            fi
        done
    done
done
log "runs took $(($(date +%s) - t0)) s"

# --------------------------------------------------------------------------------------------
# Report
if [ "$plot" = 1 ] && ! "$PYTHON" -c 'import matplotlib' 2>/dev/null; then
    log "matplotlib missing: installing it"
    "$PYTHON" -m pip install -q matplotlib 2>/dev/null ||
        "$PYTHON" -m pip install -q --user matplotlib 2>/dev/null ||
        "$PYTHON" -m pip install -q --break-system-packages matplotlib 2>/dev/null || true
    if ! "$PYTHON" -c 'import matplotlib' 2>/dev/null && command -v apt-get >/dev/null; then
        (apt-get install -y -q python3-matplotlib >/dev/null 2>&1 ||
            { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q python3-matplotlib >/dev/null 2>&1; }) || true
        /usr/bin/python3 -c 'import matplotlib' 2>/dev/null && PLOT_PYTHON=/usr/bin/python3
    fi
fi
args=("$out")
[ "$plot" = 1 ] || args+=(--no-plot)
"$PYTHON" "$here/report.py" "${args[@]}"
if [ "$plot" = 1 ] && [ -n "${PLOT_PYTHON:-}" ]; then
    "$PLOT_PYTHON" "$here/report.py" "$out" --plot-only || true
fi
log "results in $out"

#!/usr/bin/env bash
# jraid journal cost vs volume size: the same jraid volume with its journal on and off, side by
# side, over 4 null members of each size (null bdevs cost no memory), one reactor (or --cores N).
#
#   scripts/bench/journal_scale.sh [--quick] [-t SECONDS] [--reps N] [--sizes "64M 8G 1T"]
#                                  [--seq-size SIZE|none] [--warmup SECONDS] [--cores N] [--out DIR]
#
#   -t SECONDS      seconds per test (default 5)
#   --reps N        repetitions of each (size, journal on/off) pair (default 3); the median IOPS of
#                   each side is compared
#   --quick         1 s per test, 1 repetition (smoke)
#   --sizes LIST    member sizes for the random-write rows, K/M/G/T suffixes (default "64M 8G 1T")
#   --seq-size SIZE member size of the full-stripe sequential row (default 1T; "none" skips it)
#   --warmup SECONDS  before each measured run, the same workload for this long, not measured
#                   (default 0): a fresh volume first fills its listed set (and its journal
#                   state table, up to 16 MiB, comes into the caches); with a warm-up the rows
#                   measure the steady state
#   --cores N       reactors (default 1): bdevperf -m <first N cores> -C, one job per reactor at
#                   the queue depth below each, IOPS summed (the journal's shared state, every
#                   reactor marking stripes into the same records)
#   --out DIR       results folder (default results/journal-scale-<date>-<time>/ at the repository root)
#
# Environment: SPDK_DIR (default: from pkg-config spdk_bdev, else /opt/jraid-spdk/v26.01/spdk), BDEVPERF, JRAID_LIB
# (default target/release/libjraid.so, built with `cargo build --release --features spdk --lib` when
# missing), PYTHON (default python3), NO_HUGE=1 (ordinary memory even where hugepages could be had),
# JOURNAL_MB (the malloc journal's size, default 8; 2 gives areas of ~43k entries, fewer than the
# stripes of 8 GiB members, which then get the shorter first hysteresis).
#
# Tests (bdevperf -m 0x1 unless --cores, one target bdev per process via -T):
#   random:     4 KiB randwrite, QD 128, at every member size
#   sequential: full-stripe writes (strip x (members - 1) = 192 KiB), QD 32, at --seq-size
# Journal on and off are interleaved (on, off, on, off, ... for --reps rounds), each test in a fresh
# bdevperf process over a fresh volume, so a test drives only the volume under test and starts from
# the same state. Around each perform_tests RPC the script reads bdev_jraid_get_bdevs over the same
# socket; journal_scale_report.py turns the before/after counters into journal bytes and records
# per user write and the listed (dirty) count at the end (n/a where this build lacks a counter).
#
# The reactor cores' /proc/stat lines are read around each perform_tests too: the report shows
# the share of their time the hypervisor stole (steal) for every test.
#
# Output: raw.jsonl (one line per test: perform_tests answer + volume objects before/after),
# meta.json, results.json, results.md (printed at the end), logs/.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
PYTHON=${PYTHON:-python3}

# --------------------------------------------------------------------------------------------
# Options
T=5 reps=3 sizes="64M 8G 1T" seq_size=1T out="" quick=0 warmup=0 cores=1
members=4 strip_kb=64
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick=1; T=1; reps=1; shift ;;
        -t|--time) T=$2; shift 2 ;;
        --reps) reps=$2; shift 2 ;;
        --sizes) sizes=$2; shift 2 ;;
        --seq-size) seq_size=$2; shift 2 ;;
        --warmup) warmup=$2; shift 2 ;;
        --cores) cores=$2; shift 2 ;;
        --out) out=$2; shift 2 ;;
        -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
        *) echo "journal_scale.sh: unknown option $1 (--help)" >&2; exit 2 ;;
    esac
done

QD_RAND=128
QD_SEQ=32
blk=4096
journal_blocks=$((${JOURNAL_MB:-8} * 256)) # 8 MiB malloc journal unless JOURNAL_MB says otherwise
stripe_bytes=$(((members - 1) * strip_kb * 1024))

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

case "$T" in '' | *[!0-9]* | 0) die "-t wants a whole number of seconds > 0 (got '$T')" ;; esac
case "$reps" in '' | *[!0-9]* | 0) die "--reps wants a whole number > 0 (got '$reps')" ;; esac
case "$warmup" in '' | *[!0-9]*) die "--warmup wants a whole number of seconds (got '$warmup')" ;; esac
case "$cores" in '' | *[!0-9]* | 0) die "--cores wants a whole number > 0 (got '$cores')" ;; esac
[ "$cores" -le "$(nproc)" ] || die "--cores $cores: this machine has $(nproc) CPU(s)"
core_args=(-m "$(printf '0x%x' $(((1 << cores) - 1)))")
[ "$cores" -gt 1 ] && core_args+=(-C)

to_bytes() { # 64M, 8G, 1T, 4096 -> bytes
    local s=${1^^} n m=1
    case "$s" in
        *K) m=1024 ;; *M) m=$((1024 ** 2)) ;; *G) m=$((1024 ** 3)) ;; *T) m=$((1024 ** 4)) ;;
    esac
    n=${s%[KMGT]}
    case "$n" in '' | *[!0-9]*) return 1 ;; esac
    echo $((n * m))
}
size_bytes=()
for s in $sizes; do
    b=$(to_bytes "$s") || die "bad size '$s' (want e.g. 64M, 8G, 1T)"
    [ $((b % (strip_kb * 1024))) = 0 ] && [ "$b" -ge $((strip_kb * 1024)) ] ||
        die "size $s is not a whole number of ${strip_kb} KiB strips"
    size_bytes+=("$b")
done
[ ${#size_bytes[@]} -gt 0 ] || die "--sizes is empty"
seq_bytes=""
if [ "$seq_size" != none ]; then
    seq_bytes=$(to_bytes "$seq_size") || die "bad --seq-size '$seq_size'"
fi

# --------------------------------------------------------------------------------------------
# SPDK, bdevperf, the module (as run.sh)
# shellcheck source=scripts/bench/common.sh
source "$here/common.sh"
bench_find_spdk
LIBPATH=$SPDK_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}

stamp=$(date +%Y%m%d-%H%M%S)
out=${out:-$root/results/journal-scale-$stamp}
mkdir -p "$out/logs"
out=$(cd "$out" && pwd)
work=$(mktemp -d /tmp/jraid-jscale.XXXXXX)
raw=$out/raw.jsonl
: >"$raw"

# --------------------------------------------------------------------------------------------
# Cleanup (the bdevperf we started, the hugepage setting, the temp dir) and memory: null members
# take none; DPDK memory holds the 8 MiB malloc journal, bdevperf's buffers and jraid's DMA buffers
# (jraid's journal state table is ordinary heap).
bench_setup_cleanup
mem_mb=512
bench_mem_args "$mem_mb"
[ "${MEM_ARGS[0]}" = --no-huge ] && log "memory: ${MEM_ARGS[*]}"

# --------------------------------------------------------------------------------------------
# JSON config: members m0..m3 (null), journal jl (malloc), volume jr (journal on) or jn (off).
mk_config() { # MEMBER-BYTES on|off > config
    local nb=$(($1 / blk)) var=$2 i names="" name=jr extra=""
    [ "$var" = off ] && { name=jn; extra=',"journal":false'; }
    echo '{"subsystems":[{"subsystem":"bdev","config":['
    for ((i = 0; i < members; i++)); do
        echo "{\"method\":\"bdev_null_create\",\"params\":{\"name\":\"m$i\",\"num_blocks\":$nb,\"block_size\":$blk}},"
        names="$names${names:+,}\"m$i\""
    done
    echo "{\"method\":\"bdev_malloc_create\",\"params\":{\"name\":\"jl\",\"num_blocks\":$journal_blocks,\"block_size\":$blk}},"
    echo "{\"method\":\"bdev_jraid_create\",\"params\":{\"name\":\"$name\",\"strip_size_kb\":$strip_kb,\"base_bdevs\":[$names],\"journal_bdev\":\"jl\",\"assume_clean\":true$extra}},"
    echo '{"method":"bdev_wait_for_examine"}'
    echo ']}]}'
}
target_of() { if [ "$1" = on ]; then echo jr; else echo jn; fi; }

# --------------------------------------------------------------------------------------------
# bdevperf sessions (one per test)
start_bdevperf() { # CONFIG TARGET LOG -> BP_PID, BP_SOCK; returns 1 if it did not come up
    local cfg=$1 target=$2 logf=$3
    BP_SOCK=$work/bp.sock
    rm -f "$BP_SOCK"
    env LD_LIBRARY_PATH="$LIBPATH" LD_PRELOAD="$JRAID_LIB" \
        "$BDEVPERF" --json "$cfg" "${core_args[@]}" "${MEM_ARGS[@]}" -u -r "$BP_SOCK" -z \
        -q 1 -o 4096 -w randwrite -t "$T" -T "$target" >"$logf" 2>&1 &
    BP_PID=$!
    for _ in $(seq 1 1200); do
        if [ -S "$BP_SOCK" ] && "$PYTHON" "$here/bdevperf_rpc.py" "$BP_SOCK" wait 1 2>/dev/null; then
            return 0
        fi
        kill -0 "$BP_PID" 2>/dev/null || { wait "$BP_PID" 2>/dev/null || true; BP_PID=""; return 1; }
        sleep 0.1
    done
    bench_stop_bdevperf
    return 1
}

rpc() { "$PYTHON" "$here/bdevperf_rpc.py" "$BP_SOCK" "$@"; }

# The volume's bdev_jraid_get_bdevs object, or "" (the row then lacks it and the report says n/a).
vol_info() { # TARGET
    rpc bdev_jraid_get_bdevs "{\"name\":\"$1\"}" 2>>"$work/rpc.err" |
        "$PYTHON" -c 'import json,sys; v=json.load(sys.stdin); print(json.dumps(v[0] if v else None))' \
            2>>"$work/rpc.err" || true
}

# record SCENARIO VARIANT SIZE-BYTES REP WORKLOAD QD IOSIZE RESULT BEFORE AFTER LOADAVG
#        STAT-BEFORE STAT-AFTER [ERROR]
record() {
    "$PYTHON" - "$raw" "$@" <<'PY'
import json, sys
raw, scen, var, size, rep, wl, qd, io, res, before, after, load, st0, st1 = sys.argv[1:15]
err = sys.argv[15] if len(sys.argv) > 15 else None
j = lambda s: json.loads(s) if s and s != "null" else None
row = {"scenario": scen, "variant": var, "target": "jr" if var == "on" else "jn",
       "member_bytes": int(size), "rep": int(rep), "workload": wl, "queue_depth": int(qd),
       "io_size": int(io), "loadavg_before": load.split(), "bdevperf": j(res),
       "before": j(before), "after": j(after),
       "cpu_stat_before": [x for x in st0.split(";") if x],
       "cpu_stat_after": [x for x in st1.split(";") if x]}
if err:
    row["error"] = err
with open(raw, "a") as f:
    f.write(json.dumps(row) + "\n")
PY
}

human() { # bytes -> 64 MiB / 8 GiB / 1 TiB
    "$PYTHON" -c 'import sys
b=int(sys.argv[1])
for u in ("TiB","GiB","MiB","KiB"):
    m={"TiB":1<<40,"GiB":1<<30,"MiB":1<<20,"KiB":1<<10}[u]
    if b>=m and b%m==0: print(f"{b//m} {u}"); break
else: print(f"{b} B")' "$1"
}

# one_test SCENARIO on|off MEMBER-BYTES REP WORKLOAD QD IOSIZE
one_test() {
    local scen=$1 var=$2 size=$3 rep=$4 wl=$5 qd=$6 io=$7 target cfg logf res="" before="" after="" err="" load st0 st1
    target=$(target_of "$var")
    cfg=$work/config-$size-$var.json
    [ -f "$cfg" ] || mk_config "$size" "$var" >"$cfg"
    logf=$out/logs/$scen-$size-$var-$rep.log
    local what
    what="$scen $(human "$size") journal $var #$rep"
    if ! start_bdevperf "$cfg" "$target" "$logf"; then
        log "  $what: bdevperf did not start (see $logf)"
        record "$scen" "$var" "$size" "$rep" "$wl" "$qd" "$io" "" "" "" "$(cut -d' ' -f1-3 /proc/loadavg)" "" "" \
            "bdevperf did not start: $(grep -m1 -i 'error\|invalid\|unknown' "$logf" 2>/dev/null | cut -c1-300)"
        return 0
    fi
    : >"$work/rpc.err"
    if [ "$warmup" -gt 0 ] && ! rpc perform_tests \
        "{\"workload_type\":\"$wl\",\"queue_depth\":$qd,\"io_size\":\"$io\",\"time_in_sec\":$warmup}" \
        >/dev/null 2>"$work/perf.err"; then
        log "  $what: warm-up: $(cat "$work/perf.err")"
    fi
    before=$(vol_info "$target")
    load=$(cut -d' ' -f1-3 /proc/loadavg)
    st0=$(bench_cpu_stat "$cores") # the report shows the stolen share (steal)
    if ! res=$(rpc perform_tests \
        "{\"workload_type\":\"$wl\",\"queue_depth\":$qd,\"io_size\":\"$io\",\"time_in_sec\":$T}" \
        2>"$work/perf.err"); then
        err=$(cat "$work/perf.err"); res=""
        log "  $what: $err"
    fi
    st1=$(bench_cpu_stat "$cores")
    after=$(vol_info "$target")
    bench_stop_bdevperf
    [ -n "$res" ] && log "  $what: $("$PYTHON" -c '
import json, sys
r = json.loads(sys.argv[1])["results"]
print("%.0f IOPS, %.1f MiB/s" % (sum(x["iops"] for x in r), sum(x["mibps"] for x in r)))' "$res")"
    record "$scen" "$var" "$size" "$rep" "$wl" "$qd" "$io" "$res" "$before" "$after" "$load" "$st0" "$st1" ${err:+"$err"}
}

# --------------------------------------------------------------------------------------------
# Probe: the smallest size, journal on must come up; journal off may be refused by an older build.
probe_size=${size_bytes[0]}
mk_config "$probe_size" on >"$work/probe-on.json"
start_bdevperf "$work/probe-on.json" jr "$out/logs/probe-on.log" ||
    die "bdevperf with jraid over null members does not start (logs/probe-on.log)"
[ -n "$(vol_info jr)" ] || die "bdev_jraid_get_bdevs does not answer over the bdevperf socket"
bench_stop_bdevperf
with_off=1
mk_config "$probe_size" off >"$work/probe-off.json"
if ! start_bdevperf "$work/probe-off.json" jn "$out/logs/probe-off.log"; then
    with_off=0
    log "bdev_jraid_create rejects \"journal\": false in this build: journal-off columns read n/a"
fi
bench_stop_bdevperf

# --------------------------------------------------------------------------------------------
# Metadata
"$PYTHON" - "$out/meta.json" <<PY
import json, platform, subprocess, sys
def sh(c):
    try:
        return subprocess.run(c, shell=True, capture_output=True, text=True).stdout.strip()
    except Exception:
        return ""
meta = {
    "date": "$stamp", "seconds_per_test": $T, "reps": $reps, "quick": bool($quick),
    "warmup_s": $warmup, "cores": $cores, "core_args": "${core_args[*]}",
    "member_bytes": [int(x) for x in "${size_bytes[*]}".split()],
    "seq_member_bytes": int("${seq_bytes:-0}") or None,
    "members": $members, "strip_kb": $strip_kb, "stripe_bytes": $stripe_bytes,
    "qd_random": $QD_RAND, "qd_seq": $QD_SEQ, "journal_mb": $((journal_blocks * blk / 1048576)),
    "mem_args": "${MEM_ARGS[*]}",
    "cpus": int(sh("nproc") or 0), "cpu_model": sh("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip(),
    "kernel": platform.release(), "spdk": sh("$BDEVPERF --version 2>/dev/null | tail -1") or "$SPDK_DIR",
    "jraid_git": sh("git -C '$root' describe --always --dirty 2>/dev/null"),
    "jraid_lib": "$JRAID_LIB", "loadavg_at_start": open("/proc/loadavg").read().split()[:3],
    "journal_off": bool($with_off),
}
json.dump(meta, open(sys.argv[1], "w"), indent=2)
PY

# --------------------------------------------------------------------------------------------
# The runs: per size, on/off interleaved for --reps rounds.
variants="on"
[ "$with_off" = 1 ] && variants="on off"
t0=$(date +%s)
for size in "${size_bytes[@]}"; do
    log "random 4 KiB writes, QD $QD_RAND, members of $(human "$size"): $reps round(s) of [$variants]"
    for ((rep = 1; rep <= reps; rep++)); do
        for var in $variants; do
            one_test randwrite "$var" "$size" "$rep" randwrite "$QD_RAND" 4096
        done
    done
done
if [ -n "$seq_bytes" ]; then
    log "full-stripe writes ($((stripe_bytes / 1024)) KiB), QD $QD_SEQ, members of $(human "$seq_bytes"): $reps round(s) of [$variants]"
    for ((rep = 1; rep <= reps; rep++)); do
        for var in $variants; do
            one_test seqwrite "$var" "$seq_bytes" "$rep" write "$QD_SEQ" "$stripe_bytes"
        done
    done
fi
log "runs took $(($(date +%s) - t0)) s"

# --------------------------------------------------------------------------------------------
# Report
"$PYTHON" "$here/journal_scale_report.py" "$out"
log "results in $out"

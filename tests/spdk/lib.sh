# Shared helpers of the SPDK integration tests (sourced by run.sh and the test_*.sh scripts).
# SPDK is found through pkg-config; SPDK_DIR overrides the source tree (apps, rpc.py, fio plugin).

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
SPDK_LIBDIR=$(pkg-config --libs-only-L spdk_bdev | sed -n 's/^ *-L\([^ ]*\).*/\1/p')
SPDK_DIR=${SPDK_DIR:-$(cd "$SPDK_LIBDIR/../.." && pwd)}
SPDK_TGT=${SPDK_TGT:-$SPDK_DIR/build/bin/spdk_tgt}
BDEVPERF=${BDEVPERF:-$SPDK_DIR/build/examples/bdevperf}
BDEVIO=${BDEVIO:-$SPDK_DIR/test/bdev/bdevio/bdevio}
RPC_PY=${RPC_PY:-$SPDK_DIR/scripts/rpc.py}
FIO=${FIO:-}
FIO_PLUGIN=${FIO_PLUGIN:-$SPDK_DIR/build/fio/spdk_bdev}
JRAID_LIB=${JRAID_LIB:-$root/target/release/libjraid.so}
WORK=${WORK:-$(mktemp -d /tmp/jraid-spdk.XXXXXX)}
# Memory for SPDK apps: hugepages when reserved (and NO_HUGE is not 1), ordinary memory otherwise.
# Free (not just reserved) hugepages: other SPDK apps on the machine may hold some.
if [ "${NO_HUGE:-0}" != 1 ] && [ "$(awk '/^HugePages_Free/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)" -ge 768 ]; then
    MEM_ARGS=(-s 1024)
else
    MEM_ARGS=(--no-huge -s 2048)
fi
# No per-core lock files: other SPDK apps on this machine (benchmarks, a second test) may hold
# them, and each app here has its own hugepage file prefix anyway.
MEM_ARGS+=(--disable-cpumask-locks)

log() { echo "[$(date +%T)] $*" >&2; }
die() { log "FAIL: $*"; exit 1; }

# spdk_env CMD...: run an SPDK app with the module preloaded (on the app itself).
spdk_env() {
    env LD_LIBRARY_PATH="$SPDK_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" LD_PRELOAD="$JRAID_LIB" "$@"
}

# rpc SOCK METHOD [JSON-PARAMS]: one JSON-RPC call; prints the JSON response.
rpc() { python3 "$here/jrpc.py" "$@"; }

# rpc_ok SOCK METHOD [PARAMS]: call, fail the test on a JSON-RPC error, print the result.
rpc_ok() {
    local out
    out=$(rpc "$@") || die "rpc $2 failed"
    python3 -c 'import json,sys; r=json.load(sys.stdin); e=r.get("error")
if e: sys.exit("error %s" % e)
print(json.dumps(r.get("result")))' <<<"$out" || die "rpc $2: $out"
}

# start_tgt SOCK LOG [CONFIG]: start spdk_tgt in the background; sets TGT_PID. TGT_MASK
# (default 0x3) is its core mask, TGT_MEM_ARGS (default MEM_ARGS) its memory arguments.
start_tgt() {
    local sock=$1 logf=$2 cfg=${3:-}
    rm -f "$sock"
    local args=(-m "${TGT_MASK:-0x3}" -r "$sock")
    if [ -n "${TGT_MEM_ARGS+x}" ]; then args+=("${TGT_MEM_ARGS[@]}"); else args+=("${MEM_ARGS[@]}"); fi
    [ -n "$cfg" ] && args+=(--json "$cfg")
    # Not through spdk_env: $! must be spdk_tgt itself (env execs it), not a subshell.
    env LD_LIBRARY_PATH="$SPDK_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" LD_PRELOAD="$JRAID_LIB" \
        "$SPDK_TGT" "${args[@]}" >"$logf" 2>&1 &
    TGT_PID=$!
    TGT_LOG=$logf
    for _ in $(seq 1 200); do
        [ -S "$sock" ] && rpc "$sock" spdk_get_version >/dev/null 2>&1 && return 0
        kill -0 "$TGT_PID" 2>/dev/null || { cat "$logf" >&2; die "spdk_tgt exited"; }
        sleep 0.1
    done
    die "spdk_tgt did not come up"
}

stop_tgt() {
    [ -n "${TGT_PID:-}" ] || return 0
    kill -TERM "$TGT_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$TGT_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$TGT_PID" 2>/dev/null || true
    wait "$TGT_PID" 2>/dev/null || true
    TGT_PID=
    check_clean_exit "${TGT_LOG:-/dev/null}" spdk_tgt
}

# check_clean_exit LOG WHAT: an SPDK app that stopped must have stopped cleanly: every thread
# exited with no poller left registered (a poller left by the module makes the app wait for a
# timeout at exit and then free the thread by force).
check_clean_exit() {
    if grep -aE "still registered at thread exit|move it to the exited state forcefully" "$1" >&2; then
        die "$2 did not exit cleanly (a poller or thread left at exit; log $1)"
    fi
}

# kill_under_load CFG LOG BDEVPERF-ARGS...: bdevperf over CFG (two reactors) with the given
# workload, killed with -9 after LOAD_S seconds (default 5); fails unless r0 came up.
kill_under_load() {
    local cfg=$1 logf=$2 load; shift 2
    spdk_env "$BDEVPERF" --json "$cfg" -m 0x3 "${MEM_ARGS[@]}" "$@" -t 60 -T r0 >"$logf" 2>&1 &
    load=$!
    sleep "${LOAD_S:-5}"
    pkill -KILL -P "$load" 2>/dev/null || true
    kill -KILL "$load" 2>/dev/null || true
    wait "$load" 2>/dev/null || true
    grep -aq "jraid volume r0 online" "$logf" || { tail "$logf" >&2; die "volume never came up"; }
}

# wait_bdev SOCK NAME: wait until a bdev exists and, for a jraid volume, until the resync after
# a crash and the initial parity pass it may run in the background are over (a volume serves
# I/O during both).
wait_bdev() {
    local found=0 state
    for _ in $(seq 1 100); do
        rpc "$1" bdev_get_bdevs "{\"name\":\"$2\"}" | grep -q '"result"' && { found=1; break; }
        sleep 0.1
    done
    [ $found = 1 ] || die "bdev $2 never appeared"
    for _ in $(seq 1 600); do
        state=$(rpc "$1" bdev_jraid_get_bdevs "{\"name\":\"$2\"}" | python3 -c '
import json, sys
r = json.load(sys.stdin).get("result")
active = ("starting", "running", "flushing", "stopping", "recording")
states = [r[0][k]["state"] for k in ("recovery", "init") if r and r[0].get(k)]
print(next((s for s in states if s in active), "none"))' 2>/dev/null || echo none)
        case "$state" in starting | running | flushing | stopping | recording) sleep 0.1 ;; *) return 0 ;; esac
    done
    die "the resync of $2 after a crash (or its initial parity pass) did not end"
}

# aio_entries DIR NAMES...: bdev_aio_create entries (4 KiB blocks) for files DIR/NAME, comma-separated.
aio_entries() {
    local dir=$1 sep=""; shift
    for n in "$@"; do
        printf '%s{"method":"bdev_aio_create","params":{"name":"%s","filename":"%s","block_size":4096}}' \
            "$sep" "$n" "$dir/$n"
        sep=","
    done
}

# bdev_config FILE ENTRIES: a JSON config of the bdev subsystem with ENTRIES, then wait for examine.
bdev_config() {
    printf '{"subsystems":[{"subsystem":"bdev","config":[%s,{"method":"bdev_wait_for_examine"}]}]}\n' "$2" >"$1"
}

# malloc_entries BLOCKS NAMES...: bdev_malloc_create entries (4 KiB blocks), comma-separated.
malloc_entries() {
    local blocks=$1 sep=""; shift
    for n in "$@"; do
        printf '%s{"method":"bdev_malloc_create","params":{"name":"%s","num_blocks":%d,"block_size":4096}}' \
            "$sep" "$n" "$blocks"
        sep=","
    done
}

# jraid_create NAME JOURNAL MEMBERS...: a bdev_jraid_create entry with 64 KiB strips.
jraid_create() {
    local name=$1 journal=$2 members; shift 2
    members=$(printf '"%s",' "$@")
    printf '{"method":"bdev_jraid_create","params":{"name":"%s","strip_size_kb":64,"base_bdevs":[%s],"journal_bdev":"%s"}}' \
        "$name" "${members%,}" "$journal"
}

# malloc_volume_config FILE: four 64 MiB malloc members m0..m3, malloc journal jl, volume r0.
malloc_volume_config() {
    bdev_config "$1" "$(malloc_entries 16384 m0 m1 m2 m3),$(malloc_entries 2048 jl),$(jraid_create r0 jl m0 m1 m2 m3)"
}

# mallocs SOCK BLOCKS NAMES...: create malloc bdevs of BLOCKS 4 KiB blocks.
mallocs() {
    local sock=$1 blocks=$2; shift 2
    for b in "$@"; do
        rpc_ok "$sock" bdev_malloc_create "{\"name\":\"$b\",\"num_blocks\":$blocks,\"block_size\":4096}" >/dev/null
    done
}

# find_fio: set FIO (fio binary) and FIO_MEM_OPTS (the plugin's memory options, job-file lines).
# fio: $FIO, else the fio SPDK's plugin was built against (CONFIG_FIO_SOURCE_DIR in
# $SPDK_DIR/mk/config.mk; scripts/install_spdk.sh builds it there), else `fio` on PATH. A missing
# plugin or fio fails the test: the plugin is part of the SPDK that jraid supports.
find_fio() {
    [ -f "$FIO_PLUGIN" ] ||
        die "no SPDK fio plugin at $FIO_PLUGIN (scripts/install_spdk.sh builds SPDK --with-fio)"
    if [ -z "${FIO:-}" ]; then
        local src
        src=$(sed -n 's/^CONFIG_FIO_SOURCE_DIR?*=//p' "$SPDK_DIR/mk/config.mk" 2>/dev/null | tail -1)
        if [ -n "$src" ] && [ -x "$src/fio" ]; then
            FIO=$src/fio
        else
            FIO=$(command -v fio || true)
        fi
    fi
    [ -n "${FIO:-}" ] && [ -x "$FIO" ] ||
        die "SPDK's fio plugin exists but no fio binary was found (set FIO=/path/to/fio)"
    log "fio: $FIO ($("$FIO" --version)), plugin: $FIO_PLUGIN"
    # The plugin has no --no-huge switch of its own: it goes through env_context to DPDK, with
    # --legacy-mem so that SPDK's env knows the memory is static (as spdk_tgt --no-huge does).
    if [ "${MEM_ARGS[0]}" = --no-huge ]; then
        FIO_MEM_OPTS="spdk_mem=1024
env_context=--no-huge --legacy-mem"
    else
        FIO_MEM_OPTS="spdk_mem=512"
    fi
}

# run_fio DIR TIMEOUT ARGS...: fio with the plugin and the module preloaded, in DIR (fio writes
# its verify state and dumps of bad blocks into its working directory). FIO_KILL=1: the timeout
# is a kill -9 under load, not a failure.
run_fio() {
    local d=$1 t=$2 sig=TERM; shift 2
    [ "${FIO_KILL:-0}" = 1 ] && sig=KILL
    # LD_PRELOAD on fio itself (timeout execs it with the environment env gives it).
    (cd "$d" && exec timeout -s "$sig" "$t" env LD_LIBRARY_PATH="$SPDK_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        LD_PRELOAD="$FIO_PLUGIN $JRAID_LIB" "$FIO" "$@")
}

# fio_verified LOG JSON WHAT: after a fio write+verify run (--output-format=json), fail the test on
# any verify error in LOG or JSON, or unless every job wrote something, read back as much as it
# wrote, and ended without error; prints one line per job.
fio_verified() {
    local logf=$1 json=$2 what=$3
    grep -aiE "verify: bad|crc32c: verify failed|bad magic" "$logf" "$json" && die "verify errors $what"
    python3 - "$json" <<'PY' || die "fio results $what"
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])
for j in d["jobs"]:
    w, r = j["write"], j["read"]
    print(f"{j['jobname']}: wrote {w['io_bytes']/2**20:.1f} MiB, verified {r['io_bytes']/2**20:.1f} MiB, error {j['error']}")
    assert j["error"] == 0 and w["io_bytes"] > 0 and r["io_bytes"] == w["io_bytes"], j["jobname"]
PY
}

# rpc_err SOCK METHOD PARAMS WHAT: the call must fail; prints the error.
rpc_err() {
    local out
    out=$(rpc "$1" "$2" "$3")
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); e=r.get("error")
assert e, "expected an error: %s" % r
print(e["code"], e["message"])' "$out" || die "$4: $out"
}

# fill_fio DIR CONF: DIR/fill.fio, a sequential fill of r0 (over CONF) whose every write of a
# block carries the same bytes (its offset), so whatever a kill leaves in flight, every block
# written once reads back as exactly that.
fill_fio() {
    cat >"$1/fill.fio" <<FIO
[global]
ioengine=spdk_bdev
spdk_json_conf=$2
$FIO_MEM_OPTS
thread=1
direct=1
filename=r0
rw=write
bs=4k
iodepth=32
size=48m
verify=pattern
verify_pattern=%o
do_verify=0

[load]
FIO
}

# verify_only DIR CONF WHAT: fio verify-only of every block DIR/fill.fio wrote, over CONF.
verify_only() {
    local rc=0
    sed -e "s|^spdk_json_conf=.*|spdk_json_conf=$2|" \
        -e 's/^do_verify=0$/verify_only=1\nverify_fatal=1/' "$1/fill.fio" >"$1/verify.fio"
    rm -f "$1/fio.sock"
    run_fio "$1" 300 --output-format=json --output="$1/verify.json" "$1/verify.fio" >"$1/verify.log" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { tail -30 "$1/verify.log" >&2; die "fio verify-only $3 failed (rc $rc)"; }
    grep -aiE "verify: bad|verify failed|bad pattern" "$1/verify.log" "$1/verify.json" && die "fio verify-only $3 reported bad blocks"
    python3 - "$1/verify.json" <<'PY' || die "fio verify-only results $3"
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])
j = d["jobs"][0]
print(f"fio verify-only: {j['read']['io_bytes'] / 2**20:.1f} MiB read and checked, error {j['error']}")
assert j["error"] == 0 and j["read"]["io_bytes"] == 48 << 20, j["read"]["io_bytes"]
PY
}

# scrub_clean SOCK WHAT: bdev_jraid_scrub of r0 must end finding parity clean.
scrub_clean() {
    local sc=""
    wait_bdev "$1" r0
    rpc_ok "$1" bdev_jraid_scrub '{"name":"r0"}' >/dev/null
    for _ in $(seq 1 300); do
        sc=$(rpc_ok "$1" bdev_jraid_get_bdevs '{"name":"r0"}' | python3 -c 'import json,sys; s=json.load(sys.stdin)[0]["scrub"]; print(s["state"], s["mismatches"])')
        [ "${sc%% *}" = done ] && break
        sleep 0.1
    done
    [ "$sc" = "done 0" ] || die "scrub $2: $sc"
}

# wait_fio_sock DIR: wait until the fio plugin started in DIR answers RPCs on DIR/fio.sock
# (its volume is up).
wait_fio_sock() {
    for _ in $(seq 1 200); do
        [ -S "$1/fio.sock" ] && rpc "$1/fio.sock" bdev_jraid_get_bdevs >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    die "fio's RPC socket $1/fio.sock never answered"
}

# start_hot_fio DIR CONF LOOPS: fio crc32c write+verify of r0 (over CONF) on two threads of 40
# MiB each, LOOPS passes, its RPC socket at DIR/fio.sock (for changes under the load); started
# in the background (FIO_PID; results in DIR/hot.json and DIR/hot.log) and waited for until the
# volume is up. Beside them a third thread writes 40 MiB sequentially at 400 IOPS (a new stripe
# about every 30 ms for 26 s), then verifies them: the two hot regions' stripes may all stay
# listed (a clean stripe stays up to 1 s while the record has room), so they alone may need no
# record, and the tests that check that records go on need new stripes.
start_hot_fio() {
    cat >"$1/hot.fio" <<FIO
[global]
ioengine=spdk_bdev
spdk_rpc_listen_addr=$1/fio.sock
spdk_json_conf=$2
$FIO_MEM_OPTS
thread=1
direct=1
filename=r0
rw=randwrite
bs=4k
iodepth=32
verify=crc32c
do_verify=1
verify_fatal=1
verify_dump=1
loops=$3
rate_iops=20000
group_reporting=0

[w4k]
numjobs=2
size=40m
offset_increment=40m

[stream]
rw=write
offset=80m
size=40m
loops=1
rate_iops=400
FIO
    rm -f "$1/fio.sock"
    run_fio "$1" 300 --output-format=json --output="$1/hot.json" "$1/hot.fio" >"$1/hot.log" 2>&1 &
    FIO_PID=$!
    wait_fio_sock "$1"
}

#!/usr/bin/env bash
# Member replacement and rebuild (bdev_jraid_add_base_bdev):
#  (a) throughput: bdevperf writes to a raw malloc bdev shaped like the rebuild's member writes
#      (strip-sized, 4 in flight) = member bandwidth; then a member is removed and rebuilt onto
#      a spare with no load and no cap (default window 16), then with window 4: rebuild rate from bdev_jraid_get_bdevs. Both printed.
#  (b) under bdevperf -w verify load: remove a member, rebuild onto a spare with a bandwidth
#      cap (progress polled), then remove another and rebuild uncapped; verify passes, every
#      member ends active, a scrub finds parity clean.
#  (c) crash during a rebuild (spdk_tgt over AIO files, kill -9): examine re-assembles the
#      volume with the replacement failed and restarts its rebuild; it ends active.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bdevperf_rpc.sh"
trap 'bp_stop; stop_tgt' EXIT

T=${T:-10}
PARTS=${PARTS:-abc}
sock=$WORK/rb.sock

# wait_rebuild SOCK [LABEL]: poll until the rebuild is over; prints progress; fails unless done.
wait_rebuild() {
    local st none=0
    for _ in $(seq 1 480); do
        st=$(jget "$1" 'v["rebuild"]["state"] if v["rebuild"] else "none"')
        if [ "$st" = none ]; then
            none=$((none + 1))
            [ "$none" -lt 40 ] || die "${2:-rebuild}: no rebuild running"
        fi
        case $st in
            done) log "${2:-rebuild}: $(jget "$1" 'v["rebuild"]')"; return 0 ;;
            failed|aborted) die "${2:-rebuild}: $(jget "$1" 'v["rebuild"]')" ;;
        esac
        [ -n "${VERBOSE_PROGRESS:-}" ] && log "  progress: $(jget "$1" '"%s %s/%s stripes %.1f%% %s MiB/s" % (v["rebuild"]["state"], v["rebuild"].get("stripes_done"), v["rebuild"].get("stripes_total"), v["rebuild"].get("percent", 0), v["rebuild"].get("mib_per_s")) if v["rebuild"] else "none"')"
        sleep 0.25
    done
    die "${2:-rebuild}: never finished"
}

all_active() {
    local st; st=$(jget "$1" 'v["state"] + " " + " ".join(m["state"] for m in v["members"])')
    [ "$st" = "online active active active active" ] || die "$2: $st"
}

# (a) Member bandwidth beside rebuild rate (256 MiB members).
if [[ $PARTS == *a* ]]; then
mk=65536
cfg=$WORK/rb-a.json
cat >"$cfg" <<JSON
{"subsystems":[{"subsystem":"bdev","config":[
 {"method":"bdev_malloc_create","params":{"name":"m0","num_blocks":$mk,"block_size":4096}},
 {"method":"bdev_malloc_create","params":{"name":"m1","num_blocks":$mk,"block_size":4096}},
 {"method":"bdev_malloc_create","params":{"name":"m2","num_blocks":$mk,"block_size":4096}},
 {"method":"bdev_malloc_create","params":{"name":"m3","num_blocks":$mk,"block_size":4096}},
 {"method":"bdev_malloc_create","params":{"name":"sp","num_blocks":$mk,"block_size":4096}},
 {"method":"bdev_malloc_create","params":{"name":"raw","num_blocks":$mk,"block_size":4096}},
 {"method":"bdev_malloc_create","params":{"name":"jl","num_blocks":2048,"block_size":4096}},
 {"method":"bdev_jraid_create","params":{"name":"r0","strip_size_kb":64,
   "base_bdevs":["m0","m1","m2","m3"],"journal_bdev":"jl"}},
 {"method":"bdev_wait_for_examine"}
]}]}
JSON
BP_MEM_ARGS=(--no-huge -s 2560 --disable-cpumask-locks)
bp_start "$sock" "$WORK/rb-a.log" "$cfg" -q 4 -o 65536 -w write -t 3 -T raw
bp_perform "$sock" "$WORK/rb-a.out"
wait "$PERF_PID" || die "member bandwidth run failed"
read -r _ member_mibs <<<"$(bp_check_total "$WORK/rb-a.log" "member bandwidth")"
rpc_ok "$sock" bdev_malloc_delete '{"name":"m2"}' >/dev/null
sleep 0.3
[ "$(jget "$sock" 'v["state"]')" = degraded ] || die "(a) not degraded"
rpc_ok "$sock" bdev_jraid_add_base_bdev '{"name":"r0","base_bdev":"sp"}' >/dev/null
wait_rebuild "$sock" "(a) idle rebuild"
all_active "$sock" "(a)"
rb_mibs=$(jget "$sock" 'v["rebuild"]["mib_per_s"]')
rpc_ok "$sock" bdev_malloc_delete '{"name":"m1"}' >/dev/null
sleep 0.3
rpc_ok "$sock" bdev_jraid_add_base_bdev '{"name":"r0","base_bdev":"raw","window":4}' >/dev/null
wait_rebuild "$sock" "(a) idle rebuild, window 4"
all_active "$sock" "(a) window 4"
rb4_mibs=$(jget "$sock" 'v["rebuild"]["mib_per_s"]')
rpc_ok "$sock" bdev_jraid_scrub '{"name":"r0"}' >/dev/null
for _ in $(seq 1 400); do [ "$(jget "$sock" 'v["scrub"]["state"]')" = done ] && break; sleep 0.1; done
[ "$(jget "$sock" 'v["scrub"]["mismatches"]')" = 0 ] || die "(a) scrub after rebuild: $(jget "$sock" 'v["scrub"]')"
bp_stop
printf '%-44s %10s\n' "member bandwidth (64 KiB writes, qd 4, malloc)" "$member_mibs MiB/s" \
    "rebuild rate, idle volume, no cap (window 16)" "$rb_mibs MiB/s" \
    "rebuild rate, idle volume, no cap (window 4)" "$rb4_mibs MiB/s"
fi

# (b) Rebuild under verify load (64 MiB members).
if [[ $PARTS == *b* ]]; then
cfg=$WORK/rb-b.json
sed -e "s/\"num_blocks\":$mk/\"num_blocks\":16384/g" -e '/"raw"/d' "$WORK/rb-a.json" \
    | sed 's/{"method":"bdev_malloc_create","params":{"name":"sp",/{"method":"bdev_malloc_create","params":{"name":"sp2","num_blocks":16384,"block_size":4096}},\n &/' >"$cfg"
BP_MEM_ARGS=(--no-huge -s 1536 --disable-cpumask-locks)
bp_start "$sock" "$WORK/rb-b.log" "$cfg" -C -q 32 -o 16384 -w verify -t "$T" -T r0
bp_perform "$sock" "$WORK/rb-b.out"
sleep 1
rpc_ok "$sock" bdev_malloc_delete '{"name":"m2"}' >/dev/null
sleep 0.5
rpc_ok "$sock" bdev_jraid_add_base_bdev '{"name":"r0","base_bdev":"sp","bandwidth_mb":30}' >/dev/null
VERBOSE_PROGRESS=1 wait_rebuild "$sock" "(b) capped rebuild under load"
capped=$(jget "$sock" 'v["rebuild"]["mib_per_s"]')
awk -v r="$capped" 'BEGIN{exit !(r <= 33)}' || die "(b) cap of 30 MiB/s not kept: $capped"
all_active "$sock" "(b) after the capped rebuild"
rpc_ok "$sock" bdev_malloc_delete '{"name":"m0"}' >/dev/null
sleep 0.3
rpc_ok "$sock" bdev_jraid_add_base_bdev '{"name":"r0","base_bdev":"sp2"}' >/dev/null
wait_rebuild "$sock" "(b) uncapped rebuild under load"
loaded=$(jget "$sock" 'v["rebuild"]["mib_per_s"]')
all_active "$sock" "(b) after the uncapped rebuild"
wait "$PERF_PID" || { cat "$WORK/rb-b.out" >&2; die "(b) perform_tests failed"; }
res=$(bp_check_total "$WORK/rb-b.log" "(b) verify")
rpc_ok "$sock" bdev_jraid_scrub '{"name":"r0"}' >/dev/null
for _ in $(seq 1 400); do [ "$(jget "$sock" 'v["scrub"]["state"]')" = done ] && break; sleep 0.1; done
[ "$(jget "$sock" 'v["scrub"]["mismatches"]')" = 0 ] || die "(b) scrub: $(jget "$sock" 'v["scrub"]')"
bp_stop
printf '%-44s %10s\n' "rebuild rate under verify load, cap 30" "$capped MiB/s" \
    "rebuild rate under verify load, no cap" "$loaded MiB/s" \
    "verify during both rebuilds (IOPS MiB/s)" "$res"
fi

# (c) Crash during a rebuild.
if [[ $PARTS == *c* ]]; then
for f in a0 a1 a2 a3 aj asp; do rm -f "$WORK/$f.img"; truncate -s 64M "$WORK/$f.img"; done
TGT_MEM_ARGS=(--no-huge -s 1024 --disable-cpumask-locks)
aio() { rpc_ok "$sock" bdev_aio_create "{\"filename\":\"$WORK/$1.img\",\"name\":\"$1\",\"block_size\":4096}" >/dev/null; }
start_tgt "$sock" "$WORK/rb-c1.log"
for f in a0 a1 a2 a3 aj asp; do aio $f; done
rpc_ok "$sock" bdev_jraid_create \
    '{"name":"r1","strip_size_kb":64,"base_bdevs":["a0","a1","a2","a3"],"journal_bdev":"aj"}' >/dev/null
rpc_ok "$sock" bdev_aio_delete '{"name":"a1"}' >/dev/null
sleep 0.3
rpc_ok "$sock" bdev_jraid_add_base_bdev '{"name":"r1","base_bdev":"asp","bandwidth_mb":5}' >/dev/null
sleep 1
pct=$(jget "$sock" 'v["rebuild"]["percent"]')
awk -v p="$pct" 'BEGIN{exit !(p < 100)}' || die "(c) the rebuild was over before the kill ($pct%): nothing to test"
log "(c) killing spdk_tgt at $pct% of the rebuild"
kill -KILL "$TGT_PID"; wait "$TGT_PID" 2>/dev/null || true; TGT_PID=
start_tgt "$sock" "$WORK/rb-c2.log"
for f in a0 a1 a2 a3 aj asp; do aio $f; done
wait_bdev "$sock" r1
sleep 0.3
log "(c) after restart: $(jget "$sock" 'v["state"] + " " + " ".join(m["name"] + ":" + m["state"] for m in v["members"])')"
wait_rebuild "$sock" "(c) restarted rebuild"
all_active "$sock" "(c)"
[ "$(jget "$sock" 'v["members"][1]["name"]')" = asp ] || die "(c) slot 1 is not asp"
rpc_ok "$sock" bdev_jraid_scrub '{"name":"r1"}' >/dev/null
for _ in $(seq 1 400); do [ "$(jget "$sock" 'v["scrub"]["state"]')" = done ] && break; sleep 0.1; done
[ "$(jget "$sock" 'v["scrub"]["mismatches"]')" = 0 ] || die "(c) scrub: $(jget "$sock" 'v["scrub"]')"
stop_tgt
fi
log "test_rebuild: OK"

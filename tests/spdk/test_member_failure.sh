#!/usr/bin/env bash
# Member failure under bdevperf -w verify load (bdevperf itself hosts the volume, started with
# -z; the test acts over its RPC socket):
#  (a) one failed write on a member (bdev_error over malloc, bdev_error_inject_error -n 1):
#      the member is marked failed, the volume serves degraded, verify passes;
#  (b) one failed read under a random-read load: repaired as md does (the blocks rebuilt from
#      the others and written back), the member stays in service, no read fails;
#  (c) a member bdev deleted (hot-remove) under load: same.
# After (a) the same bdev is added back (bdev_jraid_add_base_bdev) and rebuilt: online again.
# The member states must also be in the superblocks: (d) spdk_tgt over AIO files, member
# deleted, volume deleted, files re-attached: examine assembles it degraded, without the
# stale member. (e) A transient write error on an AIO member under write load, then kill -9:
# after the restart the member works again, but its failure was recorded before any degraded
# write was acknowledged, so examine keeps it out (degraded, the member failed).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bdevperf_rpc.sh"
trap 'bp_stop; stop_tgt' EXIT

T=${T:-6}
sock=$WORK/mf.sock
cfg=$WORK/mf.json
bdev_config "$cfg" "$(malloc_entries 16384 m0 m1 m2 m3),$(malloc_entries 2048 jl),\
{\"method\":\"bdev_error_create\",\"params\":{\"base_name\":\"m1\"}},$(jraid_create r0 jl m0 EE_m1 m2 m3)"

# run_case NAME ACTION...: verify load; after 2 s run ACTION; the volume must end degraded
# with member $FAILED failed and verify clean.
run_case() {
    local name=$1; shift
    local logf=$WORK/mf-$name.log out=$WORK/mf-$name.out
    bp_start "$sock" "$logf" "$cfg" -C -q 32 -o 16384 -w "${BP_W:-verify}" -t "$T" -T r0
    [ "$(jget "$sock" 'v["state"]')" = online ] || die "$name: volume not online at start"
    bp_perform "$sock" "$out"
    sleep 2
    "$@" >/dev/null
    wait "$PERF_PID" || { cat "$out" >&2; tail -40 "$logf" >&2; die "$name: perform_tests failed"; }
    local res; res=$(bp_check_total "$logf" "$name")
    local state members
    if [ -n "${REPAIRED:-}" ]; then
        state=$(jget "$sock" 'v["state"] + " " + " ".join(m["state"] for m in v["members"])')
        local rr; rr=$(jget "$sock" 'v["writes"]["read_repaired"]')
        log "$name: $state, read errors repaired: $rr, IOPS/MiB/s: $res"
        [ "$state" = "online active active active active" ] || die "$name: $state (the member was failed for a repairable read error)"
        [ "$rr" -ge 1 ] || die "$name: no read repair counted"
        bp_stop
        return
    fi
    state=$(jget "$sock" 'v["state"]')
    members=$(jget "$sock" '" ".join(m["state"] for m in v["members"])')
    log "$name: volume $state, members [$members], verify IOPS/MiB/s: $res"
    [ "$state" = degraded ] || die "$name: volume is $state, expected degraded"
    [ "$(jget "$sock" "v['members'][$FAILED]['state']")" = failed ] || die "$name: member $FAILED not failed"
    local dw; dw=$(jget "$sock" 'v["writes"]["degraded_write"] + v["writes"]["degraded_read"]')
    [ "$dw" -gt 0 ] || die "$name: no degraded I/O counted"
    if [ -n "${READD:-}" ]; then
        # The same bdev back into its slot (the error was transient): rebuilt, then online.
        rpc_ok "$sock" bdev_jraid_add_base_bdev "{\"name\":\"r0\",\"base_bdev\":\"$READD\"}" >/dev/null
        for _ in $(seq 1 200); do
            [ "$(jget "$sock" 'v["rebuild"]["state"]')" = done ] && break
            sleep 0.1
        done
        state=$(jget "$sock" 'v["state"] + " " + " ".join(m["state"] for m in v["members"])')
        log "$name: $READD re-added and rebuilt: $state"
        [ "$state" = "online active active active active" ] || die "$name: after re-adding $READD: $state"
    fi
    bp_stop
}

FAILED=1
READD=EE_m1 run_case write_error rpc_ok "$sock" bdev_error_inject_error \
    '{"name":"EE_m1","io_type":"write","error_type":"failure","num":1}'
REPAIRED=1 BP_W=randread run_case read_error rpc_ok "$sock" bdev_error_inject_error \
    '{"name":"EE_m1","io_type":"read","error_type":"failure","num":1}'
FAILED=2
run_case hot_remove rpc_ok "$sock" bdev_malloc_delete '{"name":"m2"}'

# (d) Member states survive in the superblocks (AIO files persist across deletes).
for f in a0 a1 a2 a3 aj; do truncate -s 64M "$WORK/$f.img"; done
TGT_MEM_ARGS=(--no-huge -s 1024 --disable-cpumask-locks)
start_tgt "$sock" "$WORK/mf-tgt.log"
for f in a0 a1 a2 a3 aj; do
    rpc_ok "$sock" bdev_aio_create "{\"filename\":\"$WORK/$f.img\",\"name\":\"$f\",\"block_size\":4096}" >/dev/null
done
rpc_ok "$sock" bdev_jraid_create \
    '{"name":"r1","strip_size_kb":64,"base_bdevs":["a0","a1","a2","a3"],"journal_bdev":"aj"}' >/dev/null
rpc_ok "$sock" bdev_aio_delete '{"name":"a3"}' >/dev/null
sleep 0.5
[ "$(jget "$sock" 'v["state"]')" = degraded ] || die "superblocks: not degraded after removing a3"
rpc_ok "$sock" bdev_jraid_delete '{"name":"r1"}' >/dev/null
for f in a0 a1 a2 aj; do rpc_ok "$sock" bdev_aio_delete "{\"name\":\"$f\"}" >/dev/null; done
# All four back (a3 stale): examine must assemble degraded and leave a3 out.
for f in a3 a0 a1 a2 aj; do
    rpc_ok "$sock" bdev_aio_create "{\"filename\":\"$WORK/$f.img\",\"name\":\"$f\",\"block_size\":4096}" >/dev/null
done
wait_bdev "$sock" r1
sleep 0.3
st=$(jget "$sock" 'v["state"] + " " + " ".join(m["state"] for m in v["members"])')
log "re-assembled from superblocks: $st"
[ "$st" = "degraded active active active failed" ] || die "re-assembly: $st"
# a3 must not be claimed by the volume.
rpc "$sock" bdev_get_bdevs '{"name":"a3"}' | grep -q '"claimed": *false' || die "stale a3 is claimed"
stop_tgt

# (e) A transient failure, then a crash: the member comes back and must stay out.
ed=$WORK/mf-e
mkdir -p "$ed"
for f in b0 b1 b2 b3 bj; do truncate -s 64M "$ed/$f"; done
cfg_e=$WORK/mf-e.json
bdev_config "$cfg_e" "$(aio_entries "$ed" b0 b1 b2 b3 bj),\
{\"method\":\"bdev_error_create\",\"params\":{\"base_name\":\"b1\"}},$(jraid_create r2 bj b0 EE_b1 b2 b3)"
bp_start "$sock" "$WORK/mf-e.log" "$cfg_e" -q 32 -o 4096 -w randwrite -t 30 -T r2
bp_perform "$sock" "$WORK/mf-e.out"
sleep 1
rpc_ok "$sock" bdev_error_inject_error '{"name":"EE_b1","io_type":"write","error_type":"failure","num":1}' >/dev/null
for _ in $(seq 1 50); do
    [ "$(jget "$sock" 'v["writes"]["degraded_write"]')" -gt 100 ] && break
    sleep 0.05
done
[ "$(jget "$sock" 'v["members"][1]["state"]')" = failed ] || die "(e) b1 not failed after the write error"
kill -9 "$BP_PID"
wait "$BP_PID" 2>/dev/null || true
BP_PID=
start_tgt "$sock" "$WORK/mf-tgt-e.log"
for f in b0 b1 b2 b3 bj; do
    rpc_ok "$sock" bdev_aio_create "{\"filename\":\"$ed/$f\",\"name\":\"$f\",\"block_size\":4096}" >/dev/null
done
wait_bdev "$sock" r2
sleep 0.3
st=$(jget "$sock" 'v["state"] + " " + " ".join(m["state"] for m in v["members"])')
log "(e) after a transient write error on b1 and kill -9, b1 back: $st"
[ "$st" = "degraded active failed active active" ] || die "(e) the transiently failed member was taken back: $st"
stop_tgt
log "test_member_failure: OK"

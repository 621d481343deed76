#!/usr/bin/env bash
# (o) Online recovery: kill -9 under write load leaves thousands of stripes listed; the restart
# registers r0 at once and serves I/O while the listed stripes are resynced in the background
# (slowed down by bdev_jraid_set_options recovery_bandwidth_mb, so that the test sees it run):
# bdev_jraid_get_bdevs shows the recovery running with unsynced stripes, and bdevperf verify
# (writes, also to stripes not yet resynced, each read back) finishes with 0 failed I/O
# meanwhile. Then the cap is lifted at runtime, the resync ends, and after a clean stop the
# parity is clean and the journal lists nothing.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$here/bdevperf_rpc.sh"
trap 'bp_stop; stop_tgt' EXIT

dir=$WORK/online
mkdir -p "$dir"
for i in 0 1 2 3; do truncate -s 64M "$dir/m$i"; done
truncate -s 8M "$dir/jl"
members=("$dir/m0" "$dir/m1" "$dir/m2" "$dir/m3")
create='{"method":"bdev_jraid_create","params":{"name":"r0","strip_size_kb":16,"base_bdevs":["m0","m1","m2","m3"],"journal_bdev":"jl"}}'
slow='{"method":"bdev_jraid_set_options","params":{"recovery_bandwidth_mb":1,"recovery_window":4}}'
bdev_config "$dir/load.json" "$(aio_entries "$dir" m0 m1 m2 m3 jl),$create"
bdev_config "$dir/restart.json" "$slow,$(aio_entries "$dir" m0 m1 m2 m3 jl)"

log "write load (4 KiB random writes on both reactors), then kill -9"
kill_under_load "$dir/load.json" "$dir/load.log" -C -q 128 -o 4096 -w randwrite
out=$(python3 "$here/scrub.py" "$dir/jl" "${members[@]}") || die "a stripe with stale parity is not listed in the journal"
echo "$out"
listed=$(sed -n 's/.* lists \([0-9]*\) stripes of volume.*/\1/p' <<<"$out")
[ "${listed:-0}" -ge 200 ] || die "only ${listed:-0} stripes listed at the crash: too few to see a resync run"

log "restart (resync capped at 1 MiB/s): r0 serves I/O at once while $listed stripes resync"
sock=$dir/bp.sock
bp_start "$sock" "$dir/restart.log" "$dir/restart.json" -q 32 -o 4096 -w verify -t 4
for _ in $(seq 1 100); do rpc "$sock" bdev_get_bdevs '{"name":"r0"}' >/dev/null 2>&1 && break; sleep 0.1; done
before=$(jget "$sock" '"%s %d %d" % (v["recovery"]["state"], v["unsynced_stripes"], v["recovery"]["stripes_total"])')
read -r rstate unsynced total <<<"$before"
log "registered: recovery $rstate, $unsynced of $total listed stripes not yet resynced"
[ "$rstate" = running ] || die "the recovery is not running when r0 is registered ($before)"
[ "$unsynced" -gt 0 ] || die "nothing left to resync when r0 is registered ($before)"
grep -a "resyncing .* in the background" "$dir/restart.log" >&2 || die "no background resync logged"
bp_perform "$sock" "$dir/verify.log"
wait "$PERF_PID" || { cat "$dir/verify.log" >&2; die "perform_tests failed"; }
read -r iops mibs <<<"$(bp_check_total "$dir/restart.log" "verify while resyncing")"
after=$(jget "$sock" '"%s %d %d" % (v["recovery"]["state"], v["unsynced_stripes"], v["recovery"]["stripes_resynced"])')
read -r rstate2 unsynced2 resynced2 <<<"$after"
log "bdevperf verify while resyncing: $iops IOPS, 0 failed; then recovery $rstate2, $unsynced2 unsynced, $resynced2 resynced"
[ "$rstate2" = running ] && [ "$unsynced2" -gt 0 ] || die "the resync was over before the verify ended ($after): the test saw no overlap"

log "cap lifted at runtime: the resync finishes"
rpc_ok "$sock" bdev_jraid_set_options '{"recovery_bandwidth_mb":0,"recovery_window":32}' >/dev/null
for _ in $(seq 1 600); do
    [ "$(jget "$sock" 'v["recovery"]["state"]')" = "done" ] && break
    sleep 0.1
done
final=$(jget "$sock" '"%s %d %s" % (v["recovery"]["state"], v["unsynced_stripes"], v["recovery"]["mib_per_s"])')
log "recovery: $final"
read -r rstate3 unsynced3 _ <<<"$final"
[ "$rstate3" = "done" ] && [ "$unsynced3" -eq 0 ] || die "the resync did not finish ($final)"
grep -a "recovered (" "$dir/restart.log" >&2 || die "no recovery end logged"
bp_stop
grep -aq "jraid volume r0 stopped" "$dir/restart.log" || { tail -20 "$dir/restart.log" >&2; die "r0 did not stop cleanly"; }
out=$(python3 "$here/scrub.py" --clean "$dir/jl" "${members[@]}") || die "parity not clean after the online recovery"
echo "$out"
grep -q "lists 0 stripes of volume 0" <<<"$out" || die "stripes still listed after the resync and a clean stop: $out"
log "test_online_recovery: OK"

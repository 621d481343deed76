#!/usr/bin/env bash
# (o) Online recovery: kill -9 under write load leaves thousands of stripes listed; the restart
# registers r0 at once and serves I/O while the listed stripes are resynced in the background
# (slowed down by bdev_jraid_set_options recovery_bandwidth_mb, so that the test sees it run):
# bdev_jraid_get_bdevs shows the recovery running with unsynced stripes, and bdevperf verify
# (writes, also to stripes not yet resynced, each read back) finishes with 0 failed I/O
# meanwhile. Then the cap is lifted at runtime, the resync ends, and after a clean stop the
# parity is clean and the journal lists nothing.
# Then the same with fio: kill -9 under fio's random-write load (pattern verification, each
# block's offset in it), and a restart in which fio verify-only reads every block back while
# the resync still runs (capped, it never ends before fio does); fio's exit stops the resync
# with its stripes still listed, and the listing still covers every stripe with stale parity.
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

log "fio: kill -9 under random writes, then verify-only while the resync runs"
find_fio
fdir=$WORK/online-fio
mkdir -p "$fdir"
for i in 0 1 2 3; do truncate -s 64M "$fdir/m$i"; done
truncate -s 8M "$fdir/jl"
fmembers=("$fdir/m0" "$fdir/m1" "$fdir/m2" "$fdir/m3")
bdev_config "$fdir/load.json" "$(aio_entries "$fdir" m0 m1 m2 m3 jl),$create"
bdev_config "$fdir/reopen.json" "$(aio_entries "$fdir" m0 m1 m2 m3 jl)"
bdev_config "$fdir/restart.json" "$slow,$(aio_entries "$fdir" m0 m1 m2 m3 jl)"
# Every write of a block carries the same bytes (its offset, repeated), so whatever a kill
# leaves in flight, each block written once reads back as exactly that; a block never written
# (zeros) or a wrong block fails the check. A first fio run writes all 48 MiB once (and ends);
# the second rewrites them at random until it is killed.
cat >"$fdir/load.fio" <<FIO
[global]
ioengine=spdk_bdev
spdk_json_conf=$fdir/load.json
$FIO_MEM_OPTS
thread=1
direct=1
filename=r0
rw=randwrite
bs=4k
iodepth=32
size=48m
verify=pattern
verify_pattern=%o
do_verify=0
time_based=1
runtime=60

[load]
FIO
sed -e '/^time_based=/d' -e '/^runtime=/d' -e 's/^rw=randwrite$/rw=write/' "$fdir/load.fio" >"$fdir/fill.fio"
sed -i "s|^spdk_json_conf=.*|spdk_json_conf=$fdir/reopen.json|" "$fdir/load.fio" # r0 exists now
sed -e "s|^spdk_json_conf=.*|spdk_json_conf=$fdir/restart.json|" -e 's/^do_verify=0$/verify_only=1\nverify_fatal=1/' \
    "$fdir/fill.fio" >"$fdir/verify.fio"
rc=0
run_fio "$fdir" 120 "$fdir/fill.fio" >"$fdir/fill.log" 2>&1 || rc=$?
[ "$rc" = 0 ] || { tail -20 "$fdir/fill.log" >&2; die "fio fill failed (rc $rc)"; }
rc=0
FIO_KILL=1 run_fio "$fdir" "${LOAD_S:-5}" "$fdir/load.fio" >"$fdir/load.log" 2>&1 || rc=$?
[ "$rc" = 137 ] || { tail -20 "$fdir/load.log" >&2; die "fio under load ended with rc $rc, not by kill -9"; }
sleep 0.3 # the dead process's AIO drains (see README)
out=$(python3 "$here/scrub.py" "$fdir/jl" "${fmembers[@]}") || die "a stripe with stale parity is not listed in the journal"
echo "$out"
flisted=$(sed -n 's/.* lists \([0-9]*\) stripes of volume.*/\1/p' <<<"$out")
# How many stay listed follows the write rate in the last hysteresis (100 ms): 688, 206 and 147
# in three CI runs. The resync, capped at 1 MiB/s (48 KiB of data a stripe), gets through about 21 a
# second; fio's verify-only took 13 of 206 in one of those runs. 40 leave a margin of three; the
# check that matters is the one below: the resync still runs when fio's verify ends.
[ "${flisted:-0}" -ge 40 ] || die "only ${flisted:-0} stripes listed after kill -9 under fio"
# The plugin logs no notices; its RPC socket shows the resync while fio reads.
sed -i "s|^ioengine=spdk_bdev$|ioengine=spdk_bdev\nspdk_rpc_listen_addr=$fdir/fio.sock|" "$fdir/verify.fio"
rm -f "$fdir/fio.sock"
run_fio "$fdir" 300 --output-format=json --output="$fdir/verify.json" "$fdir/verify.fio" >"$fdir/verify.log" 2>&1 &
fio_pid=$!
seen=""
while kill -0 "$fio_pid" 2>/dev/null; do
    st=$(rpc "$fdir/fio.sock" bdev_jraid_get_bdevs '{"name":"r0"}' 2>/dev/null | python3 -c '
import json, sys
v = json.load(sys.stdin)["result"][0]
print(v["recovery"]["state"], v["unsynced_stripes"])' 2>/dev/null) || st=""
    # Once its verify is over, fio stops the volume (the resync is then aborted) while its RPC
    # server still answers: what is seen from then on is the shutdown.
    case "$st" in "" | aborted* | stopping*) ;; *) seen=$st ;; esac
    sleep 0.2
done
rc=0
wait "$fio_pid" || rc=$?
[ "$rc" = 0 ] || { tail -30 "$fdir/verify.log" >&2; die "fio verify-only after kill -9 failed (rc $rc)"; }
grep -aiE "verify: bad|verify failed|bad pattern" "$fdir/verify.log" "$fdir/verify.json" && die "fio verify-only reported bad blocks"
log "last seen over fio's RPC socket while it verified: recovery ${seen:-never seen}"
read -r fstate funsynced <<<"${seen:-none 0}"
[ "$fstate" = running ] && [ "$funsynced" -gt 0 ] || die "the resync was not running until fio's verify ended (${seen:-never seen})"
python3 - "$fdir/verify.json" <<'PY' || die "fio verify-only results"
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])
j = d["jobs"][0]
print(f"fio verify-only while resyncing: {j['read']['io_bytes'] / 2**20:.1f} MiB read and checked, error {j['error']}")
assert j["error"] == 0 and j["read"]["io_bytes"] == 48 << 20, j["read"]["io_bytes"]
PY
out=$(python3 "$here/scrub.py" "$fdir/jl" "${fmembers[@]}") || die "after the stopped resync, a stripe with stale parity is not listed"
echo "$out"
# Control: the same verify-only over blocks the load never wrote must fail.
sed -e '/^spdk_rpc_listen_addr=/d' -e 's/^size=48m$/offset=120m\nsize=8m/' "$fdir/verify.fio" >"$fdir/control.fio"
rc=0
run_fio "$fdir" 120 "$fdir/control.fio" >"$fdir/control.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -aqi "verify" "$fdir/control.log" ||
    { tail -20 "$fdir/control.log" >&2; die "control: verify-only over unwritten blocks did not fail (rc $rc)"; }
log "control: verify-only over blocks never written fails as it must (rc $rc)"
log "test_online_recovery: OK"

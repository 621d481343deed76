#!/usr/bin/env bash
# (b) fio through SPDK's bdev plugin (ioengine=spdk_bdev) with the module preloaded: random
# writes with crc32c verification over jraid (4 malloc members + malloc journal, created by the
# plugin's JSON config), 4 KiB blocks on two threads (two reactors' channels, cross-thread
# stripe locks), then mixed 4 KiB..128 KiB blocks (full-stripe, reconstruct and RMW writes).
# Every written block is read back and checked; any verify error fails the test. Last, a member
# bdev is deleted (hot-remove) under fio verify load, over the plugin's RPC socket.
# fio and its plugin: find_fio in lib.sh.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

find_fio

dir=$WORK/fio
mkdir -p "$dir"
malloc_volume_config "$dir/bdev.json"
# The volume holds 3 * 63 MiB = 189 MiB; each job writes its region once per loop (random
# order, no block twice), then reads all of it back and checks every block's crc32c header.
cat >"$dir/verify.fio" <<FIO
[global]
ioengine=spdk_bdev
spdk_json_conf=$dir/bdev.json
$FIO_MEM_OPTS
thread=1
direct=1
filename=r0
rw=randwrite
iodepth=32
verify=crc32c
do_verify=1
verify_fatal=1
verify_dump=1
loops=${LOOPS:-3}
group_reporting=0

[w4k]
bs=4k
numjobs=2
size=40m
offset_increment=40m

[wmixed]
stonewall
bsrange=4k-128k
bs_unaligned=0
offset=80m
size=96m
FIO

log "fio randwrite + crc32c verify: 4k on two threads, then 4k..128k mixed"
out=$dir/fio.json
start=$SECONDS
rc=0
run_fio "$dir" 300 --output-format=json --output="$out" "$dir/verify.fio" >"$dir/fio.log" 2>&1 || rc=$?
if [ "$rc" != 0 ]; then
    tail -30 "$dir/fio.log" >&2
    [ -s "$out" ] && tail -c 3000 "$out" >&2
    die "fio failed (rc $rc)"
fi
grep -aiE "verify: bad|crc32c: verify failed|bad magic" "$dir/fio.log" "$out" && die "fio reported verify errors"
# fio's JSON: every job without error, and the verify reads cover every byte written.
python3 - "$out" <<'PY' || die "fio results"
import json, sys
text = open(sys.argv[1]).read()
d = json.loads(text[text.index("{"):])  # the plugin may print before the JSON
print(f"{'job':8} {'written MiB':>11} {'verified MiB':>12} {'write MiB/s':>11} {'write IOPS':>10}")
bad = []
for j in d["jobs"]:
    w, r = j["write"], j["read"]
    print(f"{j['jobname']:8} {w['io_bytes']/2**20:11.1f} {r['io_bytes']/2**20:12.1f} "
          f"{w['bw']/1024:11.1f} {w['iops']:10.0f}")
    if j["error"] != 0:
        bad.append(f"{j['jobname']}: error {j['error']}")
    if w["io_bytes"] == 0 or r["io_bytes"] != w["io_bytes"]:
        bad.append(f"{j['jobname']}: wrote {w['io_bytes']} bytes, verified {r['io_bytes']}")
if bad:
    sys.exit("; ".join(bad))
PY
log "fio verify passed in $((SECONDS - start)) s"

# Control: verifying blocks that were never written (a fresh volume reads zeros) must fail, so
# a pass above means the checks really ran.
sed -e 's/^do_verify=1$/verify_only=1/' -e 's/^loops=.*/loops=1/' -e 's/^verify_dump=1$/verify_dump=0/' \
    "$dir/verify.fio" >"$dir/control.fio"
rc=0
run_fio "$dir" 120 --output="$dir/control.out" "$dir/control.fio" >"$dir/control.log" 2>&1 || rc=$?
[ "$rc" != 0 ] && grep -aq "verify: bad magic header" "$dir/control.out" ||
    die "control: verify_only over unwritten blocks did not fail (rc $rc)"
log "control: verify_only over a fresh volume fails as it must (rc $rc)"
# Hot-remove under fio verify load: the plugin serves RPCs on a socket; a member bdev is
# deleted while two threads write and verify; the volume must go degraded (seen over RPC while
# fio runs) and every block must still verify.
# 40 passes, each paced to at least 0.2 s (rate_iops), so the load outlasts the removal.
sed -e '/^\[wmixed\]/,$d' -e 's/^loops=.*/loops=40\nrate_iops=50000/' "$dir/verify.fio" >"$dir/hotremove.fio"
sed -i "s|^ioengine=spdk_bdev$|ioengine=spdk_bdev\nspdk_rpc_listen_addr=$dir/fio.sock|" "$dir/hotremove.fio"
rm -f "$dir/fio.sock"
log "fio randwrite + verify on two threads; member m2 deleted under the load"
run_fio "$dir" 300 --output-format=json --output="$dir/hot.json" "$dir/hotremove.fio" >"$dir/hot.log" 2>&1 &
fio_pid=$!
wait_fio_sock "$dir"
sleep 1.5
rpc_ok "$dir/fio.sock" bdev_malloc_delete '{"name":"m2"}' >/dev/null || die "could not delete m2 under fio"
sleep 1
st=$(rpc_ok "$dir/fio.sock" bdev_jraid_get_bdevs '{"name":"r0"}' |
    python3 -c 'import json,sys; v=json.load(sys.stdin)[0]; print(v["state"], v["members"][2]["state"], v["writes"]["degraded_write"] > 0)')
log "during fio after deleting m2: $st"
[ "$st" = "degraded failed True" ] || die "volume not degraded under fio after the hot-remove: $st"
rc=0
wait "$fio_pid" || rc=$?
if [ "$rc" != 0 ]; then
    tail -30 "$dir/hot.log" >&2
    die "fio with a hot-removed member failed (rc $rc)"
fi
fio_verified "$dir/hot.log" "$dir/hot.json" "after the hot-remove"
log "fio verify with a member hot-removed: passed"
log "test_fio: OK"

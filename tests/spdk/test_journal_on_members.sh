#!/usr/bin/env bash
# The journal on the members (bdev_jraid_create "journal_on_members": true, no journal bdev):
# every member reserves a journal area at its end; members 0 and 1 hold a mirrored copy there.
#  (a) bad requests fail with clear errors and leave their bdevs unclaimed; a volume on
#      malloc members shows its journal on the members (devices b0 and b1, mirror), and no
#      other volume may take one of them as its journal;
#  (b) under fio crc32c verify load on two threads (AIO members), member m0 is deleted: no I/O
#      fails, every block verifies, the volume is degraded with journal copy 0 lost (recorded
#      dropped) and records going on to m1's copy; a spare is added and rebuilt: its journal
#      area becomes copy 0 again, online, and nothing stays recorded dropped; a restart (examine
#      alone) finds both copies and nothing listed;
#  (c) a fill, then random rewrites; member m1 (journal copy 1) deleted under them, then
#      kill -9; the m1 file is gone: spdk_tgt assembles the volume degraded from the members'
#      superblocks and recovers from m0's copy alone (no full resync); fio verify-only reads
#      back every block.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap stop_tgt EXIT

find_fio

# jst SOCK EXPR: EXPR over r0's bdev_jraid_get_bdevs entry (v) and its journal (j).
jst() {
    rpc_ok "$1" bdev_jraid_get_bdevs '{"name":"r0"}' | python3 -c "import json,sys; v=json.load(sys.stdin)[0]; j=v['journal']; print($2)"
}

# poll_jst SOCK EXPR PATTERN TRIES: jst until its value matches the glob PATTERN (at most TRIES
# times, 0.1 s apart); prints the last value.
poll_jst() {
    local st=""
    for _ in $(seq 1 "$4"); do
        st=$(jst "$1" "$2")
        # shellcheck disable=SC2053 # a glob on purpose
        [[ $st == $3 ]] && break
        sleep 0.1
    done
    echo "$st"
}

log "(a) bad requests"
dir=$WORK/jom
rm -rf "$dir"
mkdir -p "$dir"
sock=$dir/tgt.sock
start_tgt "$sock" "$dir/tgt.log"
mallocs "$sock" 4096 b0 b1 b2 b3 k0
base='"name":"v","strip_size_kb":16,"base_bdevs":["b0","b1","b2","b3"]'
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_on_members\":true,\"journal_bdev\":\"k0\"}" "a journal bdev with the journal on the members" >&2
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_on_members\":true,\"journal_mode\":\"mirror\"}" "a mode with the journal on the members" >&2
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_bdev\":\"k0\",\"journal_area_kb\":1024}" "an area without the journal on the members" >&2
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_on_members\":true,\"journal_area_kb\":8}" "an area too small" >&2
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_on_members\":true,\"journal_area_kb\":1048576}" "an area larger than the members" >&2
for b in b0 b1 b2 b3 k0; do
    rpc "$sock" bdev_get_bdevs "{\"name\":\"$b\"}" | grep -q '"claimed": *false' || die "$b left claimed"
done
rpc_ok "$sock" bdev_jraid_create "{$base,\"journal_on_members\":true,\"journal_area_kb\":1024}" >/dev/null
st=$(rpc_ok "$sock" bdev_jraid_get_bdevs '{"name":"v"}' | python3 -c 'import json,sys
v = json.load(sys.stdin)[0]; j = v["journal"]
print(v["state"], j["on_members"], j["mode"], j["name"], ",".join(d["name"] + "=" + d["state"] for d in j["devices"]), j["area_offset"] > 0, v["stripes"])')
log "v with its journal on the members: $st"
read -r s1 om1 md1 nm1 dv1 ao1 stripes <<<"$st"
[ "$s1 $om1 $md1 $nm1 $dv1 $ao1" = "online True mirror b0+b1 b0=online,b1=online True" ] || die "journal on the members: $st"
# 16 MiB members, 1 MiB reserved at the start and 1 MiB of journal area at the end: 14 MiB of
# 16 KiB strips each.
[ "$stripes" = 896 ] || die "stripes with a 1 MiB journal area: $stripes"
mallocs "$sock" 4096 c0 c1 c2
rpc_err "$sock" bdev_jraid_create '{"name":"w","strip_size_kb":16,"base_bdevs":["c0","c1","c2"],"journal_bdev":"b0"}' "a member's journal copy as another volume's journal" >&2
rpc_err "$sock" bdev_jraid_set_journal '{"name":"v","journal_bdev":"k0"}' "set_journal on a journal on the members" >&2
# A plain write and read back through the volume (bdev_jraid_get_bdevs above: records go on).
stop_tgt

log "(b) fio crc32c verify on two threads; member m0 (journal copy 0) deleted under the load, then a spare rebuilt"
dir=$WORK/jom-b
rm -rf "$dir"
mkdir -p "$dir"
for i in 0 1 2 3; do truncate -s 64M "$dir/m$i"; done
members=(m0 m1 m2 m3)
create='{"method":"bdev_jraid_create","params":{"name":"r0","strip_size_kb":16,"base_bdevs":["m0","m1","m2","m3"],"journal_on_members":true}}'
bdev_config "$dir/load.json" "$(aio_entries "$dir" "${members[@]}"),$create"
start_hot_fio "$dir" "$dir/load.json" 25
fio_pid=$FIO_PID
sleep 1.5
fs=$dir/fio.sock
devs='",".join(d["name"] + "=" + d["state"] + "/" + str(d["recorded_dropped"]) for d in j["devices"])'
before=$(jst "$fs" "v['state'], j['on_members'], $devs, j['records_written']")
log "before: $before"
read -r s0 om0 d0 w0 <<<"$before"
[ "$s0 $om0 $d0" = "online True m0=online/False,m1=online/False" ] || die "before the loss: $before"
[ "$w0" -gt 0 ] || die "no record written before the loss"
rpc_ok "$fs" bdev_aio_delete '{"name":"m0"}' >/dev/null || die "could not delete m0 under fio"
mid=$(poll_jst "$fs" "v['state'], v['members'][0]['state'], $devs, j['failed'], j['records_written']" \
    "degraded failed m0=lost/True,m1=online/False False *" 50)
log "after deleting m0: $mid"
case "$mid" in "degraded failed m0=lost/True,m1=online/False False "*) ;; *) die "after deleting m0: $mid" ;; esac
w1=${mid##* }
sleep 1
w2=$(jst "$fs" "j['records_written']")
[ "$w2" -gt "$w1" ] || die "no record written to m1's copy alone after the loss ($w1 -> $w2)"
truncate -s 64M "$dir/sp"
rpc_ok "$fs" bdev_aio_create "{\"name\":\"sp\",\"filename\":\"$dir/sp\",\"block_size\":4096}" >/dev/null
rpc_ok "$fs" bdev_jraid_add_base_bdev '{"name":"r0","base_bdev":"sp"}' >/dev/null || die "add the spare under fio"
rep=$(poll_jst "$fs" "v['state'], v['rebuild']['state'], $devs" "online done sp=online/False,m1=online/False" 600)
log "after the rebuild onto sp: $rep"
[ "$rep" = "online done sp=online/False,m1=online/False" ] || die "after the rebuild onto sp: $rep"
w3=$(jst "$fs" "j['records_written']")
sleep 1
w4=$(jst "$fs" "j['records_written']")
[ "$w4" -gt "$w3" ] || die "records stopped after the copy came back ($w3 -> $w4)"
rc=0
wait "$fio_pid" || rc=$?
[ "$rc" = 0 ] || { tail -30 "$dir/hot.log" >&2; die "fio with a member (and journal copy) removed failed (rc $rc)"; }
fio_verified "$dir/hot.log" "$dir/hot.json" "after the member loss and rebuild"
# Offline, the copy on sp names the members' journal, and parity is clean where it lists nothing.
out=$(python3 "$here/scrub.py" --journal-area "$dir/sp" "$dir/sp" "$dir/m1" "$dir/m2" "$dir/m3") || die "scrub.py over sp's copy: $out"
log "sp's copy: $out"
# Examine alone brings it back (no journal bdev to wait for), both copies read, nothing listed.
bdev_config "$dir/examine.json" "$(aio_entries "$dir" sp m1 m2 m3)"
start_tgt "$sock" "$dir/tgt.log" "$dir/examine.json"
wait_bdev "$sock" r0
st=$(jst "$sock" "v['state'], $devs")
log "after a restart (examine): $st"
[ "$st" = "online sp=online/False,m1=online/False" ] || die "examine of the journal on the members: $st"
grep -aq "clean: nothing listed" "$dir/tgt.log" || die "the restart after a clean stop did not find r0 clean"
stop_tgt

log "(c) fill, random rewrites; member m1 (journal copy 1) deleted under them, kill -9, m1 gone"
dir=$WORK/jom-c
rm -rf "$dir"
mkdir -p "$dir"
for i in 0 1 2 3; do truncate -s 64M "$dir/m$i"; done
bdev_config "$dir/new.json" "$(aio_entries "$dir" "${members[@]}"),$create"
fill_fio "$dir" "$dir/new.json"
rc=0
run_fio "$dir" 120 "$dir/fill.fio" >"$dir/fill.log" 2>&1 || rc=$?
[ "$rc" = 0 ] || { tail -20 "$dir/fill.log" >&2; die "fio fill failed (rc $rc)"; }
bdev_config "$dir/all.json" "$(aio_entries "$dir" "${members[@]}")"
sed -e 's/^rw=write$/rw=randwrite\ntime_based=1\nruntime=60/' \
    -e "s|^spdk_json_conf=.*|spdk_json_conf=$dir/all.json\nspdk_rpc_listen_addr=$dir/fio.sock|" "$dir/fill.fio" >"$dir/load.fio"
rm -f "$dir/fio.sock"
FIO_KILL=1 run_fio "$dir" 10 "$dir/load.fio" >"$dir/load.log" 2>&1 &
fio_pid=$!
wait_fio_sock "$dir"
sleep 1
fs=$dir/fio.sock
rpc_ok "$fs" bdev_aio_delete '{"name":"m1"}' >/dev/null || die "could not delete m1 under fio"
st=$(poll_jst "$fs" "v['state'], $devs" "degraded m0=online/False,m1=lost/True" 50)
log "after deleting m1: $st"
[ "$st" = "degraded m0=online/False,m1=lost/True" ] || die "m1's copy not dropped and recorded: $st"
rc=0
wait "$fio_pid" || rc=$?
[ "$rc" = 137 ] || { tail -20 "$dir/load.log" >&2; die "fio under load ended with rc $rc, not by kill -9"; }
sleep 0.3 # the dead process's AIO drains (see README)
listed=$(python3 "$here/scrub.py" --journal-area --journal-only "$dir/m0" "$dir/m0" "$dir/m2" "$dir/m3" | sed -n 's/.* lists \([0-9]*\) stripes of volume.*/\1/p')
log "m0's copy lists ${listed:-?} stripes after the kill"
[ "${listed:-0}" -ge 50 ] || die "only ${listed:-0} stripes listed after kill -9 under fio"
rm -f "$dir/m1"
bdev_config "$dir/left.json" "$(aio_entries "$dir" m0 m2 m3)"
start_tgt "$sock" "$dir/tgt.log" "$dir/left.json"
wait_bdev "$sock" r0
grep -aq "recovering from it alone" "$dir/tgt.log" || die "no recovery from m0's copy alone logged"
grep -aq "full resync of" "$dir/tgt.log" && die "a full resync although m0's copy holds every record"
st=$(jst "$sock" "v['state'], v['recovery']['state'], v['recovery']['stripes_total'] < v['stripes'], ','.join(d['state'] for d in j['devices'])")
log "r0 without m1: $st"
[ "$st" = "degraded done True online,lost" ] || die "r0 without m1: $st"
stop_tgt
verify_only "$dir" "$dir/left.json" "without m1"
log "test_journal_on_members: OK"

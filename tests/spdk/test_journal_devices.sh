#!/usr/bin/env bash
# A journal of two bdevs (claim 13), in alternate and in mirror mode, on AIO files:
#  (a) bad bdev_jraid_create requests about journal devices fail with clear errors and leave
#      their bdevs unclaimed; two volumes share a mirrored pair; one device deleted, both are
#      journal_degraded; set_journal puts a fresh bdev in its place (a member or the survivor
#      refused), both online;
#  (b) under fio crc32c verify load on two threads (over the plugin's RPC socket), journal
#      bdev j1 is deleted: no I/O fails, every block verifies, the volume shows
#      "journal_degraded" with j1 lost and j0 online, and records go on being written (to j0);
#      then a fresh bdev jr takes j1's place online (bdev_jraid_set_journal, no resync): the
#      volume is "online" again, records go on;
#  (c) a fill, then random rewrites killed with -9; journal file jr (alternate) or j0 (mirror)
#      is deleted; the volume is brought back with the device that is left
#      (bdev_jraid_create by uuid, as save_config writes it): alternate, it resyncs every
#      stripe before it serves (the newest record may have been on the lost file); mirror, it
#      recovers from the survivor alone (nothing recorded it dropped); then fio verify-only
#      reads back every block, and bdev_jraid_scrub finds parity clean;
#  (d) mirror: j1 deleted under random rewrites and a slow sequential stream beside them (its
#      drop recorded in the member superblocks, records go on to j0 alone: the stream lists a
#      new stripe every ~24 ms, where the rewrites alone may list nothing new, their stripes
#      staying listed), kill -9, then j0 lost and j1 back with what it held: the restart
#      resyncs every stripe (j1 is behind), fio verify-only and scrub pass.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap stop_tgt EXIT

find_fio

log "(a) bad requests"
dir=$WORK/jdev
mkdir -p "$dir"
sock=$dir/tgt.sock
start_tgt "$sock" "$dir/tgt.log"
mallocs "$sock" 4096 b0 b1 b2 b3
mallocs "$sock" 1024 k0 k1 k2
base='"name":"v","strip_size_kb":16,"base_bdevs":["b0","b1","b2","b3"]'
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_bdev\":\"k0\",\"journal_bdevs\":[\"k0\",\"k1\"]}" "both journal_bdev and journal_bdevs" >&2
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_bdevs\":[\"k0\",\"k1\",\"k2\"]}" "three journal bdevs" >&2
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_bdevs\":[\"k0\",\"k0\"]}" "a journal bdev twice" >&2
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_bdevs\":[\"k0\",\"b1\"]}" "a member as journal" >&2
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_bdevs\":[\"k0\",\"nope\"]}" "a missing journal bdev" >&2
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_bdev\":\"k0\",\"journal_mode\":\"mirror\"}" "mode with one bdev" >&2
rpc_err "$sock" bdev_jraid_create "{$base,\"journal_bdevs\":[\"k0\",\"k1\"],\"journal_mode\":\"both\"}" "unknown mode" >&2
rpc_err "$sock" bdev_jraid_create "{$base}" "no journal" >&2
for b in b0 b1 b2 b3 k0 k1 k2; do
    rpc "$sock" bdev_get_bdevs "{\"name\":\"$b\"}" | grep -q '"claimed": *false' || die "$b left claimed"
done
rpc_ok "$sock" bdev_jraid_create "{$base,\"journal_bdevs\":[\"k0\",\"k1\"],\"journal_mode\":\"mirror\"}" >/dev/null
# A device of that journal named with another bdev is refused.
mallocs "$sock" 4096 c0 c1 c2
rpc_err "$sock" bdev_jraid_create '{"name":"w","strip_size_kb":16,"base_bdevs":["c0","c1","c2"],"journal_bdevs":["k1","k2"]}' "half of a running pair" >&2
# The other volume may share the pair (named in full).
rpc_ok "$sock" bdev_jraid_create '{"name":"w","strip_size_kb":16,"base_bdevs":["c0","c1","c2"],"journal_bdevs":["k0","k1"]}' >/dev/null
st=$(rpc_ok "$sock" bdev_jraid_get_bdevs | python3 -c 'import json,sys
print(" ".join("%s:%d:%s:%s:%s" % (v["name"], v["volume"], v["state"], v["journal"]["mode"], ",".join(d["name"] + "=" + d["state"] for d in v["journal"]["devices"])) for v in json.load(sys.stdin)))')
log "two volumes on one mirrored pair: $st"
[ "$st" = "v:0:online:mirror:k0=online,k1=online w:1:online:mirror:k0=online,k1=online" ] || die "shared pair: $st"
rpc_ok "$sock" bdev_malloc_delete '{"name":"k0"}' >/dev/null
for _ in $(seq 1 50); do
    st=$(rpc_ok "$sock" bdev_jraid_get_bdevs | python3 -c 'import json,sys; print(" ".join(v["state"] for v in json.load(sys.stdin)))')
    [ "$st" = "journal_degraded journal_degraded" ] && break
    sleep 0.1
done
[ "$st" = "journal_degraded journal_degraded" ] || die "after deleting k0 of the shared pair: $st"
rpc_err "$sock" bdev_jraid_set_journal '{"name":"v","journal_bdev":"b1"}' "a member as the replacement" >&2
rpc_err "$sock" bdev_jraid_set_journal '{"name":"v","journal_bdev":"k1"}' "the survivor as the replacement" >&2
rpc_ok "$sock" bdev_jraid_set_journal '{"name":"v","journal_bdev":"k2"}' >/dev/null
st=$(rpc_ok "$sock" bdev_jraid_get_bdevs | python3 -c 'import json,sys
print(" ".join("%s:%s:%s" % (v["name"], v["state"], ",".join(d["name"] + "=" + d["state"] for d in v["journal"]["devices"])) for v in json.load(sys.stdin)))')
log "k2 in place of k0, online: $st"
[ "$st" = "v:online:k2=online,k1=online w:online:k2=online,k1=online" ] || die "after replacing k0: $st"
stop_tgt

for mode in alternate mirror; do
    dir=$WORK/jdev-$mode
    rm -rf "$dir"
    mkdir -p "$dir"
    for i in 0 1 2 3; do truncate -s 64M "$dir/m$i"; done
    for j in j0 j1; do truncate -s 8M "$dir/$j"; done
    members=(m0 m1 m2 m3)
    create="{\"method\":\"bdev_jraid_create\",\"params\":{\"name\":\"r0\",\"strip_size_kb\":16,\"base_bdevs\":[\"m0\",\"m1\",\"m2\",\"m3\"],\"journal_bdevs\":[\"j0\",\"j1\"],\"journal_mode\":\"$mode\"}}"
    bdev_config "$dir/load.json" "$(aio_entries "$dir" "${members[@]}" j0 j1),$create"

    log "($mode b) fio crc32c verify on two threads; journal bdev j1 deleted under the load"
    start_hot_fio "$dir" "$dir/load.json" 20
    fio_pid=$FIO_PID
    sleep 1.5
    jst() {
        rpc_ok "$dir/fio.sock" bdev_jraid_get_bdevs '{"name":"r0"}' | python3 -c "import json,sys; v=json.load(sys.stdin)[0]; j=v['journal']; print($1)"
    }
    before=$(jst 'v["state"], j["mode"], ",".join(d["name"] + "=" + d["state"] for d in j["devices"]), j["records_written"]')
    log "before: $before"
    read -r s0 m0 d0 w0 <<<"$before"
    [ "$s0 $m0 $d0" = "online $mode j0=online,j1=online" ] || die "before the loss: $before"
    [ "$w0" -gt 0 ] || die "no record written before the loss"
    uuid=$(jst 'v["uuid"]')
    rpc_ok "$dir/fio.sock" bdev_aio_delete '{"name":"j1"}' >/dev/null || die "could not delete j1 under fio"
    sleep 1
    mid=$(jst 'v["state"], ",".join(d["name"] + "=" + d["state"] for d in j["devices"]), j["degraded"], j["failed"], j["devices_lost"], j["records_written"]')
    sleep 1
    late=$(jst 'j["records_written"]')
    log "after deleting j1: $mid; records written a second later: $late"
    read -r s1 d1 deg1 f1 lost1 w1 <<<"$mid"
    [ "$s1 $d1 $deg1 $f1 $lost1" = "journal_degraded j0=online,j1=lost True False 1" ] || die "after the loss: $mid"
    [ "$late" -gt "$w1" ] && [ "$w1" -gt "$w0" ] || die "records stopped after the loss ($w0 -> $w1 -> $late)"
    # A mirror records the drop in the member superblocks (a restart that finds j1 alone must
    # not trust it); an alternating pair does not (such a restart resyncs everything anyway).
    rd=$(jst '",".join(str(d["recorded_dropped"]) for d in j["devices"])')
    want="False,False"
    [ "$mode" = mirror ] && want="False,True"
    [ "$rd" = "$want" ] || die "recorded_dropped after deleting j1 ($mode): $rd"
    log "($mode b) a fresh bdev jr takes j1's place online, still under the load"
    rm -f "$dir/jr"; truncate -s 8M "$dir/jr"
    rpc_ok "$dir/fio.sock" bdev_aio_create "{\"name\":\"jr\",\"filename\":\"$dir/jr\",\"block_size\":4096}" >/dev/null
    rpc_ok "$dir/fio.sock" bdev_jraid_set_journal '{"name":"r0","journal_bdev":"jr"}' >/dev/null ||
        die "set_journal jr under fio"
    sleep 1
    rep=$(jst 'v["state"], ",".join(d["name"] + "=" + d["state"] for d in j["devices"]), j["degraded"], j["records_written"], j["checkpoints"]')
    log "after jr took j1's place: $rep"
    read -r s2 d2 deg2 w2 _ <<<"$rep"
    [ "$s2 $d2 $deg2" = "online j0=online,jr=online False" ] || die "after the replacement: $rep"
    [ "$w2" -gt "$late" ] || die "records stopped after the replacement"
    nm=$(jst 'j["name"]')
    [ "$nm" = "j0+jr" ] || die "the journal's name after the replacement: $nm"
    # Once the replacement holds a checkpoint, nothing is recorded dropped any more.
    rd=$(jst '",".join(str(d["recorded_dropped"]) for d in j["devices"])')
    [ "$rd" = "False,False" ] || die "recorded_dropped after the replacement ($mode): $rd"
    rc=0
    wait "$fio_pid" || rc=$?
    [ "$rc" = 0 ] || { tail -30 "$dir/hot.log" >&2; die "fio with a journal device removed failed (rc $rc)"; }
    fio_verified "$dir/hot.log" "$dir/hot.json" "after the journal device loss"

    gone=jr
    [ "$mode" = mirror ] && gone=j0
    left=j0
    [ "$gone" = j0 ] && left=jr
    log "($mode c) fill, random rewrites killed with -9, journal file $gone lost"
    bdev_config "$dir/both.json" "$(aio_entries "$dir" "${members[@]}" j0 jr)"
    bdev_config "$dir/one.json" "$(aio_entries "$dir" "${members[@]}" "$left"),{\"method\":\"bdev_jraid_create\",\"params\":{\"name\":\"r0\",\"strip_size_kb\":16,\"base_bdevs\":[\"m0\",\"m1\",\"m2\",\"m3\"],\"journal_bdevs\":[\"$left\"],\"journal_mode\":\"$mode\",\"uuid\":\"$uuid\"}}"
    fill_fio "$dir" "$dir/both.json"
    sed -e 's/^rw=write$/rw=randwrite\ntime_based=1\nruntime=60/' "$dir/fill.fio" >"$dir/load.fio"
    rc=0
    run_fio "$dir" 120 "$dir/fill.fio" >"$dir/fill.log" 2>&1 || rc=$?
    [ "$rc" = 0 ] || { tail -20 "$dir/fill.log" >&2; die "fio fill failed (rc $rc)"; }
    rc=0
    FIO_KILL=1 run_fio "$dir" "${LOAD_S:-5}" "$dir/load.fio" >"$dir/load.log" 2>&1 || rc=$?
    [ "$rc" = 137 ] || { tail -20 "$dir/load.log" >&2; die "fio under load ended with rc $rc, not by kill -9"; }
    sleep 0.3 # the dead process's AIO drains (see README)
    # What each device's newest record lists (the offline checker reads one device): the kill
    # must have come under load.
    listed=0
    for j in j0 jr; do
        out=$(python3 "$here/scrub.py" "$dir/$j" "${members[@]/#/$dir/}" || true)
        log "$j: $out"
        n=$(sed -n 's/.* lists \([0-9]*\) stripes of volume.*/\1/p' <<<"$out")
        [ "${n:-0}" -gt "$listed" ] && listed=$n
    done
    [ "$listed" -ge 100 ] || die "only $listed stripes listed after kill -9 under fio"
    rm -f "$dir/$gone"

    log "($mode c) r0 back with $left alone (spdk_tgt): recovery ($mode), scrub, then fio verify-only of every block"
    start_tgt "$sock" "$dir/tgt.log" "$dir/one.json"
    wait_bdev "$sock" r0
    grep -aq "one of its two devices ($mode mode) is missing" "$dir/tgt.log" || die "no word on the missing journal device"
    if [ "$mode" = alternate ]; then
        # The newest record may have been on the lost file: every stripe, before serving.
        grep -aq "full resync of" "$dir/tgt.log" || die "no full resync logged"
    else
        # Mirrored, and nothing recorded $left dropped: it holds every record; no full resync.
        grep -aq "recovering from it alone" "$dir/tgt.log" || die "no recovery from $left alone logged"
        grep -aq "full resync of" "$dir/tgt.log" && die "a full resync on a mirror whose survivor holds every record"
    fi
    st=$(rpc_ok "$sock" bdev_jraid_get_bdevs '{"name":"r0"}' | python3 -c '
import json, sys
v = json.load(sys.stdin)[0]
r, j = v["recovery"], v["journal"]
print(v["state"], r["state"], r["stripes_resynced"] == v["stripes"] == r["stripes_total"], r["stripes_total"] > 0, ",".join(d["state"] for d in j["devices"]))')
    all=True
    [ "$mode" = mirror ] && all=False
    expect="journal_degraded done $all True online,lost"
    [ "$left" = jr ] && expect="journal_degraded done $all True lost,online"
    log "r0 with $left alone: $st"
    [ "$st" = "$expect" ] || die "with $gone lost: not the recovery expected before serving, or wrong states ($st)"
    scrub_clean "$sock" "after the recovery"
    stop_tgt
    verify_only "$dir" "$dir/one.json" "with $left alone"
done

# (d) Mirror: j1 dropped under load (recorded in the member superblocks), records go on to j0
# alone; kill -9; then j0 is lost and j1 comes back with what it held: the restart must not
# trust it (it misses the records j0 took alone) and resyncs every stripe before serving.
dir=$WORK/jdev-swapped
rm -rf "$dir"
mkdir -p "$dir"
for i in 0 1 2 3; do truncate -s 64M "$dir/m$i"; done
for j in j0 j1; do truncate -s 8M "$dir/$j"; done
members=(m0 m1 m2 m3)
create="{\"method\":\"bdev_jraid_create\",\"params\":{\"name\":\"r0\",\"strip_size_kb\":16,\"base_bdevs\":[\"m0\",\"m1\",\"m2\",\"m3\"],\"journal_bdevs\":[\"j0\",\"j1\"],\"journal_mode\":\"mirror\"}}"
bdev_config "$dir/new.json" "$(aio_entries "$dir" "${members[@]}" j0 j1),$create"
log "(mirror d) fill, then random rewrites; j1 deleted under them, then kill -9"
fill_fio "$dir" "$dir/new.json"
rc=0
run_fio "$dir" 120 "$dir/fill.fio" >"$dir/fill.log" 2>&1 || rc=$?
[ "$rc" = 0 ] || { tail -20 "$dir/fill.log" >&2; die "fio fill failed (rc $rc)"; }
bdev_config "$dir/both.json" "$(aio_entries "$dir" "${members[@]}" j0 j1)"
sed -e 's/^rw=write$/rw=randwrite\ntime_based=1\nruntime=60/' \
    -e "s|^spdk_json_conf=.*|spdk_json_conf=$dir/both.json\nspdk_rpc_listen_addr=$dir/fio.sock|" "$dir/fill.fio" >"$dir/load.fio"
# The rewrites of the filled 48 MiB (1,024 stripes) may keep every one of them listed (a clean
# stripe stays up to 1 s while the record has room): then no record is needed, and none shows
# that records go on to j0. A stream beyond them lists new stripes all along.
cat >>"$dir/load.fio" <<FIO

[stream]
rw=write
offset=96m
size=64m
rate_iops=500
FIO
rm -f "$dir/fio.sock"
# Killed with -9 by its timeout, after what follows (about 5 s).
FIO_KILL=1 run_fio "$dir" 12 "$dir/load.fio" >"$dir/load.log" 2>&1 &
fio_pid=$!
wait_fio_sock "$dir"
sleep 1
uuid=$(rpc_ok "$dir/fio.sock" bdev_jraid_get_bdevs '{"name":"r0"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["uuid"])')
rpc_ok "$dir/fio.sock" bdev_aio_delete '{"name":"j1"}' >/dev/null || die "could not delete j1 under fio"
st=""
for _ in $(seq 1 50); do
    st=$(rpc_ok "$dir/fio.sock" bdev_jraid_get_bdevs '{"name":"r0"}' | python3 -c '
import json, sys
v = json.load(sys.stdin)[0]; j = v["journal"]
print(v["state"], ",".join(d["state"] + "/" + str(d["recorded_dropped"]) for d in j["devices"]), j["records_written"])')
    case "$st" in "journal_degraded online/False,lost/True "*) break ;; esac
    sleep 0.1
done
log "after deleting j1: $st"
case "$st" in "journal_degraded online/False,lost/True "*) ;; *) die "j1's drop not recorded: $st" ;; esac
w1=${st##* }
sleep 2
w2=$(rpc_ok "$dir/fio.sock" bdev_jraid_get_bdevs '{"name":"r0"}' | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["journal"]["records_written"])')
[ "$w2" -gt "$w1" ] || die "no record written to j0 alone after the drop ($w1 -> $w2)"
rc=0
wait "$fio_pid" || rc=$?
[ "$rc" = 137 ] || { tail -20 "$dir/load.log" >&2; die "fio under load ended with rc $rc, not by kill -9"; }
sleep 0.3 # the dead process's AIO drains (see README)
rm -f "$dir/j0"
log "(mirror d) r0 back with j1 alone (behind j0), spdk_tgt: full resync, scrub, then fio verify-only"
bdev_config "$dir/one.json" "$(aio_entries "$dir" "${members[@]}" j1),{\"method\":\"bdev_jraid_create\",\"params\":{\"name\":\"r0\",\"strip_size_kb\":16,\"base_bdevs\":[\"m0\",\"m1\",\"m2\",\"m3\"],\"journal_bdevs\":[\"j1\"],\"journal_mode\":\"mirror\",\"uuid\":\"$uuid\"}}"
start_tgt "$sock" "$dir/tgt.log" "$dir/one.json"
wait_bdev "$sock" r0
grep -aq "full resync of" "$dir/tgt.log" || die "j1, recorded dropped, was trusted: no full resync"
grep -aq "recovering from it alone" "$dir/tgt.log" && die "j1, recorded dropped, was trusted alone"
st=$(rpc_ok "$sock" bdev_jraid_get_bdevs '{"name":"r0"}' | python3 -c '
import json, sys
v = json.load(sys.stdin)[0]
r, j = v["recovery"], v["journal"]
print(v["state"], r["state"], r["stripes_resynced"] == v["stripes"] == r["stripes_total"], ",".join(d["state"] for d in j["devices"]))')
log "r0 with j1 alone: $st"
[ "$st" = "journal_degraded done True lost,online" ] || die "with j1 alone: not a full resync before serving ($st)"
scrub_clean "$sock" "after the full resync from j1"
stop_tgt
verify_only "$dir" "$dir/one.json" "with j1 alone"
log "test_journal_devices: OK"

#!/usr/bin/env bash
# A volume deleted while a background pass runs on it (spdk_tgt, malloc bdevs, passes capped at
# 16 MiB/s so they are caught midway): (a) a scrub, (b) a rebuild onto a spare, (c) the full
# resync of bdev_jraid_set_journal. Each time the delete succeeds, the pass stops, every bdev
# it held is released (unclaimed), and the target keeps serving RPCs. After (b),
# bdev_jraid_create with the volume's uuid re-assembles it and restarts the rebuild that was
# cut short (the superblocks say "rebuilding"), which then completes.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bdevperf_rpc.sh"
trap 'stop_tgt' EXIT

sock=$WORK/db.sock
TGT_MEM_ARGS=(--no-huge -s 1536 --disable-cpumask-locks)
start_tgt "$sock" "$WORK/db.log"
mallocs "$sock" 16384 m0 m1 m2 m3 sp
mallocs "$sock" 2048 j1 j2
rpc_ok "$sock" bdev_jraid_create \
    '{"name":"r0","strip_size_kb":64,"base_bdevs":["m0","m1","m2","m3"],"journal_bdev":"j1"}' >/dev/null
uuid=$(jget "$sock" 'v["uuid"]')

# midway KEY: wait until pass KEY runs and has done some but not all of its stripes.
midway() {
    for _ in $(seq 1 200); do
        local p; p=$(jget "$sock" "(v[\"$1\"] or {}).get(\"state\"), (v[\"$1\"] or {}).get(\"percent\", 0)")
        case "$p" in
            "running 0"|"running 0.0") ;;
            "running "*) log "$1 midway: $p %"; return 0 ;;
        esac
        sleep 0.05
    done
    die "$1 never ran: $(jget "$sock" "v[\"$1\"]")"
}

# gone BDEVS...: the volume is gone, these bdevs are unclaimed, the target answers.
gone() {
    for _ in $(seq 1 100); do
        rpc "$sock" bdev_get_bdevs '{"name":"r0"}' | grep -q '"error"' && break
        sleep 0.05
    done
    rpc "$sock" bdev_get_bdevs '{"name":"r0"}' | grep -q '"error"' || die "r0 still exists"
    sleep 0.3
    for b in "$@"; do
        rpc "$sock" bdev_get_bdevs "{\"name\":\"$b\"}" | grep -q '"claimed": *false' || die "$b still claimed"
    done
    rpc_ok "$sock" spdk_get_version >/dev/null
}

recreate() { # recreate MEMBERS JOURNAL
    rpc_ok "$sock" bdev_jraid_create \
        "{\"name\":\"r0\",\"strip_size_kb\":64,\"base_bdevs\":$1,\"journal_bdev\":\"$2\",\"uuid\":\"$uuid\"}" >/dev/null
}

log "(a) delete during a scrub"
rpc_ok "$sock" bdev_jraid_scrub '{"name":"r0","bandwidth_mb":16}' >/dev/null
midway scrub
rpc_ok "$sock" bdev_jraid_delete '{"name":"r0"}' >/dev/null
gone m0 m1 m2 m3 j1
recreate '["m0","m1","m2","m3"]' j1
[ "$(jget "$sock" 'v["state"]')" = online ] || die "not online after re-creating"

log "(b) delete during a rebuild, then re-create: the rebuild starts again and completes"
rpc_ok "$sock" bdev_malloc_delete '{"name":"m3"}' >/dev/null
sleep 0.3
[ "$(jget "$sock" 'v["state"]')" = degraded ] || die "not degraded after deleting m3"
rpc_ok "$sock" bdev_jraid_add_base_bdev '{"name":"r0","base_bdev":"sp","bandwidth_mb":16}' >/dev/null
midway rebuild
rpc_ok "$sock" bdev_jraid_delete '{"name":"r0"}' >/dev/null
gone m0 m1 m2 sp j1
recreate '["m0","m1","m2","sp"]' j1
for _ in $(seq 1 600); do
    [ "$(jget "$sock" '(v["rebuild"] or {}).get("state")')" = done ] && break
    sleep 0.1
done
st=$(jget "$sock" 'v["state"] + " " + " ".join(m["state"] for m in v["members"])')
log "after re-creating: $st; rebuild $(jget "$sock" 'v["rebuild"]')"
[ "$st" = "online active active active active" ] || die "rebuild not resumed: $st"

log "(c) delete during the resync of set_journal"
rpc_ok "$sock" bdev_malloc_delete '{"name":"j1"}' >/dev/null
rpc_ok "$sock" bdev_jraid_set_journal '{"name":"r0","journal_bdev":"j2","bandwidth_mb":16}' >/dev/null
midway set_journal
rpc_ok "$sock" bdev_jraid_delete '{"name":"r0"}' >/dev/null
gone m0 m1 m2 sp j2
stop_tgt
log "test_delete_busy: OK"

#!/usr/bin/env bash
# (d) kill -9 under write load on AIO bdevs over files; every stripe whose parity disagrees is
# listed in the journal; restart: examine re-assembles and recovery resyncs (parity clean);
# a clean stop (bdevperf exits normally after writing) leaves nothing listed, and the next
# start says it has nothing to resync;
# member removal: the volume goes degraded, records it in the superblocks, re-assembles
# degraded after another kill -9, and serves bdevperf verify.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap stop_tgt EXIT

dir=$WORK/crash
mkdir -p "$dir"
for i in 0 1 2 3; do truncate -s 64M "$dir/m$i"; done
truncate -s 8M "$dir/jl"

aio() { aio_entries "$dir" "$@"; }
config() { bdev_config "$@"; }
create='{"method":"bdev_jraid_create","params":{"name":"r0","strip_size_kb":16,"base_bdevs":["m0","m1","m2","m3"],"journal_bdev":"jl"}}'
config "$dir/load.json" "$(aio m0 m1 m2 m3 jl),$create"
config "$dir/restart.json" "$(aio m0 m1 m2 m3 jl)"
config "$dir/degraded.json" "$(aio m0 m1 m2 jl)"
members=("$dir/m0" "$dir/m1" "$dir/m2" "$dir/m3")

log "write load (partial-stripe random writes on both reactors), then kill -9"
kill_under_load "$dir/load.json" "$dir/load.log" -C -q 64 -o 12288 -w randwrite
python3 "$here/scrub.py" "$dir/jl" "${members[@]}" || die "a stripe with stale parity is not listed in the journal"

log "restart: examine re-assembles r0 and recovery resyncs the listed stripes"
sock=$dir/tgt.sock
start_tgt "$sock" "$dir/restart.log" "$dir/restart.json"
wait_bdev "$sock" r0
state=$(rpc_ok "$sock" bdev_jraid_get_bdevs '{"name":"r0"}')
python3 -c 'import json,sys; v=json.loads(sys.argv[1])[0]; assert v["state"]=="online", v; print("r0:", v["state"], "generation", v["generation"])' "$state"
grep -a "recovered\|resyncing" "$dir/restart.log" >&2 || true
stop_tgt
python3 "$here/scrub.py" --clean "$dir/jl" "${members[@]}" || die "parity not clean after recovery"

log "clean stop: bdevperf writes for 2 s and exits normally; the next start resyncs nothing"
spdk_env "$BDEVPERF" --json "$dir/restart.json" -m 0x3 "${MEM_ARGS[@]}" -C -q 64 -o 12288 \
    -w randwrite -t 2 -T r0 >"$dir/clean.log" 2>&1 || { tail -30 "$dir/clean.log" >&2; die "clean-stop load failed"; }
grep -aq "jraid volume r0 stopped" "$dir/clean.log" || { tail -20 "$dir/clean.log" >&2; die "r0 did not stop"; }
check_clean_exit "$dir/clean.log" bdevperf
out=$(python3 "$here/scrub.py" --clean "$dir/jl" "${members[@]}") || die "parity not clean after a clean stop"
echo "$out"
grep -q "lists 0 stripes of volume 0" <<<"$out" || die "a clean stop left stripes listed: $out"
start_tgt "$sock" "$dir/clean-restart.log" "$dir/restart.json"
wait_bdev "$sock" r0
grep -a "clean: nothing listed, nothing to resync" "$dir/clean-restart.log" >&2 ||
    { grep -a "resync" "$dir/clean-restart.log" >&2; die "the start after a clean stop did not find the volume clean"; }
stop_tgt

log "member removal: bdev_aio_delete m3 while running"
start_tgt "$sock" "$dir/remove.log" "$dir/restart.json"
wait_bdev "$sock" r0
rpc_ok "$sock" bdev_aio_delete '{"name":"m3"}' >/dev/null
sleep 0.5
state=$(rpc_ok "$sock" bdev_jraid_get_bdevs '{"name":"r0"}')
python3 -c 'import json,sys; v=json.loads(sys.argv[1])[0]; assert v["state"]=="degraded", v; assert v["members"][3]["state"]=="failed", v; print("r0:", v["state"])' "$state"
kill -KILL "$TGT_PID"; wait "$TGT_PID" 2>/dev/null || true; TGT_PID=

log "degraded re-assembly without m3, bdevperf verify on the degraded volume"
spdk_env "$BDEVPERF" --json "$dir/degraded.json" -m 0x3 "${MEM_ARGS[@]}" -q 32 -o 12288 \
    -w verify -t 3 -T r0 >"$dir/degraded.log" 2>&1 || { tail -30 "$dir/degraded.log" >&2; die "degraded verify failed"; }
total=$(tr '\r' '\n' <"$dir/degraded.log" | grep -aE '^ *Total +: +[0-9]' | tail -1 | sed 's/.*Total *://')
read -r iops _ fails _ <<<"$total"
awk -v f="$fails" 'BEGIN{exit !(f == 0)}' || die "degraded verify: $fails failures/s"
log "degraded verify: $iops IOPS, no failures"
log "test_crash: OK"

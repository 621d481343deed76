#!/usr/bin/env bash
# (c) NVMe-oF/TCP export: spdk_tgt with the module preloaded creates jraid over RPC (4 AIO
# members + AIO journal, files), exports it as the namespace of an NVMe-oF subsystem listening on
# 127.0.0.1; a second SPDK process (bdevperf, its own RPC socket, core and memory) attaches it
# with bdev_nvme_attach_controller and runs -w verify over the network. Pass: no failed I/O,
# and the target's volume saw the writes. Then spdk_tgt stops cleanly (SIGTERM, as a service
# manager stops it) and starts again over the same files: the volume comes back with nothing
# listed and nothing resynced, and its parity is clean.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

T=${T:-5}
dir=$WORK/nvmf
mkdir -p "$dir"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null || true; done
    stop_tgt
}
trap cleanup EXIT

# Two SPDK processes side by side: one core each where there are two, and memory for both
# (each app has its own hugepage file prefix, spdk_pid<pid>, so they do not collide).
if [ "$(nproc)" -ge 2 ]; then TGT_MASK=0x1 PERF_MASK=0x2; else TGT_MASK=0x1 PERF_MASK=0x1; fi
if [ "${MEM_ARGS[0]}" = --no-huge ]; then
    TGT_MEM_ARGS=(--no-huge -s 2048) PERF_MEM_ARGS=(--no-huge -s 1024)
else
    TGT_MEM_ARGS=(-s 768) PERF_MEM_ARGS=(-s 384)
fi
TGT_MEM_ARGS+=(--disable-cpumask-locks) PERF_MEM_ARGS+=(--disable-cpumask-locks)
export TGT_MASK

# A free TCP port, from 4420 up.
port=$(python3 - <<'PY'
import socket
for p in range(4420, 4520):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p))
    except OSError:
        continue
    finally:
        s.close()
    print(p)
    break
PY
)
[ -n "$port" ] || die "no free TCP port in 4420..4519"
nqn=nqn.2016-06.io.spdk:jraid-r0

sock=$dir/tgt.sock
start_tgt "$sock" "$dir/tgt.log"
log "spdk_tgt (mask $TGT_MASK, ${TGT_MEM_ARGS[*]}): creating r0 and exporting it on 127.0.0.1:$port"
for i in 0 1 2 3; do truncate -s 64M "$dir/m$i"; done
truncate -s 8M "$dir/jl"
for b in m0 m1 m2 m3 jl; do
    rpc_ok "$sock" bdev_aio_create "{\"name\":\"$b\",\"filename\":\"$dir/$b\",\"block_size\":4096}" >/dev/null
done
rpc_ok "$sock" bdev_jraid_create \
    '{"name":"r0","strip_size_kb":64,"base_bdevs":["m0","m1","m2","m3"],"journal_bdev":"jl"}' >/dev/null
rpc_ok "$sock" nvmf_create_transport '{"trtype":"TCP"}' >/dev/null
rpc_ok "$sock" nvmf_create_subsystem \
    "{\"nqn\":\"$nqn\",\"allow_any_host\":true,\"serial_number\":\"JRAID00000001\",\"model_number\":\"jraid RAID-5\"}" >/dev/null
rpc_ok "$sock" nvmf_subsystem_add_ns "{\"nqn\":\"$nqn\",\"namespace\":{\"bdev_name\":\"r0\"}}" >/dev/null
rpc_ok "$sock" nvmf_subsystem_add_listener \
    "{\"nqn\":\"$nqn\",\"listen_address\":{\"trtype\":\"TCP\",\"adrfam\":\"IPv4\",\"traddr\":\"127.0.0.1\",\"trsvcid\":\"$port\"}}" >/dev/null
ns=$(rpc_ok "$sock" nvmf_get_subsystems)
python3 -c 'import json,sys; s=[x for x in json.loads(sys.argv[1]) if x["nqn"]==sys.argv[2]][0]
assert [n["bdev_name"] for n in s["namespaces"]]==["r0"], s' "$ns" "$nqn" || die "subsystem has no r0 namespace"

cfg=$dir/initiator.json
cat >"$cfg" <<JSON
{"subsystems":[{"subsystem":"bdev","config":[
 {"method":"bdev_nvme_attach_controller","params":{"name":"nv","trtype":"TCP","adrfam":"IPv4",
   "traddr":"127.0.0.1","trsvcid":"$port","subnqn":"$nqn"}},
 {"method":"bdev_wait_for_examine"}
]}]}
JSON

printf '%-14s %12s %10s\n' "I/O size" "IOPS" "MiB/s"
for size in 4096 65536; do
    out=$dir/bdevperf-$size.log
    # The initiator is plain SPDK (no jraid preloaded): it only sees an NVMe namespace.
    env LD_LIBRARY_PATH="$SPDK_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        "$BDEVPERF" --json "$cfg" -r "$dir/perf.sock" -m "$PERF_MASK" "${PERF_MEM_ARGS[@]}" \
        -q 32 -o "$size" -w verify -t "$T" -T nvn1 >"$out" 2>&1 &
    pids=($!)
    rc=0
    wait "${pids[0]}" || rc=$?
    pids=()
    [ "$rc" = 0 ] || { tail -30 "$out" >&2; tail -20 "$dir/tgt.log" >&2; die "bdevperf over NVMe-oF -o $size failed (rc $rc)"; }
    total=$(tr '\r' '\n' <"$out" | grep -aE '^ *Total +: +[0-9]' | tail -1 | sed 's/.*Total *://')
    [ -n "$total" ] || { tail -30 "$out" >&2; die "bdevperf -o $size: no result"; }
    read -r iops mibs fails _ <<<"$total"
    awk -v f="$fails" 'BEGIN{exit !(f == 0)}' || die "bdevperf over NVMe-oF -o $size: $fails failed I/O per second"
    awk -v i="$iops" 'BEGIN{exit !(i > 0)}' || die "bdevperf over NVMe-oF -o $size: no I/O"
    printf '%-14s %12s %10s\n' "$size" "$iops" "$mibs"
done

# The writes went through jraid on the target (not some other namespace).
state=$(rpc_ok "$sock" bdev_jraid_get_bdevs '{"name":"r0"}')
python3 -c 'import json,sys; v=json.loads(sys.argv[1])[0]; w=v["writes"]
n=sum(w.values()); assert v["state"]=="online" and n>0, v
print("target r0:", v["state"], "writes by plan", w, "journal generation", v["generation"])' "$state" ||
    die "target volume r0 saw no writes"
grep -aiE "jraid.*(failed|error)" "$dir/tgt.log" && die "errors in the target's log"

log "clean stop of spdk_tgt (SIGTERM), then a restart over the same files"
stop_tgt
grep -aq "jraid volume r0 stopped" "$dir/tgt.log" || { tail -20 "$dir/tgt.log" >&2; die "r0 did not stop cleanly with spdk_tgt"; }
members=("$dir/m0" "$dir/m1" "$dir/m2" "$dir/m3")
out=$(python3 "$here/scrub.py" --clean "$dir/jl" "${members[@]}") || die "parity not clean after spdk_tgt's clean stop"
echo "$out"
grep -q "lists 0 stripes of volume 0" <<<"$out" || die "stripes listed after spdk_tgt's clean stop: $out"
bdev_config "$dir/restart.json" "$(aio_entries "$dir" m0 m1 m2 m3 jl)"
start_tgt "$sock" "$dir/tgt2.log" "$dir/restart.json"
wait_bdev "$sock" r0
grep -a "volume r0: clean: nothing listed, nothing to resync" "$dir/tgt2.log" >&2 ||
    { tail -20 "$dir/tgt2.log" >&2; die "the restart after a clean stop did not say the volume was clean"; }
grep -a "resyncing" "$dir/tgt2.log" >&2 && die "the restart after a clean stop resynced stripes"
st=$(rpc_ok "$sock" bdev_jraid_get_bdevs '{"name":"r0"}' | python3 -c 'import json,sys; v=json.load(sys.stdin)[0]; print(v["state"], v["unsynced_stripes"])')
[ "$st" = "online 0" ] || die "r0 after the restart: $st"
stop_tgt
log "test_nvmf: OK"

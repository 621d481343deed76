#!/usr/bin/env bash
# Assembly and metadata checks:
#  (a) block size: a volume over AIO files written with 4096-byte blocks; after a restart the
#      AIO bdevs come back with 512-byte blocks: examine must refuse to assemble (and say why),
#      and bdev_jraid_create by uuid must fail cleanly; back with 4096-byte blocks it assembles.
#  (b) two bdev_jraid_create calls on one shared journal sent back to back (two connections,
#      before either answers): both succeed with distinct volume numbers, or one is refused
#      with a clear error and claims nothing (its members are free for a new create after).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
trap stop_tgt EXIT

sock=$WORK/asm.sock
TGT_MEM_ARGS=(--no-huge -s 1024 --disable-cpumask-locks)

# (a) Block size.
for f in a0 a1 a2 a3 aj; do rm -f "$WORK/$f.img"; truncate -s 32M "$WORK/$f.img"; done
aio() { # NAME BLOCK_SIZE
    rpc_ok "$sock" bdev_aio_create "{\"filename\":\"$WORK/$1.img\",\"name\":\"$1\",\"block_size\":$2}" >/dev/null
}
start_tgt "$sock" "$WORK/asm-a1.log"
for f in a0 a1 a2 a3 aj; do aio $f 4096; done
uuid=$(rpc_ok "$sock" bdev_jraid_create \
    '{"name":"r0","strip_size_kb":64,"base_bdevs":["a0","a1","a2","a3"],"journal_bdev":"aj"}' >/dev/null
    rpc_ok "$sock" bdev_jraid_get_bdevs | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["uuid"])')
stop_tgt

start_tgt "$sock" "$WORK/asm-a2.log"
for f in a0 a1 a2 a3 aj; do aio $f 512; done
rpc_ok "$sock" bdev_wait_for_examine >/dev/null
sleep 0.5
n=$(rpc_ok "$sock" bdev_jraid_get_bdevs | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
[ "$n" = 0 ] || die "(a) a volume was assembled over 512-byte bdevs written with 4096-byte blocks"
grep -aq "written with 4096-byte blocks, but the bdev now has 512-byte blocks" "$WORK/asm-a2.log" ||
    die "(a) examine did not say why it refused the 512-byte bdevs"
out=$(rpc "$sock" bdev_jraid_create "{\"name\":\"r0\",\"strip_size_kb\":64,\"base_bdevs\":[\"a0\",\"a1\",\"a2\",\"a3\"],\"journal_bdev\":\"aj\",\"uuid\":\"$uuid\"}")
grep -q '"error"' <<<"$out" || die "(a) create by uuid over 512-byte bdevs succeeded: $out"
log "(a) create by uuid over 512-byte bdevs refused: $(python3 -c 'import json,sys; print(json.load(sys.stdin)["error"]["message"])' <<<"$out")"
# Nothing half-created: the bdevs are free again.
rpc_ok "$sock" bdev_aio_delete '{"name":"a0"}' >/dev/null
stop_tgt

start_tgt "$sock" "$WORK/asm-a3.log"
for f in a0 a1 a2 a3 aj; do aio $f 4096; done
wait_bdev "$sock" r0
log "(a) 512-byte blocks refused with a reason; 4096-byte blocks assemble r0 again"
stop_tgt

# (b) Back-to-back creates on one shared journal (AIO files, so a restart can check what the
# journal superblock lists).
bfiles=(b0 b1 b2 b3 b4 b5 b6 b7 b8 b9 b10 b11 bj)
for f in "${bfiles[@]}"; do rm -f "$WORK/$f.img"; truncate -s 32M "$WORK/$f.img"; done
start_tgt "$sock" "$WORK/asm-b.log"
for f in "${bfiles[@]}"; do aio $f 4096; done
rpc_ok "$sock" bdev_jraid_create \
    '{"name":"r0","strip_size_kb":64,"base_bdevs":["b0","b1","b2","b3"],"journal_bdev":"bj"}' >/dev/null
python3 - "$sock" "$here/../../scripts" >"$WORK/asm-b.out" <<'PY'
import json, socket, sys
sys.path.insert(0, sys.argv[2])
path = sys.argv[1]
conns = []
for name, members in (("r1", ["b4", "b5", "b6", "b7"]), ("r2", ["b8", "b9", "b10", "b11"])):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "bdev_jraid_create", "params": {
        "name": name, "strip_size_kb": 64, "base_bdevs": members, "journal_bdev": "bj"}}).encode())
    conns.append((name, s))
dec = json.JSONDecoder()
for name, s in conns:
    buf = b""
    while True:
        buf += s.recv(1 << 16)
        try:
            obj, _ = dec.raw_decode(buf.decode())
            break
        except ValueError:
            continue
    print(name, json.dumps(obj))
PY
cat "$WORK/asm-b.out" >&2
nums=$(rpc_ok "$sock" bdev_jraid_get_bdevs | python3 -c 'import json,sys; print(" ".join("%s:%s" % (v["name"], v["volume"]) for v in json.load(sys.stdin)))')
log "(b) volumes: $nums"
python3 - "$nums" <<'PY' || die "(b) two volumes share a number: $nums"
import sys
nums = [v.split(":")[1] for v in sys.argv[1].split()]
sys.exit(len(nums) != len(set(nums)))
PY
while read -r name resp; do
    if grep -q '"error"' <<<"$resp"; then
        msg=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["error"]["message"])' <<<"$resp")
        grep -q "in progress" <<<"$msg" || die "(b) $name refused without a clear reason: $msg"
        # It claimed nothing: its members make a volume now.
        members=$([ "$name" = r1 ] && echo "b4 b5 b6 b7" || echo "b8 b9 b10 b11")
        params=$(printf '{"name":"%s","strip_size_kb":64,"base_bdevs":["%s"],"journal_bdev":"bj"}' "$name" \
            "$(sed 's/ /","/g' <<<"$members")")
        rpc_ok "$sock" bdev_jraid_create "$params" >/dev/null
        log "(b) $name was refused ($msg); created afterwards over the same members"
    fi
done <"$WORK/asm-b.out"
[ "$(rpc_ok "$sock" bdev_jraid_get_bdevs | python3 -c 'import json,sys; v=json.load(sys.stdin); print(len(v), len(set(x["volume"] for x in v)))')" = "3 3" ] ||
    die "(b) expected three volumes with distinct numbers"
listing='import json,sys; print(" ".join("%s:%s" % (v["name"], v["volume"]) for v in sorted(json.load(sys.stdin), key=lambda v: v["name"])))'
final=$(rpc_ok "$sock" bdev_jraid_get_bdevs | python3 -c "$listing")
# The journal superblock lists all three: a restart assembles them all, with the same numbers.
stop_tgt
start_tgt "$sock" "$WORK/asm-b2.log"
for f in "${bfiles[@]}"; do aio $f 4096; done
for v in r0 r1 r2; do wait_bdev "$sock" $v; done
again=$(rpc_ok "$sock" bdev_jraid_get_bdevs | python3 -c "$listing")
[ "$again" = "$final" ] || die "(b) after a restart: $again, before: $final"
log "(b) after a restart, the same volumes and numbers: $again"
stop_tgt
log "test_assembly: OK"

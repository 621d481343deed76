#!/usr/bin/env bash
# bdev_jraid_scrub: a volume over AIO files is written by bdevperf, scrubbed (clean), stopped;
# three parity strips of member 0 are corrupted with dd; the volume is re-assembled (create with
# its uuid); a scrub reports exactly those stripes, a scrub with repair rewrites their parity,
# and a third scrub is clean again. Then six members under 4 KiB and 64 KiB verify writes
# (parity updated in place, and reconstructed): a scrub finds no mismatch.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bdevperf_rpc.sh"
trap 'bp_stop' EXIT

sock=$WORK/sc.sock
for f in s0 s1 s2 s3 sj; do rm -f "$WORK/$f.img"; truncate -s 64M "$WORK/$f.img"; done
cfg=$WORK/sc.json
{
    echo '{"subsystems":[{"subsystem":"bdev","config":['
    for f in s0 s1 s2 s3 sj; do
        echo " {\"method\":\"bdev_aio_create\",\"params\":{\"filename\":\"$WORK/$f.img\",\"name\":\"$f\",\"block_size\":4096}},"
    done
    echo ' {"method":"bdev_jraid_create","params":{"name":"r2","strip_size_kb":64,'
    echo '   "base_bdevs":["s0","s1","s2","s3"],"journal_bdev":"sj"}},'
    echo ' {"method":"bdev_wait_for_examine"}'
    echo ']}]}'
} >"$cfg"

# scrub SOCK REPAIR: run a scrub to its end; prints its status.
scrub() {
    rpc_ok "$1" bdev_jraid_scrub "{\"name\":\"r2\",\"repair\":$2}" >/dev/null
    for _ in $(seq 1 600); do
        [ "$(jget "$1" 'v["scrub"]["state"]')" = done ] && { jget "$1" 'v["scrub"]'; return 0; }
        sleep 0.1
    done
    die "scrub did not finish: $(jget "$1" 'v["scrub"]')"
}

bp_start "$sock" "$WORK/sc.log" "$cfg" -q 8 -o 196608 -w write -t 2 -T r2
bp_perform "$sock" "$WORK/sc.out"
wait "$PERF_PID" || die "bdevperf write failed"
bp_check_total "$WORK/sc.log" "write" >/dev/null
# The volume's initial parity pass may still run on a busy machine (a scrub is refused until it
# is over, by design): wait for it.
wait_bdev "$sock" r2
s=$(scrub "$sock" false); log "scrub after writing: $s"
[ "$(jget "$sock" 'v["scrub"]["mismatches"]')" = 0 ] || die "mismatches before corruption"
uuid=$(jget "$sock" 'v["uuid"]')
rpc_ok "$sock" bdev_jraid_delete '{"name":"r2"}' >/dev/null

# Parity of stripe s sits on member 3 - s % 4: stripes 3, 7, 11 have theirs on member 0.
for s in 3 7 11; do
    dd if=/dev/urandom of="$WORK/s0.img" bs=4096 count=1 seek=$(( (1048576 + s * 65536) / 4096 + 5 )) \
        conv=notrunc,fsync oflag=direct status=none
done
rpc_ok "$sock" bdev_jraid_create "{\"name\":\"r2\",\"strip_size_kb\":64,\"base_bdevs\":[\"s0\",\"s1\",\"s2\",\"s3\"],\"journal_bdev\":\"sj\",\"uuid\":\"$uuid\"}" >/dev/null
[ "$(jget "$sock" 'v["state"]')" = online ] || die "not online after re-assembly"
s=$(scrub "$sock" false); log "scrub after corrupting: $s"
[ "$(jget "$sock" 'v["scrub"]["mismatch_stripes"]')" = "[3, 7, 11]" ] || die "expected mismatches in stripes 3, 7, 11"
s=$(scrub "$sock" true); log "scrub with repair: $s"
[ "$(jget "$sock" 'v["scrub"]["repaired"]')" = 3 ] || die "expected 3 repairs"
s=$(scrub "$sock" false); log "scrub after repair: $s"
[ "$(jget "$sock" 'v["scrub"]["mismatches"]')" = 0 ] || die "mismatches left after repair"
bp_stop

# Six members: a 4 KiB write reads its old data and old parity and updates the parity in place
# (read-modify-write; with four members a small write reads the other data strips instead), a
# 64 KiB one covering a strip reconstructs. bdevperf verify at each size, twice (patterned data:
# its plain writes are zeros, whose parity is right whatever the XOR does), then a scrub: every
# stripe's parity must be right. Under each XOR kernel (bdev_jraid_set_options xor_kernel: the
# module's timing picks one per shape, so a run on one CPU would leave the other untested). The
# members are new files (zeros): assume_clean, so that no initial parity pass runs (writes above
# its watermark reconstruct, never update in place, and the pass rewrites every parity anyway:
# a wrong update would not show).
six=(x0 x1 x2 x3 x4 x5)
cfg6=$WORK/sc6.json
for kernel in isal native; do
    {
        echo '{"subsystems":[{"subsystem":"bdev","config":['
        echo " {\"method\":\"bdev_jraid_set_options\",\"params\":{\"xor_kernel\":\"$kernel\"}},"
        for f in "${six[@]}" xj; do
            echo " {\"method\":\"bdev_aio_create\",\"params\":{\"filename\":\"$WORK/$f.img\",\"name\":\"$f\",\"block_size\":4096}},"
        done
        echo ' {"method":"bdev_jraid_create","params":{"name":"r2","strip_size_kb":64,'
        echo '   "base_bdevs":["x0","x1","x2","x3","x4","x5"],"journal_bdev":"xj","assume_clean":true}},'
        echo ' {"method":"bdev_wait_for_examine"}'
        echo ']}]}'
    } >"$cfg6"
    for io in 4096 65536; do
        # Blank members each time (with superblocks left, examine would assemble r2 itself).
        for f in "${six[@]}" xj; do rm -f "$WORK/$f.img"; truncate -s 64M "$WORK/$f.img"; done
        bp_start "$sock" "$WORK/sc6.log" "$cfg6" -q 32 -o $io -w verify -t 2 -T r2
        grep -q "xor_kernel $kernel" "$WORK/sc6.log" || die "XOR kernel $kernel not applied (no log line)"
        # Twice over the same blocks (a verify pass starts at the volume's start): the second
        # pass updates parity over data that is not zeros (over zeros, an update that left
        # the old data out would give the same parity).
        for pass in 1 2; do
            bp_perform "$sock" "$WORK/sc6.out"
            wait "$PERF_PID" || die "bdevperf verify ($io bytes, XOR $kernel, pass $pass) on six members failed"
            r=$(bp_check_total "$WORK/sc6.log" "six members, $io-byte verify, XOR $kernel, pass $pass")
        done
        s=$(scrub "$sock" false); log "six members, XOR $kernel, $io-byte verify ($r IOPS MiB/s), scrub: $s"
        [ "$(jget "$sock" 'v["scrub"]["mismatches"]')" = 0 ] || die "six members, XOR $kernel: parity wrong after $io-byte writes"
        bp_stop
    done
done
log "test_scrub: OK"

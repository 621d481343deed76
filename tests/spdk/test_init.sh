#!/usr/bin/env bash
# The initial parity pass: five members (small writes read-modify-write where parity is
# initialised) are AIO files full of random bytes, as old disks would be.
# 1. Control: created with "assume_clean": true, the volume's parity disagrees with its data
#    (a scrub finds mismatches): what the pass is for, and proof the scrub would see it.
# 2. Created without it over 50 ms delay bdevs: the volume comes online at once with the pass
#    running in the background (init in bdev_jraid_get_bdevs); bdevperf verify runs during it;
#    then the app is killed (-9) in the middle of the pass. The member superblocks record a
#    watermark between 0 and the stripe count; examine re-assembles the volume at the next
#    start (from the AIO bdevs, no delay) and the pass resumes from that watermark (its log
#    line says so), capped by bdev_jraid_set_options, while another verify runs; the cap is
#    lifted while it runs; at its end every stripe is initialised and a scrub finds parity
#    clean.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bdevperf_rpc.sh"
trap 'bp_stop' EXIT

sock=$WORK/init.sock
members=(i0 i1 i2 i3 i4)
stripes=1024 # 64 MiB of each 65 MiB member past its 1 MiB superblock area, 64 KiB strips

fill() {
    for f in "${members[@]}"; do head -c 65M /dev/urandom >"$WORK/$f"; done
    rm -f "$WORK/ij"
    truncate -s 64M "$WORK/ij"
}

# delay_entries: a 50 ms delay bdev dN over each member file's AIO bdev.
delay_entries() {
    local sep="" f
    for f in "${members[@]}"; do
        printf '%s{"method":"bdev_delay_create","params":{"base_bdev_name":"%s","name":"d%s","avg_read_latency":50000,"p99_read_latency":50000,"avg_write_latency":50000,"p99_write_latency":50000}}' \
            "$sep" "$f" "$f"
        sep=","
    done
}

create_entry() { # MEMBER-PREFIX EXTRA
    local names
    names=$(printf "\"$1%s\"," "${members[@]}")
    printf '{"method":"bdev_jraid_create","params":{"name":"r0","strip_size_kb":64,"base_bdevs":[%s],"journal_bdev":"ij"%s}}' \
        "${names%,}" "$2"
}

# scrub_mismatches: run a scrub of r0 to its end; prints its mismatch count.
scrub_mismatches() {
    rpc_ok "$sock" bdev_jraid_scrub '{"name":"r0"}' >/dev/null
    for _ in $(seq 1 600); do
        [ "$(jget "$sock" 'v["scrub"]["state"]')" = done ] && { jget "$sock" 'v["scrub"]["mismatches"]'; return 0; }
        sleep 0.1
    done
    die "scrub did not finish: $(jget "$sock" 'v["scrub"]')"
}

# verify_run NAME WHAT: run the bdevperf job started with bp_start (log $WORK/NAME.log) to its
# end; prints "IOPS MiB/s" (no failed I/O).
verify_run() {
    bp_perform "$sock" "$WORK/$1.out"
    wait "$PERF_PID" || { cat "$WORK/$1.out" >&2; die "bdevperf $2 failed"; }
    bp_check_total "$WORK/$1.log" "$2"
}

# recorded_init FILE: the initialised-stripes watermark in a member's superblock.
recorded_init() {
    python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(4096); assert b[:8]==b"JRAIDMSB"; print(struct.unpack_from("<Q",b,724)[0])' "$1"
}

# recorded_seq FILE: the seq of a member's superblock (the newest speaks for the volume).
recorded_seq() {
    python3 -c 'import struct,sys; b=open(sys.argv[1],"rb").read(4096); assert b[:8]==b"JRAIDMSB"; print(struct.unpack_from("<Q",b,88)[0])' "$1"
}

# 1. The control: old contents taken as blank.
fill
bdev_config "$WORK/ic.json" "$(aio_entries "$WORK" "${members[@]}" ij),$(create_entry "" ',"assume_clean":true')"
bp_start "$sock" "$WORK/ic.log" "$WORK/ic.json" -q 8 -o 4096 -w verify -t 1 -T r0
[ "$(jget "$sock" 'v["init_stripes"]')" = $stripes ] || die "assume_clean: not every stripe initialised"
[ "$(jget "$sock" 'v["init"]')" = None ] || die "assume_clean: an initial pass ran"
n=$(scrub_mismatches)
log "control (assume_clean over random members): scrub finds $n of $stripes stripes mismatching"
[ "$n" -gt $((stripes / 2)) ] || die "control: the scrub found only $n mismatches over random members"
bp_stop

# 2. The pass, a power loss inside it, and its resumption.
fill
entries="$(aio_entries "$WORK" "${members[@]}" ij),$(delay_entries)"
# Examine reads the delay bdevs (50 ms) before the create may claim them. The pass capped at
# 16 MiB/s of stripe data (16 s for the volume), so that the kill meets it running.
slow16='{"method":"bdev_jraid_set_options","params":{"init_bandwidth_mb":16}}'
bdev_config "$WORK/i1.json" "$slow16,$entries,{\"method\":\"bdev_wait_for_examine\"},$(create_entry d '')"
bp_start "$sock" "$WORK/i1.log" "$WORK/i1.json" -q 32 -o 4096 -w verify -t 2 -T r0
grep -aq "volume r0: initialising parity in the background, stripes 0 to $stripes" "$WORK/i1.log" ||
    die "no initial pass started: $(grep -a jraid "$WORK/i1.log" | tail -5)"
r=$(verify_run i1 "verify during the initial pass")
st=$(jget "$sock" 'v["init"]["state"], v["init_stripes"], v["init"]["percent"]')
log "verify during the initial pass: $r IOPS MiB/s; init (state, watermark, percent): $st"
case "$st" in "running "* | "flushing "*) ;; *) die "the initial pass was not running any more: $st" ;; esac
e=$(rpc_err "$sock" bdev_jraid_scrub '{"name":"r0"}' "a scrub during the initial pass")
log "a scrub during the initial pass is refused: $e"
case "$e" in *"being initialised"*) ;; *) die "scrub refused for another reason: $e" ;; esac
kill -KILL "$BP_PID"
wait "$BP_PID" 2>/dev/null || true
BP_PID=
# Each superblock write goes to every member at once, so the kill may leave some members a
# write behind others: a newer superblock (higher seq) never records fewer stripes initialised,
# one of the same seq records as many, and the newest one's watermark is the volume's.
declare -A sb_init sb_seq
for f in "${members[@]}"; do
    sb_init[$f]=$(recorded_init "$WORK/$f")
    sb_seq[$f]=$(recorded_seq "$WORK/$f")
done
w=-1 wseq=-1 seen=""
for f in "${members[@]}"; do
    o=${sb_init[$f]} q=${sb_seq[$f]}
    [ "$o" -le $stripes ] || die "member $f records $o initialised stripes, more than the volume's $stripes"
    seen="$seen $f=seq$q:$o"
    for g in "${members[@]}"; do
        og=${sb_init[$g]} qg=${sb_seq[$g]}
        if [ "$qg" -gt "$q" ] && [ "$og" -lt "$o" ]; then
            die "member $g (seq $qg) records $og initialised stripes, fewer than member $f's $o (seq $q)"
        fi
        if [ "$qg" = "$q" ] && [ "$og" != "$o" ]; then
            die "members $f and $g (both seq $q) record $o and $og initialised stripes"
        fi
    done
    [ "$q" -gt "$wseq" ] && { wseq=$q; w=$o; }
done
log "killed during the pass: the newest superblock (seq $wseq) records $w of $stripes stripes initialised;$seen"
[ "$w" -gt 0 ] && [ "$w" -lt $stripes ] || die "recorded watermark $w: expected inside 1..$((stripes - 1))"

# Restart without the create or the delay bdevs: examine re-assembles r0 from the superblocks
# on the AIO bdevs themselves (a delay bdev over one would race examine for its claim).
# The pass capped at 4 MiB/s (bdev_jraid_set_options) so that the verify meets it running; the
# cap is lifted while it runs.
slow='{"method":"bdev_jraid_set_options","params":{"init_bandwidth_mb":4,"init_window":4}}'
bdev_config "$WORK/i2.json" "$slow,$(aio_entries "$WORK" "${members[@]}" ij)"
bp_start "$sock" "$WORK/i2.log" "$WORK/i2.json" -q 32 -o 4096 -w verify -t 2 -T r0
wait_bdev_up=0
for _ in $(seq 1 100); do
    grep -aq "jraid volume r0 online" "$WORK/i2.log" && { wait_bdev_up=1; break; }
    sleep 0.1
done
[ $wait_bdev_up = 1 ] || die "r0 not re-assembled"
from=$(grep -ao "volume r0: initialising parity in the background, stripes [0-9]* to" "$WORK/i2.log" | awk '{print $(NF-1)}')
log "after the restart the pass resumed from stripe ${from:-none}"
[ -n "$from" ] && [ "$from" = "$w" ] || die "the pass did not resume from the newest recorded watermark $w"
r=$(verify_run i2 "verify during the resumed pass")
st=$(jget "$sock" 'v["init"]["state"], v["init"]["window"], v["init_stripes"]')
log "verify during the resumed pass: $r IOPS MiB/s; init (state, window, watermark): $st"
case "$st" in "running 4 "* | "flushing 4 "*) ;; *) die "the capped pass was not running: $st" ;; esac
rpc_ok "$sock" bdev_jraid_set_options '{"init_bandwidth_mb":0,"init_window":16}' >/dev/null
wait_bdev "$sock" r0
st=$(jget "$sock" 'v["init"]["state"], v["init_stripes"]')
[ "$st" = "done $stripes" ] || die "initial pass after the restart: $st"
n=$(scrub_mismatches)
[ "$n" = 0 ] || die "$n stripes mismatch after the initial pass"
log "initial pass done: every stripe initialised, a scrub finds parity clean"
bp_stop
for f in "${members[@]}"; do
    [ "$(recorded_init "$WORK/$f")" = $stripes ] || die "member $f does not record every stripe initialised"
done
grep -a "parity initialised" "$WORK/i2.log" | tail -1 >&2
log "test_init: OK"

#!/usr/bin/env bash
# Faults with I/O really in flight (members are bdev_delay bdevs over malloc, 10-30 ms per I/O,
# so every member holds dozens of I/Os when it goes):
#  (a) bdevperf -w verify on r0; a member is hot-removed (bdev_delay_delete) with I/O in flight,
#      a spare is added and rebuilt under load, then a second member is removed and rebuilt
#      onto another spare. Verify passes, every member ends active, a scrub finds parity clean,
#      and bdevperf exits cleanly; verify's sequential 4 KiB writes merged on their stripes.
#  (b) the journal (a delay bdev too) is hot-removed under load: writes fail from then on but
#      nothing hangs or crashes; bdev_jraid_set_journal onto a new journal brings writes back.
#  (c) the same with set_journal sent while writes from both reactors are in flight: see below.
# Run against SPDK built --enable-debug (scripts/install_spdk.sh --debug; FAULT_SPDK_DIR) its
# asserts catch what a release build does silently: a bdev channel put, or a descriptor closed,
# with I/O of ours still in flight on it. ROUNDS repeats (a).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bdevperf_rpc.sh"
trap 'bp_stop' EXIT

T=${T:-12}
ROUNDS=${ROUNDS:-2}
sock=$WORK/faults.sock

# delay_entries BASE:NAME...: bdev_delay_create entries, latencies in microseconds (avg 10 ms,
# p99 30 ms), comma-separated.
delay_entries() {
    local sep=""
    for p in "$@"; do
        printf '%s{"method":"bdev_delay_create","params":{"base_bdev_name":"%s","name":"%s","avg_read_latency":10000,"p99_read_latency":30000,"avg_write_latency":10000,"p99_write_latency":30000}}' \
            "$sep" "${p%%:*}" "${p#*:}"
        sep=","
    done
}

wait_pass() { # SOCK KEY LABEL: wait (at most PASS_WAIT_S, default 180 s) until v[KEY]["state"] is done
    local st end=$((SECONDS + ${PASS_WAIT_S:-180}))
    while [ "$SECONDS" -lt "$end" ]; do
        st=$(jget "$1" "v[\"$2\"][\"state\"] if v[\"$2\"] else \"none\"")
        case $st in
            done) return 0 ;;
            failed|aborted) die "$3: $(jget "$1" "v[\"$2\"]")" ;;
        esac
        sleep 0.2
    done
    die "$3: never finished ($(jget "$1" "v[\"$2\"]"))"
}

cfg=$WORK/faults.json
# Other modules' examine of a new delay bdev may still hold it open for writing: wait for
# examine before bdev_jraid_create claims the delay bdevs.
bdev_config "$cfg" "$(malloc_entries 16384 m0 m1 m2 m3 sp sp2),$(malloc_entries 2048 jl jl2),$(
    delay_entries m0:d0 m1:d1 m2:d2 m3:d3 sp:dsp sp2:dsp2 jl:djl),{\"method\":\"bdev_wait_for_examine\"},$(
    jraid_create r0 djl d0 d1 d2 d3)"

for round in $(seq 1 "$ROUNDS"); do
    log "(a) round $round: verify load, member hot-removed with I/O in flight, rebuilt, twice"
    bp_start "$sock" "$WORK/faults-a$round.log" "$cfg" -C -q 64 -o 4096 -w verify -t "$T" -T r0
    bp_perform "$sock" "$WORK/faults-a$round.out"
    sleep 1.5
    rpc_ok "$sock" bdev_delay_delete '{"name":"d1"}' >/dev/null
    sleep 0.5
    [ "$(jget "$sock" 'v["state"]')" = degraded ] || die "(a) not degraded after d1 went"
    rpc_ok "$sock" bdev_jraid_add_base_bdev '{"name":"r0","base_bdev":"dsp"}' >/dev/null
    wait_pass "$sock" rebuild "(a) rebuild onto dsp"
    rpc_ok "$sock" bdev_delay_delete '{"name":"d2"}' >/dev/null
    sleep 0.5
    rpc_ok "$sock" bdev_jraid_add_base_bdev '{"name":"r0","base_bdev":"dsp2"}' >/dev/null
    wait_pass "$sock" rebuild "(a) rebuild onto dsp2"
    st=$(jget "$sock" 'v["state"] + " " + " ".join(m["state"] for m in v["members"])')
    [ "$st" = "online active active active active" ] || die "(a) after both rebuilds: $st"
    wait "$PERF_PID" || { cat "$WORK/faults-a$round.out" >&2; die "(a) perform_tests failed"; }
    res=$(bp_check_total "$WORK/faults-a$round.log" "(a) verify")
    rpc_ok "$sock" bdev_jraid_scrub '{"name":"r0"}' >/dev/null
    wait_pass "$sock" scrub "(a) scrub"
    [ "$(jget "$sock" 'v["scrub"]["mismatches"]')" = 0 ] || die "(a) scrub: $(jget "$sock" 'v["scrub"]')"
    # verify writes sequentially: 4 KiB writes queued on one stripe's lock merged into one
    # stripe write, members going and coming back under them.
    merged=$(jget "$sock" 'v["writes"]["merged"]')
    [ "$merged" -gt 0 ] || die "(a) no write merged: the merged stripe writes went untested"
    bp_stop
    check_clean_exit "$WORK/faults-a$round.log" bdevperf
    log "(a) round $round: verify clean through two hot-removes and rebuilds ($res IOPS MiB/s, $merged writes merged)"
done

log "(b) journal hot-removed under write load, then replaced"
bp_start "$sock" "$WORK/faults-b.log" "$cfg" -f -q 64 -o 4096 -w randwrite -t 4 -T r0
bp_perform "$sock" "$WORK/faults-b.out"
sleep 1.5
rpc_ok "$sock" bdev_delay_delete '{"name":"djl"}' >/dev/null
wait "$PERF_PID" || true # writes fail once the journal is gone (-f: bdevperf goes on)
[ "$(jget "$sock" 'v["journal"]["failed"] or not v["journal"]["present"]')" = True ] ||
    die "(b) journal still in use after removal: $(jget "$sock" 'v["journal"]')"
rpc_ok "$sock" bdev_jraid_set_journal '{"name":"r0","journal_bdev":"jl2"}' >/dev/null
jstate='v["journal"]["name"] + (":failed" if v["journal"]["failed"] else ":ok")'
end=$((SECONDS + 120))
while [ "$SECONDS" -lt "$end" ]; do
    [ "$(jget "$sock" "$jstate")" = "jl2:ok" ] && break
    sleep 0.2
done
[ "$(jget "$sock" "$jstate")" = "jl2:ok" ] || die "(b) new journal not in use: $(jget "$sock" 'v["journal"]')"
bp_perform "$sock" "$WORK/faults-b2.out"
wait "$PERF_PID" || { cat "$WORK/faults-b2.out" >&2; die "(b) writes after set_journal failed"; }
res=$(bp_check_total "$WORK/faults-b.log" "(b) writes on the new journal")
log "(b) writes on the new journal: $res IOPS MiB/s"
bp_stop
check_clean_exit "$WORK/faults-b.log" bdevperf
# (c) set_journal while both reactors write to r0 (-C) and stripes are contended across them
# (stripe-lock grants travel between channels as messages): the per-channel move must wait on
# each channel, holding it, while bdevperf's job ends and puts its channels (the timing shifts
# each round), and grants sent across the move must arrive. Then a second run on the new
# journal completes (a lost grant would wedge it: the watchdog fails the test) with no failed
# I/O, and a scrub finds parity clean.
for round in $(seq 1 "${C_ROUNDS:-3}"); do
    log "(c) round $round: journal removed under two-reactor writes, set_journal racing the job's end"
    bp_start "$sock" "$WORK/faults-c$round.log" "$cfg" -C -f -q 64 -o 4096 -w randwrite -t 3 -T r0
    bp_perform "$sock" "$WORK/faults-c$round.out"
    sleep "$(awk -v r="$round" 'BEGIN{print 1.5 + 0.6 * r}')"
    rpc_ok "$sock" bdev_delay_delete '{"name":"djl"}' >/dev/null
    rpc_ok "$sock" bdev_jraid_set_journal '{"name":"r0","journal_bdev":"jl2"}' >/dev/null
    end=$((SECONDS + 120))
    while [ "$SECONDS" -lt "$end" ]; do
        [ "$(jget "$sock" "$jstate")" = "jl2:ok" ] && break
        sleep 0.1
    done
    [ "$(jget "$sock" "$jstate")" = "jl2:ok" ] || die "(c) new journal not in use: $(jget "$sock" 'v["journal"]')"
    wait "$PERF_PID" || true # writes between the loss and the move fail (-f: bdevperf goes on)
    bp_perform "$sock" "$WORK/faults-c$round-2.out"
    end=$((SECONDS + 60))
    while kill -0 "$PERF_PID" 2>/dev/null && [ "$SECONDS" -lt "$end" ]; do sleep 0.2; done
    kill -0 "$PERF_PID" 2>/dev/null && die "(c) writes on the new journal never finished (a lost stripe-lock grant?)"
    wait "$PERF_PID" || { cat "$WORK/faults-c$round-2.out" >&2; die "(c) writes after set_journal failed"; }
    res=$(bp_check_total "$WORK/faults-c$round.log" "(c) writes on the new journal")
    rpc_ok "$sock" bdev_jraid_scrub '{"name":"r0"}' >/dev/null
    wait_pass "$sock" scrub "(c) scrub"
    [ "$(jget "$sock" 'v["scrub"]["mismatches"]')" = 0 ] || die "(c) scrub: $(jget "$sock" 'v["scrub"]')"
    bp_stop
    check_clean_exit "$WORK/faults-c$round.log" bdevperf
    log "(c) round $round: moved under load, then $res IOPS MiB/s on jl2, parity clean"
done
log "test_faults: OK"

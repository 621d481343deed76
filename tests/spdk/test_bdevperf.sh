#!/usr/bin/env bash
# (a) bdevperf -w verify over jraid (4 malloc members + malloc journal, created by the JSON
# config's bdev_jraid_create) with 4 KiB, 64 KiB and full-stripe I/O on both reactors.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

T=${T:-5}
cfg=$WORK/bdevperf.json
malloc_volume_config "$cfg"

printf '%-14s %12s %10s\n' "I/O size" "IOPS" "MiB/s"
for size in 4096 65536 196608; do
    out=$WORK/bdevperf-$size.log
    spdk_env "$BDEVPERF" --json "$cfg" -m 0x3 "${MEM_ARGS[@]}" -C -q 32 -o "$size" -w verify \
        -t "$T" -T r0 >"$out" 2>&1 || { tail -30 "$out" >&2; die "bdevperf -o $size failed"; }
    # " Total : IOPS MiB/s Fail/s TO/s avg min max"
    total=$(tr '\r' '\n' <"$out" | grep -aE '^ *Total +: +[0-9]' | tail -1 | sed 's/.*Total *://')
    [ -n "$total" ] || { tail -30 "$out" >&2; die "bdevperf -o $size: no result"; }
    read -r iops mibs fails _ <<<"$total"
    awk -v f="$fails" 'BEGIN{exit !(f == 0)}' || die "bdevperf -o $size: $fails failed I/O per second"
    check_clean_exit "$out" bdevperf
    label=$size
    [ "$size" = 196608 ] && label="192K (stripe)"
    printf '%-14s %12s %10s\n' "$label" "$iops" "$mibs"
done

# DMA memory (what NVMe PCIe members, and bdev stacks over them, need). JRAID_DMA_BOUNCE=all
# treats every member and the journal as needing it: (1) the engine's own buffers are DMA memory
# of the SPDK env and bdevperf's are too, so no I/O needs a bounce buffer; (2) with the engine's
# buffers on the heap (JRAID_HEAP_BUFFERS=1), they go through bounce buffers. Verify passes both.
bounce_run() { # LABEL LOG ENV...
    local label=$1 out=$2 total iops mibs fails; shift 2
    env "$@" LD_LIBRARY_PATH="$SPDK_LIBDIR" LD_PRELOAD="$JRAID_LIB" "$BDEVPERF" --json "$cfg" -m 0x3 \
        "${MEM_ARGS[@]}" -C -q 32 -o 12288 -w verify -t "$T" -T r0 >"$out" 2>&1 ||
        { tail -30 "$out" >&2; die "bdevperf ($label) failed"; }
    total=$(tr '\r' '\n' <"$out" | grep -aE '^ *Total +: +[0-9]' | tail -1 | sed 's/.*Total *://')
    read -r iops mibs fails _ <<<"$total"
    awk -v f="$fails" 'BEGIN{exit !(f == 0)}' || die "bdevperf ($label): $fails failed I/O per second"
    printf '%-14s %12s %10s\n' "$label" "$iops" "$mibs"
}
out=$WORK/bdevperf-dma.log
bounce_run "12K (DMA)" "$out" JRAID_DMA_BOUNCE=all
if grep -a "went through DMA bounce buffers" "$out" >&2; then
    die "engine buffers needed bounce buffers: they are not DMA memory"
fi
out=$WORK/bdevperf-bounce.log
bounce_run "12K (bounce)" "$out" JRAID_DMA_BOUNCE=all JRAID_HEAP_BUFFERS=1
grep -aq "went through DMA bounce buffers" "$out" || { tail -30 "$out" >&2; die "DMA bounce path not taken"; }
# (3) A transient shortage is not a failure: one bounce-buffer request in three fails as if DMA
# memory ran out; the I/O waits and is retried, verify passes and no member or journal fails.
out=$WORK/bdevperf-nomem.log
bounce_run "12K (no DMA)" "$out" JRAID_DMA_BOUNCE=all JRAID_HEAP_BUFFERS=1 JRAID_DMA_FAIL_EVERY=3
grep -aq "no DMA memory for a" "$out" || { tail -30 "$out" >&2; die "the DMA shortage was not injected"; }
if grep -aE "member [0-9]+ \(.*\) failed|journal failed" "$out" >&2; then
    die "a transient DMA shortage failed a member or the journal"
fi
# (4) A shortage of bdev_ios is not a failure, and does not stop the volume either: with SPDK's
# pool cut to 72 (bdevperf's own 64 requests hold most of them), member reads and writes meet
# -ENOMEM. A reactor whose bdev_ios are all held by user writes waiting for a journal record
# is never woken by SPDK's io_wait (only its own frees wake it), so such I/O goes through the
# module's reserve thread; direct reads that find no bdev_io go the engine's way. Verify must
# pass with no member or journal failed, and finish: a stall is killed and fails the test. The
# stall needed a reactor starved at the wrong moment, which two busy loops beside bdevperf made
# likely (half the runs without the reserve thread), so three runs go with them.
scfg=$WORK/bdevperf-scarce.json
bdev_config "$scfg" "{\"method\":\"bdev_set_options\",\"params\":{\"bdev_io_pool_size\":72,\"bdev_io_cache_size\":4}},$(malloc_entries 16384 m0 m1 m2 m3),$(malloc_entries 2048 jl),$(jraid_create r0 jl m0 m1 m2 m3)"
busy=()
for _ in 1 2; do
    timeout $((T * 3 * 4 + 60)) sh -c 'while :; do :; done' &
    busy+=($!)
done
for run in 1 2 3; do
    out=$WORK/bdevperf-scarce-$run.log
    rc=0
    timeout -s KILL $((T * 4 + 60)) env LD_LIBRARY_PATH="$SPDK_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" \
        LD_PRELOAD="$JRAID_LIB" "$BDEVPERF" --json "$scfg" -m 0x3 "${MEM_ARGS[@]}" -C -q 32 -o 4096 \
        -w verify -t "$T" -T r0 >"$out" 2>&1 || rc=$?
    if [ "$rc" != 0 ]; then
        kill "${busy[@]}" 2>/dev/null || true
        tail -30 "$out" >&2
        [ "$rc" = 137 ] && die "bdevperf (few bdev_ios, run $run) stalled: killed after $((T * 4 + 60)) s"
        die "bdevperf (few bdev_ios, run $run) failed ($rc)"
    fi
    total=$(tr '\r' '\n' <"$out" | grep -aE '^ *Total +: +[0-9]' | tail -1 | sed 's/.*Total *://')
    [ -n "$total" ] || { tail -30 "$out" >&2; die "bdevperf (few bdev_ios): no result"; }
    read -r iops mibs fails _ <<<"$total"
    awk -v f="$fails" 'BEGIN{exit !(f == 0)}' || die "bdevperf (few bdev_ios): $fails failed I/O per second"
    printf '%-14s %12s %10s\n' "4K (few ios)" "$iops" "$mibs"
    grep -a "went through the reserve thread" "$out" >&2 ||
        { tail -30 "$out" >&2; die "no device I/O went through the reserve thread: the shortage was not met"; }
    if grep -aE "member [0-9]+ \(.*\) failed|journal failed" "$out" >&2; then
        die "a shortage of bdev_ios failed a member or the journal"
    fi
    check_clean_exit "$out" bdevperf
done
kill "${busy[@]}" 2>/dev/null || true
wait "${busy[@]}" 2>/dev/null || true
log "test_bdevperf: OK"

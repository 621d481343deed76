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

# The DMA bounce path (what NVMe PCIe members get): JRAID_DMA_BOUNCE=all sends every member
# and journal I/O through spdk_dma_malloc'd bounce buffers; verify must still pass.
out=$WORK/bdevperf-bounce.log
JRAID_DMA_BOUNCE=all spdk_env "$BDEVPERF" --json "$cfg" -m 0x3 "${MEM_ARGS[@]}" -C -q 32 -o 12288 \
    -w verify -t "$T" -T r0 >"$out" 2>&1 || { tail -30 "$out" >&2; die "bdevperf with DMA bounce failed"; }
total=$(tr '\r' '\n' <"$out" | grep -aE '^ *Total +: +[0-9]' | tail -1 | sed 's/.*Total *://')
read -r iops mibs fails _ <<<"$total"
awk -v f="$fails" 'BEGIN{exit !(f == 0)}' || die "bdevperf with DMA bounce: $fails failed I/O per second"
grep -aq "went through DMA bounce buffers" "$out" || { tail -30 "$out" >&2; die "DMA bounce path not taken"; }
printf '%-14s %12s %10s\n' "12K (bounce)" "$iops" "$mibs"
log "test_bdevperf: OK"

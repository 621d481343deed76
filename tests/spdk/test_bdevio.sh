#!/usr/bin/env bash
# (a') SPDK's bdevio suite over jraid (4 malloc members + malloc journal): single and multi-block
# reads and writes, writes across the volume's end (must fail), vectored I/O at many offsets and
# lengths, compares, write-zeroes, reset and passthrough where the volume says it supports them.
# bdevio runs its suite on every unclaimed (leaf) bdev, here only r0, and exits with the number
# of failed test cases.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ -x "$BDEVIO" ] || die "bdevio not found at $BDEVIO (scripts/install_spdk.sh builds it)"
cfg=$WORK/bdevio.json
malloc_volume_config "$cfg"
out=$WORK/bdevio.log
spdk_env "$BDEVIO" --json "$cfg" --lcores "0@0,1@1,2@0" "${MEM_ARGS[@]}" >"$out" 2>&1 ||
    { tail -60 "$out" >&2; die "bdevio reported failures (exit $?)"; }
grep -aq "Suite: bdevio tests on: r0" "$out" || { tail -40 "$out" >&2; die "bdevio did not test r0"; }
# CUnit's summary: "tests  N  N  N  0  n/a" (type, total, ran, passed, failed, inactive).
summary=$(grep -aE '^ +tests +[0-9]' "$out" | tail -1)
read -r _ total ran passed failed _ <<<"$summary"
[ "${failed:-1}" = 0 ] && [ "${ran:-0}" -gt 0 ] || { tail -60 "$out" >&2; die "bdevio: $summary"; }
grep -aE '^ +(suites|tests|asserts) ' "$out" >&2
check_clean_exit "$out" bdevio
log "test_bdevio: OK ($passed of $total test cases passed on r0)"

#!/usr/bin/env bash
# Reads with no data buffer (iov_base NULL, as SPDK's iSCSI target and zero-copy callers send
# them): the module takes a buffer from SPDK's iobuf pool. One larger than SPDK's largest I/O
# buffer (1 MiB here, above iobuf's 132 KiB default) must complete FAILED: answered NOMEM, the
# bdev layer would retry it forever and the read would never complete. Reads that fit, before
# and after it, succeed. nobuf_read.c is built here against the SPDK that pkg-config finds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

bin=$WORK/nobuf_read
# shellcheck disable=SC2046
cc -O1 -Wall -Werror -o "$bin" "$here/nobuf_read.c" $(pkg-config --cflags spdk_event spdk_bdev) \
    -Wl,--no-as-needed $(pkg-config --libs spdk_event spdk_event_bdev spdk_bdev_malloc spdk_env_dpdk) \
    -Wl,--as-needed $(pkg-config --libs --static spdk_syslibs) ||
    die "cannot build nobuf_read.c against $SPDK_LIBDIR"

cfg=$WORK/nobuf.json
malloc_volume_config "$cfg"
out=$WORK/nobuf.log
# A read the module answers with NOMEM never completes: the timeout turns that into a failure.
timeout 60 env LD_LIBRARY_PATH="$SPDK_LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" LD_PRELOAD="$JRAID_LIB" \
    "$bin" --json "$cfg" -m 0x1 "${MEM_ARGS[@]}" -- r0 4096 65536 131072 1048576 8192 >"$out" 2>&1 ||
    { tail -30 "$out" >&2; die "nobuf_read did not complete every read"; }
got=$(grep -a '^read ' "$out" | tr '\n' ';')
want="read 4096: success;read 65536: success;read 131072: success;read 1048576: failed;read 8192: success;"
[ "$got" = "$want" ] || { tail -30 "$out" >&2; die "nobuf_read: got '$got', want '$want'"; }
grep -aq "read without a buffer is larger than SPDK's largest I/O buffer" "$out" ||
    { tail -30 "$out" >&2; die "the oversize read was not logged"; }
check_clean_exit "$out" nobuf_read
log "test_nobuf_read: OK (reads with no buffer: 4 KiB..128 KiB served, 1 MiB failed, not retried forever)"

#!/usr/bin/env bash
# SPDK integration tests of the jraid bdev module. CI runs this when `pkg-config --exists
# spdk_bdev` (PKG_CONFIG_PATH pointing at an SPDK built --with-shared).
#
#   tests/spdk/run.sh [test ...]      tests: bdevperf bdevio rpc_errors crash fio nvmf member_failure rebuild scrub journal_loss journal_devices journal_on_members delete_busy faults assembly nobuf_read online_recovery init (default: all)
#
# Environment: SPDK_DIR (default: derived from pkg-config's libdir), SPDK_TGT, BDEVPERF,
# JRAID_LIB (default: target/release/libjraid.so, built here unless set), WORK (scratch dir;
# default a temp dir, removed after a run where every test passed),
# T (bdevperf seconds per run), FIO (fio binary), LOOPS (fio write+verify
# passes). Hugepages are used when at least 512 are reserved
# (echo 1024 > /proc/sys/vm/nr_hugepages), ordinary memory (--no-huge) otherwise or with NO_HUGE=1.
set -euo pipefail
cd "$(dirname "$0")/../.."
pkg-config --exists spdk_bdev || {
    echo "run.sh: SPDK not found by pkg-config: install it with scripts/install_spdk.sh and set" >&2
    echo "        PKG_CONFIG_PATH=/opt/jraid-spdk/v26.01/spdk/build/lib/pkgconfig" >&2
    exit 1
}
if [ -z "${JRAID_LIB:-}" ]; then
    cargo build --release --features spdk --lib
    JRAID_LIB=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')/release/libjraid.so
    export JRAID_LIB
fi
# One scratch dir for the whole run: removed when every test passed, kept (and named) when one
# failed. A WORK given by the caller is left as it is.
if [ -z "${WORK:-}" ]; then
    WORK=$(mktemp -d /tmp/jraid-spdk.XXXXXX)
    own_work=1
fi
export WORK
trap 'rc=$?; if [ $rc -ne 0 ]; then echo "run.sh: logs and images kept in $WORK" >&2; elif [ "${own_work:-0}" = 1 ]; then rm -rf "$WORK"; fi' EXIT
tests=("$@")
[ ${#tests[@]} -gt 0 ] || tests=(bdevperf bdevio rpc_errors crash fio nvmf member_failure rebuild scrub journal_loss journal_devices journal_on_members delete_busy faults assembly nobuf_read online_recovery init)
for t in "${tests[@]}"; do
    echo "=== $t"
    bash "tests/spdk/test_$t.sh"
done
echo "=== all SPDK tests passed"

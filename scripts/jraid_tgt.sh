#!/usr/bin/env bash
# Start spdk_tgt with the jraid bdev module preloaded.
#
#   scripts/jraid_tgt.sh [-c config.json] [-r rpc.sock] [-m cpumask] [-s mem_mb] [--huge] [-- extra spdk_tgt args]
#
# SPDK is found through pkg-config (PKG_CONFIG_PATH) or SPDK_DIR (default /opt/jraid-spdk/v26.01/spdk, where scripts/install_spdk.sh puts it); the module
# through JRAID_LIB (default target/release/libjraid.so; build it with
# `cargo build --release --features spdk`). Without --huge the target runs with --no-huge and
# -s mem_mb (default 1024) MiB of ordinary memory; with --huge it uses the hugepages already
# reserved (echo 1024 > /proc/sys/vm/nr_hugepages).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
SPDK_DIR=${SPDK_DIR:-/opt/jraid-spdk/v26.01/spdk}
export PKG_CONFIG_PATH=${PKG_CONFIG_PATH:-$SPDK_DIR/build/lib/pkgconfig}
libdir=$(pkg-config --libs-only-L spdk_bdev 2>/dev/null | sed -n 's/^ *-L\([^ ]*\).*/\1/p')
libdir=${libdir:-$SPDK_DIR/build/lib}
SPDK_TGT=${SPDK_TGT:-$SPDK_DIR/build/bin/spdk_tgt}
JRAID_LIB=${JRAID_LIB:-$here/target/release/libjraid.so}

config="" sock=/var/tmp/spdk.sock mask=0x3 mem=1024 huge=0
while [ $# -gt 0 ]; do
    case "$1" in
        -c) config=$2; shift 2 ;;
        -r) sock=$2; shift 2 ;;
        -m) mask=$2; shift 2 ;;
        -s) mem=$2; shift 2 ;;
        --huge) huge=1; shift ;;
        --) shift; break ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "jraid_tgt.sh: unknown option $1" >&2; exit 2 ;;
    esac
done
[ -f "$JRAID_LIB" ] || { echo "jraid_tgt.sh: $JRAID_LIB not found (cargo build --release --features spdk)" >&2; exit 1; }
[ -x "$SPDK_TGT" ] || { echo "jraid_tgt.sh: spdk_tgt not found at $SPDK_TGT (set SPDK_DIR or SPDK_TGT)" >&2; exit 1; }

args=(-m "$mask" -r "$sock")
[ -n "$config" ] && args+=(--json "$config")
if [ "$huge" = 1 ]; then args+=(-s "$mem"); else args+=(--no-huge -s "$mem"); fi

# LD_PRELOAD goes on the SPDK process itself (exec), never on a wrapper.
exec env LD_LIBRARY_PATH="$libdir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}" LD_PRELOAD="$JRAID_LIB" \
    "$SPDK_TGT" "${args[@]}" "$@"

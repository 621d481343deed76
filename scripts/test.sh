#!/usr/bin/env bash
# Every test jraid has: the engine, journal, simulator and io_uring tests (cargo test), the loom
# models, then the SPDK bdev module's integration tests (tests/spdk/run.sh: bdevperf, bdevio, fio,
# NVMe-oF/TCP, crash, failure, rebuild, scrub, journal loss) against the supported SPDK, which
# scripts/install_spdk.sh builds first when pkg-config finds none (root, a few minutes once), then
# all of them again on SPDK's debug build (asserts on).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf '\n=== %s\n' "$*"; }

say "cargo test"
cargo test
say "loom"
RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=target/loom cargo test --release --lib loom
say "SPDK"
# shellcheck source=scripts/spdk_env.sh
source scripts/spdk_env.sh
say "SPDK integration tests"
tests/spdk/run.sh

# Every SPDK test once more on SPDK's debug build, whose asserts catch what a release build does
# silently (a bdev channel put or a descriptor closed with I/O still in flight on it, a bdev_io
# completed on the wrong thread).
say "SPDK integration tests on SPDK --enable-debug"
debug_version=${JRAID_SPDK_VERSION:-v26.01}
scripts/install_spdk.sh --version "$debug_version" --debug
PKG_CONFIG_PATH=/opt/jraid-spdk/$debug_version-debug/spdk/build/lib/pkgconfig \
    CARGO_TARGET_DIR=target/spdk-debug JRAID_LIB= tests/spdk/run.sh

# Sourced by .ci/run and scripts/test.sh: make pkg-config find an SPDK for `--features spdk`.
# An SPDK pkg-config already finds (PKG_CONFIG_PATH) is used as it is; otherwise
# scripts/install_spdk.sh builds the supported release (JRAID_SPDK_VERSION, default v26.01) under
# /opt/jraid-spdk/<version> (a second run finds its stamp and returns in seconds) and
# PKG_CONFIG_PATH is pointed at it. Also installs libclang-dev, which bindgen needs.
jraid_root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if ! pkg-config --exists spdk_bdev 2>/dev/null; then
    jraid_spdk_version=${JRAID_SPDK_VERSION:-v26.01}
    "$jraid_root/scripts/install_spdk.sh" --version "$jraid_spdk_version"
    export PKG_CONFIG_PATH=/opt/jraid-spdk/$jraid_spdk_version/spdk/build/lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}
fi
pkg-config --exists spdk_bdev || { echo "spdk_env.sh: pkg-config finds no spdk_bdev" >&2; return 1; }
echo "SPDK found by pkg-config: $(pkg-config --libs-only-L spdk_bdev)"
if ! dpkg-query -W -f='${Status}' libclang-dev 2>/dev/null | grep -q 'install ok installed'; then
    echo "installing libclang-dev (bindgen for spdk-sys)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libclang-dev >/dev/null ||
        { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q libclang-dev >/dev/null; }
fi

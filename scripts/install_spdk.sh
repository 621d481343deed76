#!/usr/bin/env bash
# Build and install the SPDK release jraid supports, with everything jraid's tests and benchmarks use.
#
#   scripts/install_spdk.sh [--version V] [--prefix DIR] [--source DIR|TARBALL] [--jobs N] [--force]
#                           [--debug]
#
# V: v26.01 (default, SPDK's LTS release) or v26.05. DIR: default /opt/jraid-spdk/<V>, or
# /opt/jraid-spdk/<V>-debug with --debug (SPDK --enable-debug: its asserts on, which the fault
# tests use to catch lifetime errors such as a channel put with I/O in flight).
# What it builds: SPDK --with-shared against Debian's libdpdk-dev, with raid5f, ISA-L, bdevperf,
# bdevio and SPDK's fio plugin (against fio's Debian source, built beside it). Layout under DIR:
#
#   DIR/spdk/                 the SPDK tree, built in place (apps in build/bin, build/examples,
#                             rpc.py in scripts/, the fio plugin in build/fio/spdk_bdev)
#   DIR/spdk/build/lib/pkgconfig   what PKG_CONFIG_PATH must name for `cargo build --features spdk`
#   DIR/fio/fio               the fio binary that SPDK's fio plugin was built against
#   DIR/install.log           the full log;  DIR/.jraid-spdk-stamp  what was built (version, flags, source)
#
# Where the sources come from, in this order: --source (an SPDK tree or a tarball of one); else
# ../shared/spdk/spdk-<V>.tar.gz and ../shared/spdk/isa-l-v2.31.1.tar.gz beside the repository
# (or in $JRAID_SPDK_SOURCES); else `git clone --branch <V> --recurse-submodules` of SPDK's public
# repository. A second run with the same version, flags and source finds the stamp and returns.
# Needs root (apt-get) unless every Debian package below is already installed.
set -Eeuo pipefail

VERSION=v26.01
PREFIX=
SOURCE=
JOBS=$(nproc 2>/dev/null || echo 2)
FORCE=0
DEBUG=0
ISAL_VERSION=v2.31.1
# The build-tree patches below, by name: a new one changes the stamp and forces a rebuild.
PATCHES="dpdk-22.11-minor env-dpdk-libs bdevio-lcores isal-crypto-placeholder isal-beside-libspdk"
SPDK_GIT=${SPDK_GIT:-https://github.com/spdk/spdk.git}

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//'; }
while [ $# -gt 0 ]; do
    case "$1" in
        --version) VERSION=$2; shift 2 ;;
        --version=*) VERSION=${1#*=}; shift ;;
        --prefix) PREFIX=$2; shift 2 ;;
        --prefix=*) PREFIX=${1#*=}; shift ;;
        --source) SOURCE=$2; shift 2 ;;
        --source=*) SOURCE=${1#*=}; shift ;;
        --jobs|-j) JOBS=$2; shift 2 ;;
        --force) FORCE=1; shift ;;
        --debug) DEBUG=1; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "install_spdk.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
    esac
done
case "$VERSION" in v*) ;; *) VERSION=v$VERSION ;; esac
case "$VERSION" in
    v26.01|v26.05) ;;
    *) echo "install_spdk.sh: warning: $VERSION is not a release jraid is tested with (v26.01, v26.05)" >&2 ;;
esac
if [ "$DEBUG" = 1 ]; then PREFIX=${PREFIX:-/opt/jraid-spdk/$VERSION-debug}; else PREFIX=${PREFIX:-/opt/jraid-spdk/$VERSION}; fi
repo=$(cd "$(dirname "$0")/.." && pwd)
SHARED=${JRAID_SPDK_SOURCES:-$repo/../shared/spdk}

# The configuration every jraid test and benchmark relies on.
CONFIGURE_FLAGS=(--with-shared --with-raid5f --without-crypto --with-dpdk --disable-unit-tests
    --without-vhost --without-virtio --without-xnvme --without-usdt)
[ "$DEBUG" = 1 ] && CONFIGURE_FLAGS+=(--enable-debug)
# Debian packages: SPDK's build and runtime needs, ISA-L's autotools and nasm, fio's source.
PACKAGES=(gcc g++ make pkgconf python3 libdpdk-dev libnuma-dev uuid-dev libssl-dev libaio-dev
    libkeyutils-dev libncurses-dev libjson-c-dev libfuse3-dev zlib1g-dev
    libcunit1-dev nasm autoconf automake libtool help2man dpkg-dev ca-certificates
    python3-jinja2 python3-tabulate)

mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
LOG=$PREFIX/install.log
STAMP=$PREFIX/.jraid-spdk-stamp
SPDK=$PREFIX/spdk
FIO_DIR=$PREFIX/fio
t0=$(date +%s)
phase_name=

phase() {
    phase_name=$1
    printf '[install_spdk %4ss] %s\n' "$(($(date +%s) - t0))" "$1"
    printf '\n===== %s: %s\n' "$(date +%T)" "$1" >>"$LOG"
}
fail() {
    local rc=$?
    trap - ERR
    # In a ( subshell ): leave the report to the parent, which sees the subshell fail.
    [ "$BASH_SUBSHELL" -gt 0 ] && exit "$rc"
    echo "install_spdk.sh: FAILED in phase '$phase_name' (exit $rc); last lines of $LOG:" >&2
    tail -n 40 "$LOG" >&2 || true
    exit "$rc"
}
trap fail ERR
# run CMD...: log it and its output to the log file.
run() { echo "+ $*" >>"$LOG"; "$@" >>"$LOG" 2>&1; }
die() { echo "install_spdk.sh: $*" | tee -a "$LOG" >&2; exit 1; }

# What a build is identified by: version, flags and where its source came from.
source_id() {
    if [ -n "$SOURCE" ]; then
        if [ -f "$SOURCE" ]; then echo "tarball $(cd "$(dirname "$SOURCE")" && pwd)/$(basename "$SOURCE") $(sha256sum <"$SOURCE" | cut -c1-16)"
        else echo "tree $(cd "$SOURCE" && pwd)"; fi
    elif [ -f "$SHARED/spdk-$VERSION.tar.gz" ]; then
        echo "tarball spdk-$VERSION.tar.gz $(sha256sum <"$SHARED/spdk-$VERSION.tar.gz" | cut -c1-16)"
    else
        echo "git $SPDK_GIT $VERSION"
    fi
}
stamp_text() {
    printf 'version=%s\nflags=%s\nsource=%s\nisal=%s\nfio=debian-source\npatches=%s\n' \
        "$VERSION" "${CONFIGURE_FLAGS[*]}" "$(source_id)" "$ISAL_VERSION" "$PATCHES"
}

built_ok() {
    [ -f "$SPDK/build/lib/pkgconfig/spdk_bdev.pc" ] && [ -x "$SPDK/build/bin/spdk_tgt" ] &&
        [ -x "$SPDK/build/examples/bdevperf" ] && [ -f "$SPDK/build/fio/spdk_bdev" ] &&
        [ -x "$FIO_DIR/fio" ] && [ -x "$SPDK/scripts/rpc.py" ] && [ -n "$(bdevio_path)" ]
}
bdevio_path() {
    local p
    for p in "$SPDK/test/bdev/bdevio/bdevio" "$SPDK/build/test/bdev/bdevio/bdevio"; do
        [ -x "$p" ] && { echo "$p"; return; }
    done
}

missing_packages() {
    local p miss=()
    for p in "${PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || miss+=("$p")
    done
    echo "${miss[@]:-}"
}

: >>"$LOG"
echo "install_spdk: SPDK $VERSION into $PREFIX (log: $LOG)"

# ---------------------------------------------------------------------------------------------
phase "dependencies (Debian packages)"
miss=$(missing_packages)
if [ -n "$miss" ]; then
    [ "$(id -u)" = 0 ] || die "not root and these Debian packages are missing: $miss"
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    run apt-get install -y -q $miss || { run apt-get update -q && run apt-get install -y -q $miss; }
fi

if [ "$FORCE" = 0 ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_text)" ] && built_ok; then
    phase "already built (stamp $STAMP matches); nothing to do"
    echo "export PKG_CONFIG_PATH=$SPDK/build/lib/pkgconfig"
    exit 0
fi
rm -f "$STAMP"

# ---------------------------------------------------------------------------------------------
phase "sources: $(source_id)"
rm -rf "$SPDK.new"
mkdir -p "$SPDK.new"
if [ -n "$SOURCE" ]; then
    if [ -f "$SOURCE" ]; then
        run tar -xzf "$SOURCE" -C "$SPDK.new" --strip-components=1
    elif [ -d "$SOURCE" ]; then
        run cp -a "$SOURCE/." "$SPDK.new/"
        run make -C "$SPDK.new" clean || true
    else
        die "--source $SOURCE is neither a file nor a directory"
    fi
elif [ -f "$SHARED/spdk-$VERSION.tar.gz" ]; then
    run tar -xzf "$SHARED/spdk-$VERSION.tar.gz" -C "$SPDK.new" --strip-components=1
else
    rmdir "$SPDK.new"
    echo "no $SHARED/spdk-$VERSION.tar.gz: cloning SPDK $VERSION from $SPDK_GIT (needs internet access)" | tee -a "$LOG"
    run git clone --depth 1 --branch "$VERSION" --recurse-submodules --shallow-submodules "$SPDK_GIT" "$SPDK.new"
fi
[ -f "$SPDK.new/configure" ] || die "the SPDK source has no configure script"
if [ ! -f "$SPDK.new/isa-l/autogen.sh" ]; then
    isal_tar=$SHARED/isa-l-$ISAL_VERSION.tar.gz
    if [ -f "$isal_tar" ]; then
        rm -rf "$SPDK.new/isa-l" && mkdir -p "$SPDK.new/isa-l"
        run tar -xzf "$isal_tar" -C "$SPDK.new/isa-l" --strip-components=1
    else
        rm -rf "$SPDK.new/isa-l"
        run git clone --depth 1 --branch "$ISAL_VERSION" https://github.com/intel/isa-l.git "$SPDK.new/isa-l"
    fi
fi
rm -rf "$SPDK"
mv "$SPDK.new" "$SPDK"

# ---------------------------------------------------------------------------------------------
phase "patches for Debian's DPDK 22.11 (build tree only)"
# 1. pci_dpdk.c refuses 22.11 minor releases above 4; its 22.11 ABI table works for them.
pci=$SPDK/lib/env_dpdk/pci_dpdk.c
if grep -q 'if (minor > 4)' "$pci"; then
    sed -i '/year == 22 && month == 11/,/fn_table_2211;/ s/if (minor > 4)/if (0 \&\& minor > 4)/' "$pci"
    grep -q 'if (minor > 4)' "$pci" && die "could not relax the DPDK 22.11 minor-release check in $pci"
    echo "relaxed the DPDK 22.11 minor-release check" >>"$LOG"
fi
# 2. env.mk links rte_log and rte_argparse; Debian's DPDK 22.11 has neither (rte_eal holds them).
envmk=$SPDK/lib/env_dpdk/env.mk
for lib in rte_log rte_argparse; do
    if ! pkg-config --libs libdpdk 2>/dev/null | grep -qw -- "-l$lib" &&
        ! ls /usr/lib/*/lib"$lib".so >/dev/null 2>&1; then
        sed -i "/^DPDK_LIB_LIST = /s/ $lib\b//" "$envmk"
        echo "dropped $lib from DPDK_LIB_LIST" >>"$LOG"
    fi
done
# 3. bdevio hard-codes reactor_mask 0x7 (it needs three reactors), which then forbids --lcores:
#    on a 2-CPU machine it cannot start. Keep 0x7 as the default, but only when neither -m nor
#    --lcores is given, so that `bdevio --lcores 0@0,1@1,2@0` runs three reactors on two CPUs.
bdevio=$SPDK/test/bdev/bdevio/bdevio.c
if grep -q 'opts.reactor_mask = "0x7";' "$bdevio"; then
    sed -i -e '/opts.reactor_mask = "0x7";/d' \
        -e 's/^\(\s*\)rc = spdk_app_start(&opts, test_main, NULL);/\1if (opts.reactor_mask == NULL \&\& opts.lcore_map == NULL) {\n\1\topts.reactor_mask = "0x7";\n\1}\n&/' "$bdevio"
    grep -q 'opts.lcore_map == NULL' "$bdevio" || die "could not patch bdevio's core mask in $bdevio"
    echo "bdevio: 0x7 only as the default core mask" >>"$LOG"
fi
# 4. configure insists on the isa-l-crypto submodule even --without-crypto; give it an empty one
#    and turn it off after configure (below).
if [ ! -f "$SPDK/isa-l-crypto/autogen.sh" ]; then
    mkdir -p "$SPDK/isa-l-crypto"
    printf '#!/bin/sh\n# placeholder: jraid builds SPDK --without-crypto\nexit 0\n' >"$SPDK/isa-l-crypto/autogen.sh"
    cp "$SPDK/isa-l-crypto/autogen.sh" "$SPDK/isa-l-crypto/configure"
    chmod +x "$SPDK/isa-l-crypto/autogen.sh" "$SPDK/isa-l-crypto/configure"
fi

# ---------------------------------------------------------------------------------------------
phase "fio source (Debian) and fio build"
if [ ! -x "$FIO_DIR/fio" ]; then
    src_list=/etc/apt/sources.list.d/jraid-deb-src.sources
    if ! apt-get source --print-uris fio >/dev/null 2>&1; then
        [ "$(id -u)" = 0 ] || die "apt has no deb-src entry for fio and this is not root"
        if [ -f /etc/apt/sources.list.d/debian.sources ]; then
            sed 's/^Types: deb$/Types: deb-src/' /etc/apt/sources.list.d/debian.sources >"$src_list"
        else
            codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
            printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
                "$codename" >"$src_list"
        fi
        run apt-get update -q
    fi
    rm -rf "$FIO_DIR" "$PREFIX/fio-src"
    mkdir -p "$PREFIX/fio-src"
    (cd "$PREFIX/fio-src" && run apt-get source --download-only fio)
    dsc=$(ls "$PREFIX"/fio-src/fio_*.dsc | head -1)
    (cd "$PREFIX/fio-src" && run dpkg-source --no-check -x "$dsc" "$FIO_DIR")
    rm -rf "$PREFIX/fio-src"
    (cd "$FIO_DIR" && run ./configure && run make -j"$JOBS" fio)
fi
[ -x "$FIO_DIR/fio" ] || die "fio did not build"

# ---------------------------------------------------------------------------------------------
phase "configure ${CONFIGURE_FLAGS[*]} --with-fio=$FIO_DIR"
(cd "$SPDK" && run ./configure "${CONFIGURE_FLAGS[@]}" --with-fio="$FIO_DIR")
cfg=$SPDK/mk/config.mk
sed -i -e 's/^CONFIG_IPSEC_MB?*=.*/CONFIG_IPSEC_MB=n/' -e 's/^CONFIG_ISAL_CRYPTO?*=.*/CONFIG_ISAL_CRYPTO=n/' "$cfg"
for want in CONFIG_SHARED=y CONFIG_RAID5F=y CONFIG_FIO_PLUGIN=y CONFIG_ISAL=y CONFIG_IPSEC_MB=n CONFIG_ISAL_CRYPTO=n; do
    grep -qE "^${want%%=*}\??=${want#*=}$" "$cfg" || die "configure did not give $want (see $cfg)"
done

# ---------------------------------------------------------------------------------------------
phase "build (make -j$JOBS; several minutes)"
# SPDK's code generators (v26.05: scripts/genrpc.py) import jinja2 and tabulate: run them with
# Debian's python3, which has both, whatever python3 comes first on PATH.
mkdir -p "$PREFIX/bin"
ln -sfn /usr/bin/python3 "$PREFIX/bin/python3"
(cd "$SPDK" && PATH=$PREFIX/bin:$PATH run make -j"$JOBS")

# ---------------------------------------------------------------------------------------------
phase "finish: SPDK's ISA-L beside libspdk_*.so, checks, stamp"
# A module linked with -lisal whose rpath names build/lib must load SPDK's ISA-L, not Debian's
# older libisal2 (same soname; it lacks symbols SPDK's libraries use).
for so in "$SPDK"/isa-l/.libs/libisal.so*; do
    [ -e "$so" ] && ln -sfn "$so" "$SPDK/build/lib/$(basename "$so")"
done
built_ok || die "build finished but something is missing (spdk_tgt, bdevperf, bdevio, fio plugin, fio, pkg-config files)"
PKG_CONFIG_PATH=$SPDK/build/lib/pkgconfig pkg-config --exists spdk_bdev || die "pkg-config cannot use $SPDK/build/lib/pkgconfig"
ver=$(LD_LIBRARY_PATH=$SPDK/build/lib "$SPDK/build/bin/spdk_tgt" --version 2>/dev/null | head -1 || true)
echo "spdk_tgt --version: ${ver:-?}" >>"$LOG"
stamp_text >"$STAMP"
phase "done: SPDK $VERSION${ver:+ ($ver)} in $SPDK"
echo "export PKG_CONFIG_PATH=$SPDK/build/lib/pkgconfig"

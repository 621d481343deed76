# shellcheck shell=bash disable=SC2154,SC2034
# (root, work, log and die come from the sourcing script; what is set here is read by it)
# Shared by the bench scripts (sourced): stopping the bdevperf a script started, and the memory
# arguments for an SPDK app (hugepages when they can be had, else --no-huge). The sourcing script
# defines log() and sets $work (a temp dir removed at exit) before calling bench_setup_cleanup.

BP_PID=""
hp_orig=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
hp_changed=0
hp_mounted=""

# Stop the bdevperf in $BP_PID (SIGINT, then SIGKILL after 10 s).
bench_stop_bdevperf() {
    [ -n "$BP_PID" ] || return 0
    kill -INT "$BP_PID" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$BP_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$BP_PID" 2>/dev/null || true
    wait "$BP_PID" 2>/dev/null || true
    BP_PID=""
}

# At exit: the bdevperf, the hugepage reservation as it was, the temp dir.
bench_cleanup() {
    bench_stop_bdevperf
    if [ "$hp_changed" = 1 ]; then
        echo "$hp_orig" >/proc/sys/vm/nr_hugepages 2>/dev/null || true
        log "nr_hugepages restored to $hp_orig"
    fi
    if [ -n "$hp_mounted" ]; then
        umount "$hp_mounted" 2>/dev/null && log "hugetlbfs at $hp_mounted unmounted"
    fi
    rm -rf "$work"
}

bench_setup_cleanup() {
    trap bench_cleanup EXIT
    trap 'exit 130' INT TERM
}

# bench_mem_args MB: sets MEM_ARGS for an app needing MB of DPDK memory. Hugepages when a
# hugetlbfs is mounted (DPDK needs the mount; reserved pages alone do not do; as root one is
# mounted at /dev/hugepages when none is, and unmounted at exit) and enough are free, raising
# nr_hugepages when short (restored at exit); else --no-huge (also with NO_HUGE=1).
bench_mem_args() {
    local mb=$1 hp_size_kb need free total
    MEM_ARGS=(--no-huge -s "$mb")
    if [ "${NO_HUGE:-0}" = 1 ]; then
        return 0
    fi
    if ! awk '$3 == "hugetlbfs" {found = 1} END {exit !found}' /proc/mounts 2>/dev/null; then
        # A fresh machine mounts none; as root, mount one for the run (unmounted at exit), as
        # an SPDK user would: --no-huge puts every bdev_io and DMA buffer on 4 KiB pages.
        if [ "$(id -u)" = 0 ] && mkdir -p /dev/hugepages &&
            mount -t hugetlbfs nodev /dev/hugepages 2>/dev/null; then
            hp_mounted=/dev/hugepages
            log "hugetlbfs mounted at $hp_mounted (unmounted at exit)"
        else
            log "no hugetlbfs mounted (and none could be): --no-huge"
            return 0
        fi
    fi
    hp_size_kb=$(awk '/Hugepagesize/ {print $2}' /proc/meminfo 2>/dev/null || echo 2048)
    need=$(((mb * 1024 + hp_size_kb - 1) / hp_size_kb))
    free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
    if [ "$free" -lt "$need" ]; then
        total=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null || echo 0)
        if echo $((total + need - free)) >/proc/sys/vm/nr_hugepages 2>/dev/null; then
            hp_changed=1
            log "nr_hugepages $total -> $(cat /proc/sys/vm/nr_hugepages) (restored to $hp_orig at exit)"
        fi
        free=$(awk '/HugePages_Free/ {print $2}' /proc/meminfo 2>/dev/null || echo 0)
    fi
    if [ "$free" -ge "$need" ]; then
        MEM_ARGS=(-s "$mb")
    else
        log "only $free free hugepages ($need needed): --no-huge"
    fi
}

# SPDK (SPDK_DIR, else pkg-config's spdk_bdev, else /opt/jraid-spdk/v26.01/spdk), bdevperf and the
# module: sets SPDK_DIR, PKG_CONFIG_PATH, SPDK_LIBDIR, BDEVPERF and JRAID_LIB (default
# target/release/libjraid.so, built when missing).
bench_find_spdk() {
    local libdir
    if [ -z "${SPDK_DIR:-}" ]; then
        export PKG_CONFIG_PATH=${PKG_CONFIG_PATH:-/opt/jraid-spdk/v26.01/spdk/build/lib/pkgconfig}
        libdir=$(pkg-config --libs-only-L spdk_bdev 2>/dev/null | sed -n 's/^ *-L\([^ ]*\).*/\1/p' || true)
        if [ -n "$libdir" ]; then SPDK_DIR=$(cd "$libdir/../.." && pwd); else SPDK_DIR=/opt/jraid-spdk/v26.01/spdk; fi
    fi
    export PKG_CONFIG_PATH=${PKG_CONFIG_PATH:-$SPDK_DIR/build/lib/pkgconfig}
    SPDK_LIBDIR=${SPDK_LIBDIR:-$SPDK_DIR/build/lib}
    BDEVPERF=${BDEVPERF:-$SPDK_DIR/build/examples/bdevperf}
    JRAID_LIB=${JRAID_LIB:-$root/target/release/libjraid.so}
    [ -x "$BDEVPERF" ] || die "bdevperf not found at $BDEVPERF (set SPDK_DIR or BDEVPERF)"
    if [ ! -f "$JRAID_LIB" ]; then
        log "building $JRAID_LIB"
        (cd "$root" && cargo build --release --features spdk --lib) || die "cargo build failed"
        [ -f "$JRAID_LIB" ] || die "$JRAID_LIB still missing (CARGO_TARGET_DIR set? then set JRAID_LIB)"
    fi
}

# bench_null_volume_config FILE BYTES [EXTRA] [DELAY_US] [JOURNAL_DELAY_US]: a bdevperf JSON config with four null
# members m0..m3 of BYTES each (4 KiB blocks), a malloc journal jl of JOURNAL_MB MiB (default 8) and the jraid volume r0
# over them (strip 64 KiB); EXTRA is added to bdev_jraid_create's params (e.g. ',"journal":false').
# With DELAY_US > 0 each member is a bdev_delay over its null bdev (reads and writes DELAY_US on
# average, twice that at p99): a latency like a device's, and the CPU of null members. With
# JOURNAL_DELAY_US > 0 the journal is a bdev_delay over its malloc bdev likewise.
bench_null_volume_config() {
    local file=$1 bytes=$2 extra=${3:-} delay=${4:-0} jdelay=${5:-0} i
    local jblocks=$((${JOURNAL_MB:-8} * 256))
    {
        echo '{"subsystems":[{"subsystem":"bdev","config":['
        for i in 0 1 2 3; do
            if [ "$delay" -gt 0 ]; then
                echo "{\"method\":\"bdev_null_create\",\"params\":{\"name\":\"m${i}_n\",\"num_blocks\":$((bytes / 4096)),\"block_size\":4096}},"
                echo "{\"method\":\"bdev_delay_create\",\"params\":{\"base_bdev_name\":\"m${i}_n\",\"name\":\"m$i\",\"avg_read_latency\":$delay,\"p99_read_latency\":$((2 * delay)),\"avg_write_latency\":$delay,\"p99_write_latency\":$((2 * delay))}},"
            else
                echo "{\"method\":\"bdev_null_create\",\"params\":{\"name\":\"m$i\",\"num_blocks\":$((bytes / 4096)),\"block_size\":4096}},"
            fi
        done
        if [ "$jdelay" -gt 0 ]; then
            echo "{\"method\":\"bdev_malloc_create\",\"params\":{\"name\":\"jl_m\",\"num_blocks\":$jblocks,\"block_size\":4096}},"
            echo "{\"method\":\"bdev_delay_create\",\"params\":{\"base_bdev_name\":\"jl_m\",\"name\":\"jl\",\"avg_read_latency\":$jdelay,\"p99_read_latency\":$((2 * jdelay)),\"avg_write_latency\":$jdelay,\"p99_write_latency\":$((2 * jdelay))}},"
        else
            echo "{\"method\":\"bdev_malloc_create\",\"params\":{\"name\":\"jl\",\"num_blocks\":$jblocks,\"block_size\":4096}},"
        fi
        echo "{\"method\":\"bdev_jraid_create\",\"params\":{\"name\":\"r0\",\"strip_size_kb\":64,\"base_bdevs\":[\"m0\",\"m1\",\"m2\",\"m3\"],\"journal_bdev\":\"jl\",\"assume_clean\":true$extra}},"
        echo '{"method":"bdev_wait_for_examine"}'
        echo ']}]}'
    } >"$file"
}

# bench_cpu_stat N: the /proc/stat lines of cores 0..N-1 (the reactors of -m <first N cores>),
# ';'-separated. Two of them around a run give bench_steal what the hypervisor took.
bench_cpu_stat() {
    grep -E "^cpu($(seq -s'|' 0 $(($1 - 1)))) " /proc/stat | tr '\n' ';'
}

# bench_steal BEFORE AFTER: the share of those cores' time stolen between two bench_cpu_stat
# readings (the steal column over all columns up to it), e.g. 0.0412.
bench_steal() {
    awk -v a="$1" -v b="$2" 'BEGIN {
        n = split(a, x, ";"); split(b, y, ";"); st = 0; tot = 0
        for (i = 1; i <= n; i++) {
            if (x[i] == "") continue
            split(x[i], p, " "); split(y[i], q, " ")
            for (k = 2; k <= 9; k++) tot += q[k] - p[k]
            st += q[9] - p[9]
        }
        printf "%.4f\n", (tot > 0 ? st / tot : 0)
    }'
}

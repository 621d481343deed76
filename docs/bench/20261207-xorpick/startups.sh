#!/usr/bin/env bash
# N start-ups of each build (in turns): bdevperf 1 s of 4 KiB random writes at 64 MiB members;
# per start-up the IOPS, the ms from the reactor's start to the XOR log line (gap_ms) and that line.
set -euo pipefail
log() { echo "[$(date +%T)] $*" >&2; }
die() { echo "$*" >&2; exit 1; }
root=$(cd "$(dirname "$0")/../../.." && pwd)
N=$1; shift
work=$(mktemp -d /tmp/xorpick.XXXXXX)
. "$root/scripts/bench/common.sh"
bench_setup_cleanup
bench_find_spdk
bench_mem_args 512
bench_null_volume_config "$work/on.json" $((64<<20)) "" 0 0
for r in $(seq 1 "$N"); do
  for lib in "$@"; do
    env LD_LIBRARY_PATH="$SPDK_LIBDIR:$SPDK_DIR/dpdk/build/lib" LD_PRELOAD="$lib" \
      "$BDEVPERF" --json "$work/on.json" -m 0x1 "${MEM_ARGS[@]}" -q 128 -o 4096 -w randwrite -t ${T:-1} -T r0 > "$work/out" 2>&1
    iops=$(tr -d '\r' < "$work/out" | awk '$1 == "r0" && $2 == ":" {print $4; exit}')
    line=$(grep -o "XOR kernels.*" "$work/out" | head -1)
    gap=$(python3 -c "import re,sys,datetime as d
ts=[(d.datetime.strptime(m.group(1),\"%Y-%m-%d %H:%M:%S.%f\"),l) for l in open(sys.argv[1],errors=\"replace\") for m in [re.match(r\"\\[([0-9-]+ [0-9:.]+)\\]\",l)] if m]
r=[t for t,l in ts if \"Reactor started\" in l]; x=[t for t,l in ts if \"XOR kernels\" in l]
print(round((x[0]-max(r)).total_seconds()*1000,1) if r and x else \"n/a\")" "$work/out")
    line="gap_ms=$gap $line"
    echo "$r $(basename $lib) $iops $line"
  done
done

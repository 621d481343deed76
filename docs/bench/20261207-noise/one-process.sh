#!/usr/bin/env bash
# Four bdevperf processes in turn, each running six perform_tests of 3 s in a row (4 KiB random
# writes, QD 128, one reactor) over a jraid volume of four 1 TiB null members, journal on; prints
# each process's IOPS. Run from the repository root; JRAID_LIB names the build.
set -euo pipefail
root=$(cd "$(dirname "$0")/../../.." && pwd)
log() { echo "[$(date +%T)] $*" >&2; }
die() { echo "$*" >&2; exit 1; }
work=$(mktemp -d /tmp/stab.XXXX)
. $root/scripts/bench/common.sh
bench_setup_cleanup
JRAID_LIB=${JRAID_LIB:-target/release/libjraid.so}
bench_find_spdk
bench_mem_args 512
bench_null_volume_config $work/c.json $((1<<40)) "${EXTRA:-}"
for p in 1 2 3 4; do
  sock=$work/bp.sock; rm -f $sock
  env LD_LIBRARY_PATH="$SPDK_LIBDIR:$SPDK_DIR/dpdk/build/lib" LD_PRELOAD=$JRAID_LIB "$BDEVPERF" --json $work/c.json -m 0x1 "${MEM_ARGS[@]}" -r $sock -z -q 128 -o 4096 -w randwrite -t 3 -T r0 > $work/bp.log 2>&1 &
  BP_PID=$!
  for _ in $(seq 1 300); do [ -S $sock ] && python3 $root/scripts/bench/bdevperf_rpc.py $sock wait 1 2>/dev/null && break; sleep 0.1; done
  line="process $p:"
  for k in 1 2 3 4 5 6; do
    r=$(python3 $root/scripts/bench/bdevperf_rpc.py $sock perform_tests '{"workload_type":"randwrite","queue_depth":128,"io_size":"4096","time_in_sec":3}')
    line="$line $(python3 -c 'import json,sys; print("%.0fk" % (sum(x["iops"] for x in json.loads(sys.argv[1])["results"])/1000))' "$r")"
  done
  echo "$line"
  bench_stop_bdevperf
done

#!/usr/bin/env bash
# Journal loss and bdev_jraid_set_journal. bdevperf -z hosts r0 over AIO files and runs two
# jobs at once (-C: go on after failures): random writes on core 0, random reads on core 1.
#  (a) the journal bdev is deleted under that load: state "journal_failed"; a second run,
#      entirely after the loss, fails every write and no read;
#  (b) parity of stripes 3, 7, 11 is corrupted on a member file (what a crash with no journal
#      to tell could leave); bdev_jraid_scrub reports exactly them (the check sees damage);
#  (c) bad set_journal requests fail with clear errors and leave their bdevs unclaimed;
#      set_journal onto a fresh bdev runs a full resync (progress in get_bdevs), then attaches
#      it: online, journal "jn", a scrub is clean, writes succeed again, and another
#      set_journal is refused (the journal works);
#  (d) offline, parity is clean and the new journal's record is valid; a restart assembles r0
#      with the new journal (the members name it) and bdevperf verify passes;
#  (e) kill -9 under write load, then the journal file is lost and three parity strips are
#      corrupted: spdk_tgt holds r0 back (its journal is missing) and says so;
#      set_journal is refused while a member is missing; with every member there it assembles
#      r0 on a fresh journal after a full resync: online, scrub clean, offline check clean, and
#      the next restart assembles r0 with that journal;
#  (f) two volumes share a journal that is lost: set_journal gives the first a fresh journal
#      bdev, the second joins that (now running) journal with its own volume number; both
#      online on it, each with its own number;
#  (g) journal and a member lost together: set_journal is refused (no full resync without every
#      member); a rebuild onto a spare works without a journal; then set_journal succeeds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
source "$(dirname "$0")/bdevperf_rpc.sh"
trap 'bp_stop; stop_tgt' EXIT

T=${T:-3}
dir=$WORK/jloss
mkdir -p "$dir"
sock=$dir/bp.sock
for f in a0 a1 a2 a3; do rm -f "$dir/$f"; truncate -s 64M "$dir/$f"; done
for f in j1 jn; do rm -f "$dir/$f"; truncate -s 8M "$dir/$f"; done
rm -f "$dir/tiny"; truncate -s 64K "$dir/tiny"
aio() { aio_entries "$dir" "$@"; }
config() { bdev_config "$@"; }
create='{"method":"bdev_jraid_create","params":{"name":"r0","strip_size_kb":64,"base_bdevs":["a0","a1","a2","a3"],"journal_bdev":"j1"}}'
config "$dir/load.json" "$(aio a0 a1 a2 a3 j1 jn tiny),$create"
config "$dir/restart.json" "$(aio a0 a1 a2 a3 j1 jn)"
cat >"$dir/jobs.ini" <<INI
[global]
filename=r0
bs=16384
iodepth=16

[write]
rw=randwrite
cpumask=0x1

[read]
rw=randread
cpumask=0x2
INI

# perform N: one perform_tests run; prints "write_iops write_failed read_iops read_failed".
perform() {
    local out=$dir/perform-$1.out
    bp_perform "$sock" "$out"
    [ -n "${2:-}" ] && { sleep "$2"; "${@:3}" >/dev/null; }
    wait "$PERF_PID" || { cat "$out" >&2; die "perform_tests $1 failed"; }
    python3 - "$out" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
start = text.index("{")
res = json.JSONDecoder().raw_decode(text[start:])[0]["results"]
by = {r["workload"]: r for r in res}
w, r = by["randwrite"], by["randread"]
print(round(w["iops"]), w["io_failed"], round(r["iops"]), r["io_failed"])
PY
}

# wait_state EXPR VALUE [TRIES]: poll get_bdevs until EXPR (over v) prints VALUE.
wait_state() {
    for _ in $(seq 1 "${3:-300}"); do
        [ "$(jget "$sock" "$1")" = "$2" ] && return 0
        sleep 0.1
    done
    die "$1 never became $2: $(jget "$sock" "$1")"
}

# rpc_err METHOD PARAMS WHAT: the call must fail; prints the error message.
rpc_err() {
    local out
    out=$(rpc "$sock" "$1" "$2")
    python3 -c 'import json,sys; r=json.loads(sys.argv[1]); e=r.get("error")
assert e, "expected an error: %s" % r
print(e["code"], e["message"])' "$out" || die "$3: $out"
}

bp_start "$sock" "$dir/bp.log" "$dir/load.json" -f -j "$dir/jobs.ini" -t "$T"
[ "$(jget "$sock" 'v["state"]')" = online ] || die "r0 not online at start"

log "(a) journal bdev j1 deleted under write+read load"
read -r wi wf ri rf <<<"$(perform 1 1.5 rpc_ok "$sock" bdev_aio_delete '{"name":"j1"}')"
log "run during the loss: writes $wi IOPS ($wf failed), reads $ri IOPS ($rf failed)"
[ "$rf" = 0 ] || die "reads failed after the journal loss"
wait_state 'v["state"]' journal_failed
[ "$(jget "$sock" 'v["journal"]["present"]')" = False ] || die "journal still present"
[ "$(jget "$sock" 'v["journal"]["devices"][0]["state"]')" = lost ] || die "journal device not shown lost"
read -r wi wf ri rf <<<"$(perform 2)"
log "run after the loss: writes $wi IOPS ($wf failed), reads $ri IOPS ($rf failed)"
[ "$wf" -gt 0 ] || die "writes did not fail without a journal"
[ "$rf" = 0 ] && [ "$ri" -gt 0 ] || die "reads did not go on without a journal"

log "(b) parity of stripes 3, 7, 11 corrupted on a0; scrub must see exactly them"
# Parity of stripe s sits on member 3 - s % 4: stripes 3, 7, 11 have theirs on member 0.
for s in 3 7 11; do
    dd if=/dev/urandom of="$dir/a0" bs=4096 count=1 seek=$(( (1048576 + s * 65536) / 4096 + 5 )) \
        conv=notrunc,fsync oflag=direct status=none
done
rpc_ok "$sock" bdev_jraid_scrub '{"name":"r0"}' >/dev/null
wait_state 'v["scrub"]["state"]' done 600
[ "$(jget "$sock" 'v["scrub"]["mismatch_stripes"]')" = "[3, 7, 11]" ] \
    || die "scrub before set_journal: $(jget "$sock" 'v["scrub"]')"

log "(c) bad requests"
rpc_err bdev_jraid_set_journal '{"name":"nope","journal_bdev":"jn"}' "unknown volume" >&2
rpc_err bdev_jraid_set_journal '{"name":"r0","journal_bdev":"a1"}' "member as journal" >&2
rpc_err bdev_jraid_set_journal '{"name":"r0","journal_bdev":"missing"}' "missing bdev" >&2
rpc_err bdev_jraid_set_journal '{"name":"r0","journal_bdev":"tiny"}' "too small" >&2
rpc_err bdev_jraid_set_journal '{"name":"r0"}' "no journal_bdev" >&2
rpc_err bdev_jraid_set_journal '{"name":"r0","journal_bdev":"jn","bogus":1}' "unknown field" >&2
for b in tiny jn; do
    rpc "$sock" bdev_get_bdevs "{\"name\":\"$b\"}" | grep -q '"claimed": *false' || die "$b left claimed"
done

log "(c) set_journal onto jn (full resync, capped at 64 MiB/s)"
rpc_ok "$sock" bdev_jraid_set_journal '{"name":"r0","journal_bdev":"jn","bandwidth_mb":64}' >/dev/null
seen=""
for _ in $(seq 1 600); do
    st=$(jget "$sock" 'v["set_journal"]["state"], v["set_journal"].get("percent", 0), v["state"]')
    # The first word is the set_journal state; the volume's own state (last word) stays
    # journal_failed until the new journal is attached, so it must not match "failed".
    case "${st%% *}" in
        running) seen="$seen $(echo "$st" | awk '{print $2}')" ;;
        done) break ;;
        failed|aborted) die "set_journal: $(jget "$sock" 'v["set_journal"]')" ;;
    esac
    sleep 0.2
done
log "resync progress seen (percent):$seen"
log "set_journal: $(jget "$sock" 'v["set_journal"]')"
[ "$(jget "$sock" 'v["set_journal"]["state"]')" = done ] || die "set_journal did not finish"
[ "$(jget "$sock" 'v["set_journal"]["stripes_resynced"] == v["stripes"]')" = True ] || die "not every stripe resynced"
[ "$(jget "$sock" 'v["journal"]["devices"][0]["name"], v["journal"]["devices"][0]["state"]')" = "jn online" ] \
    || die "new journal device: $(jget "$sock" 'v["journal"]["devices"]')"
[ "$(jget "$sock" 'v["state"], v["journal"]["name"], v["journal"]["failed"]')" = "online jn False" ] \
    || die "after set_journal: $(jget "$sock" 'v["state"], v["journal"]')"
rpc_ok "$sock" bdev_jraid_scrub '{"name":"r0"}' >/dev/null
wait_state 'v["scrub"]["state"]' done 600
[ "$(jget "$sock" 'v["scrub"]["mismatches"]')" = 0 ] || die "parity not clean after the resync"
[ -n "$seen" ] || die "no resync progress was shown"
rpc_err bdev_jraid_set_journal '{"name":"r0","journal_bdev":"tiny"}' "journal works" >&2
read -r wi wf ri rf <<<"$(perform 3)"
log "run with the new journal: writes $wi IOPS ($wf failed), reads $ri IOPS ($rf failed)"
[ "$wf" = 0 ] && [ "$wi" -gt 0 ] && [ "$rf" = 0 ] || die "I/O failed with the new journal"
[ "$(jget "$sock" 'v["record_writes"] > 0')" = True ] || die "no record written to the new journal"
bp_stop

log "(d) offline parity check, then restart: examine assembles r0 with jn"
python3 "$here/scrub.py" --clean "$dir/jn" "$dir/a0" "$dir/a1" "$dir/a2" "$dir/a3" \
    || die "offline: parity not clean or journal invalid"
spdk_env "$BDEVPERF" --json "$dir/restart.json" -m 0x3 "${BP_MEM_ARGS[@]}" -q 16 -o 16384 \
    -w verify -t 2 -T r0 >"$dir/restart.log" 2>&1 || { tail -30 "$dir/restart.log" >&2; die "verify after restart failed"; }
grep -aq "jraid volume r0 online" "$dir/restart.log" || die "r0 not assembled after restart"
res=$(bp_check_total "$dir/restart.log" "verify after restart")
log "verify after restart: $res (IOPS MiB/s)"

log "(e) kill -9 under write load, journal file lost, parity of stripes 3, 7, 11 corrupted"
spdk_env "$BDEVPERF" --json "$dir/restart.json" -m 0x3 "${BP_MEM_ARGS[@]}" -C -q 32 -o 12288 \
    -w randwrite -t 60 -T r0 >"$dir/load2.log" 2>&1 &
load=$!
for _ in $(seq 1 100); do grep -aq "Running I/O" "$dir/load2.log" && break; sleep 0.1; done
sleep 2
# $load is the subshell running spdk_env: kill bdevperf (its child) first.
pkill -KILL -P "$load" 2>/dev/null || true
kill -KILL "$load" 2>/dev/null || true
wait "$load" 2>/dev/null || true
grep -aq "jraid volume r0 online" "$dir/load2.log" || { tail "$dir/load2.log" >&2; die "r0 not up under load"; }
sleep 0.3 # the killed process's AIO drains (see README)
rm -f "$dir/jn"
for s in 3 7 11; do
    dd if=/dev/urandom of="$dir/a0" bs=4096 count=1 seek=$(( (1048576 + s * 65536) / 4096 + 5 )) \
        conv=notrunc,fsync oflag=direct status=none
done
rm -f "$dir/j3"; truncate -s 8M "$dir/j3"
tsock=$dir/tgt.sock
TGT_MEM_ARGS=("${BP_MEM_ARGS[@]}")
start_tgt "$tsock" "$dir/tgt.log"
for f in a0 a1 a2 j3; do
    rpc_ok "$tsock" bdev_aio_create "{\"filename\":\"$dir/$f\",\"name\":\"$f\",\"block_size\":4096}" >/dev/null
done
sock=$tsock
rpc_err bdev_jraid_set_journal '{"name":"r0","journal_bdev":"j3"}' "member a3 missing" >&2
rpc "$tsock" bdev_get_bdevs '{"name":"j3"}' | grep -q '"claimed": *false' || die "j3 left claimed"
rpc_ok "$tsock" bdev_aio_create "{\"filename\":\"$dir/a3\",\"name\":\"a3\",\"block_size\":4096}" >/dev/null
rpc_ok "$tsock" bdev_wait_for_examine >/dev/null
rpc "$tsock" bdev_get_bdevs '{"name":"r0"}' | grep -q '"error"' || die "r0 came up without its journal"
for _ in $(seq 1 50); do grep -aq "every member is here but its journal" "$dir/tgt.log" && break; sleep 0.1; done
grep -aq "every member is here but its journal" "$dir/tgt.log" || die "no word on the missing journal"
rpc_err bdev_jraid_set_journal '{"name":"r0","journal_bdev":"a2"}' "member as journal (held back volume)" >&2
rpc_ok "$tsock" bdev_jraid_set_journal '{"name":"r0","journal_bdev":"j3"}' >/dev/null
wait_bdev "$tsock" r0
wait_state 'v["set_journal"]["state"]' done 600
log "set_journal on the held-back volume: $(jget "$tsock" 'v["set_journal"]')"
[ "$(jget "$tsock" 'v["state"], v["journal"]["name"], v["set_journal"]["stripes_resynced"] == v["stripes"]')" = "online j3 True" ] \
    || die "after set_journal: $(jget "$tsock" 'v["state"], v["journal"], v["set_journal"]')"
rpc_ok "$tsock" bdev_jraid_scrub '{"name":"r0"}' >/dev/null
wait_state 'v["scrub"]["state"]' done 600
[ "$(jget "$tsock" 'v["scrub"]["mismatches"]')" = 0 ] || die "parity not clean after the full resync"
stop_tgt
python3 "$here/scrub.py" --clean "$dir/j3" "$dir/a0" "$dir/a1" "$dir/a2" "$dir/a3" \
    || die "offline: parity not clean or the members do not name j3"
config "$dir/restart3.json" "$(aio a0 a1 a2 a3 j3)"
spdk_env "$BDEVPERF" --json "$dir/restart3.json" -m 0x3 "${BP_MEM_ARGS[@]}" -q 16 -o 16384 \
    -w verify -t 2 -T r0 >"$dir/restart3.log" 2>&1 || { tail -30 "$dir/restart3.log" >&2; die "verify on j3 failed"; }
res=$(bp_check_total "$dir/restart3.log" "verify on j3")
log "verify after restart on j3: $res (IOPS MiB/s)"

log "(f) a shared journal lost: both volumes move to one new journal"
start_tgt "$tsock" "$dir/tgt2.log"
mallocs "$tsock" 4096 s0 s1 s2 t0 t1 t2
mallocs "$tsock" 1024 js jt
rpc_ok "$tsock" bdev_jraid_create '{"name":"v1","strip_size_kb":16,"base_bdevs":["s0","s1","s2"],"journal_bdev":"js"}' >/dev/null
rpc_ok "$tsock" bdev_jraid_create '{"name":"v2","strip_size_kb":16,"base_bdevs":["t0","t1","t2"],"journal_bdev":"js"}' >/dev/null
rpc_ok "$tsock" bdev_malloc_delete '{"name":"js"}' >/dev/null
states() { rpc_ok "$tsock" bdev_jraid_get_bdevs | python3 -c 'import json,sys; print(" ".join("%s:%s:%s:%d" % (v["name"], v["state"], v["journal"]["name"], v["volume"]) for v in json.load(sys.stdin)))'; }
for _ in $(seq 1 50); do [ "$(states)" = "v1:journal_failed:js:0 v2:journal_failed:js:1" ] && break; sleep 0.1; done
[ "$(states)" = "v1:journal_failed:js:0 v2:journal_failed:js:1" ] || die "after losing js: $(states)"
for v in v1 v2; do
    rpc_ok "$tsock" bdev_jraid_set_journal "{\"name\":\"$v\",\"journal_bdev\":\"jt\"}" >/dev/null
    for _ in $(seq 1 100); do
        [ "$(rpc_ok "$tsock" bdev_jraid_get_bdevs "{\"name\":\"$v\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["set_journal"]["state"])')" = done ] && break
        sleep 0.1
    done
done
log "after set_journal of both: $(states)"
[ "$(states)" = "v1:online:jt:0 v2:online:jt:1" ] || die "shared journal: $(states)"
rpc "$tsock" bdev_get_bdevs '{"name":"jt"}' | grep -q '"claimed": *true' || die "jt not claimed"

log "(g) journal and a member lost together"
mallocs "$tsock" 4096 u0 u1 u2 u3
mallocs "$tsock" 1024 jx jy
rpc_ok "$tsock" bdev_jraid_create '{"name":"v3","strip_size_kb":16,"base_bdevs":["u0","u1","u2"],"journal_bdev":"jx"}' >/dev/null
rpc_ok "$tsock" bdev_malloc_delete '{"name":"jx"}' >/dev/null
rpc_ok "$tsock" bdev_malloc_delete '{"name":"u2"}' >/dev/null
sock=$tsock
rpc_err bdev_jraid_set_journal '{"name":"v3","journal_bdev":"jy"}' "degraded volume" >&2
v3() { rpc_ok "$tsock" bdev_jraid_get_bdevs '{"name":"v3"}' | python3 -c "import json,sys; v=json.load(sys.stdin)[0]; print($1)"; }
rpc_ok "$tsock" bdev_jraid_add_base_bdev '{"name":"v3","base_bdev":"u3"}' >/dev/null
for _ in $(seq 1 100); do [ "$(v3 '(v["rebuild"] or {}).get("state")')" = done ] && break; sleep 0.1; done
[ "$(v3 '" ".join(m["state"] for m in v["members"])')" = "active active active" ] || die "rebuild without a journal: $(v3 'v["rebuild"]')"
rpc_ok "$tsock" bdev_jraid_set_journal '{"name":"v3","journal_bdev":"jy"}' >/dev/null
for _ in $(seq 1 100); do [ "$(v3 'v["set_journal"]["state"]')" = done ] && break; sleep 0.1; done
log "v3 after rebuild and set_journal: $(v3 'v["state"], v["journal"]["name"]')"
[ "$(v3 'v["state"], v["journal"]["name"]')" = "online jy" ] || die "v3: $(v3 'v["state"], v["journal"], v["set_journal"]')"
stop_tgt
log "test_journal_loss: OK"

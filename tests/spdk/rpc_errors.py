#!/usr/bin/env python3
"""(e) Every bad bdev_jraid_create / _delete / _get_bdevs input gets a clear JSON-RPC error and
leaves nothing created or claimed; a good create, save_config and re-create by uuid work;
bdev_jraid_delete keeps the superblocks (as SPDK's bdev_raid_delete does), so examine
re-assembles a deleted volume when its bdevs register again.

Usage: rpc_errors.py SOCK (an spdk_tgt with the module preloaded and no bdevs)."""
import sys
import time

from jrpc import call

SOCK = sys.argv[1]
failures = []


def rpc(method, params=None):
    return call(SOCK, method, params)


def ok(method, params=None):
    r = rpc(method, params)
    if "error" in r:
        raise SystemExit(f"FAIL: {method} {params}: {r['error']}")
    return r["result"]


def claimed():
    return {b["name"]: b["claimed"] for b in ok("bdev_get_bdevs")}


def volumes():
    return sorted(v["name"] for v in ok("bdev_jraid_get_bdevs"))


def expect_error(what, method, params, code, words):
    before_claims, before_vols = claimed(), volumes()
    r = rpc(method, params)
    err = r.get("error")
    problems = []
    if err is None:
        problems.append(f"succeeded: {r.get('result')}")
    else:
        if code is not None and err["code"] != code:
            problems.append(f"code {err['code']}, expected {code}")
        if not all(w in err["message"] for w in words):
            problems.append(f"message {err['message']!r} lacks {words}")
    if claimed() != before_claims:
        problems.append(f"claims changed: {before_claims} -> {claimed()}")
    if volumes() != before_vols:
        problems.append(f"volumes changed: {before_vols} -> {volumes()}")
    status = "ok  " if not problems else "FAIL"
    msg = err["message"] if err else ""
    print(f"{status} {what}: {msg}")
    if problems:
        failures.append((what, problems))


def create(**kw):
    p = {"name": "r0", "strip_size_kb": 64, "base_bdevs": ["m0", "m1", "m2", "m3"],
         "journal_bdev": "jl"}
    p.update(kw)
    return p


for i in range(5):
    ok("bdev_malloc_create", {"name": f"m{i}", "num_blocks": 8192, "block_size": 4096})
ok("bdev_malloc_create", {"name": "s0", "num_blocks": 65536, "block_size": 512})
ok("bdev_malloc_create", {"name": "jl", "num_blocks": 1024, "block_size": 4096})
ok("bdev_malloc_create", {"name": "jtiny", "num_blocks": 16, "block_size": 4096})
ok("bdev_malloc_create", {"name": "jl2", "num_blocks": 1024, "block_size": 4096})
ok("bdev_malloc_create", {"name": "p0", "num_blocks": 8192, "block_size": 4096})
ok("bdev_passthru_create", {"base_bdev_name": "p0", "name": "pt0"})

E = "bdev_jraid_create"
INVALID = -32602
expect_error("unknown member bdev", E, create(base_bdevs=["m0", "m1", "nope"]), -19, ["nope", "not found"])
expect_error("unknown journal bdev", E, create(journal_bdev="nojournal"), -19, ["nojournal", "not found"])
expect_error("fewer than 3 members", E, create(base_bdevs=["m0", "m1"]), -22, ["3", "got 2"])
expect_error("no members", E, create(base_bdevs=[]), -22, ["got 0"])
expect_error("mixed block sizes", E, create(base_bdevs=["m0", "m1", "s0"]), -22, ["mixed block sizes"])
expect_error("strip size not a power of two", E, create(strip_size_kb=48), -22, ["power of two", "48"])
expect_error("strip size too large", E, create(strip_size_kb=2048), -22, ["power of two"])
expect_error("strip size zero", E, create(strip_size_kb=0), -22, ["power of two"])
expect_error("journal too small", E, create(journal_bdev="jtiny"), -28, ["too small"])
expect_error("member claimed by another module", E, create(base_bdevs=["m0", "m1", "p0"]), -16, ["p0", "claimed"])
expect_error("member listed twice", E, create(base_bdevs=["m0", "m1", "m1"]), -22, ["twice"])
expect_error("journal is also a member", E, create(base_bdevs=["m0", "m1", "jl"]), -22, ["both"])
expect_error("name too long", E, create(name="x" * 40), -22, ["name"])
expect_error("missing parameter", E, {"name": "r0"}, INVALID, ["missing field"])
expect_error("unknown parameter", E, create(colour="blue"), INVALID, ["unknown field"])
expect_error("bad uuid", E, create(uuid="not-a-uuid"), INVALID, ["uuid"])
expect_error("wrong type", E, create(strip_size_kb="64"), INVALID, ["invalid"])
expect_error("assume_clean not a boolean", E, create(assume_clean="yes"), INVALID, ["invalid"])
expect_error("no parameters", E, None, INVALID, [])
expect_error("per-stripe state above the limit", E, create(max_stripe_state_mb=0), -12, ["per-stripe state", "max_stripe_state_mb"])

ok(E, create())
expect_error("name already exists", E, create(base_bdevs=["m4", "m1", "m2"]), -17, ["already exists"])
expect_error("member already claimed by jraid", E, create(name="r1", base_bdevs=["m4", "m0", "s0"], journal_bdev="jl2"), -16, ["m0", "claimed"])
expect_error("name of an existing bdev", E, create(name="m4", base_bdevs=["m4", "s0", "p0"]), -17, ["already exists"])
# A second volume on the same journal: volume number 0 is taken.
ok("bdev_malloc_create", {"name": "n0", "num_blocks": 8192, "block_size": 4096})
ok("bdev_malloc_create", {"name": "n1", "num_blocks": 8192, "block_size": 4096})
ok("bdev_malloc_create", {"name": "n2", "num_blocks": 8192, "block_size": 4096})
expect_error("volume number in use on the journal", E, create(name="r1", base_bdevs=["n0", "n1", "n2"], volume=0), -17, ["volume number 0", "jl"])
ok(E, create(name="r1", base_bdevs=["n0", "n1", "n2"], strip_size_kb=16))
vols = {v["name"]: v for v in ok("bdev_jraid_get_bdevs")}
assert vols["r1"]["volume"] == 1 and vols["r1"]["journal"]["name"] == "jl", vols["r1"]
assert vols["r0"]["journal"]["uuid"] == vols["r1"]["journal"]["uuid"]
print("ok   second volume shares journal jl as volume 1")
expect_error("scrub window zero", "bdev_jraid_scrub", {"name": "r1", "window": 0}, INVALID, ["window"])
expect_error("rebuild window too large", "bdev_jraid_add_base_bdev", {"name": "r1", "base_bdev": "m4", "window": 100000}, INVALID, ["window"])
expect_error("set_journal window too large", "bdev_jraid_set_journal", {"name": "r1", "journal_bdev": "jl2", "window": 5000}, INVALID, ["window"])
expect_error("recovery window zero", "bdev_jraid_set_options", {"recovery_window": 0}, INVALID, ["recovery_window"])
expect_error("unknown option", "bdev_jraid_set_options", {"recovery_speed": 3}, INVALID, ["recovery_speed"])
expect_error("init window too large", "bdev_jraid_set_options", {"init_window": 5000}, INVALID, ["init_window"])
expect_error("unknown XOR kernel", "bdev_jraid_set_options", {"xor_kernel": "fast"}, INVALID, ["xor_kernel"])
ok("bdev_jraid_set_options", {"recovery_bandwidth_mb": 50, "recovery_window": 8, "init_bandwidth_mb": 20, "init_window": 4,
                              "xor_kernel": "native"})
opts = [c for c in ok("framework_get_config", {"name": "bdev"}) if c["method"] == "bdev_jraid_set_options"]
assert opts and opts[0]["params"] == {"recovery_window": 8, "recovery_bandwidth_mb": 50, "recovery_online": True,
                                      "init_window": 4, "init_bandwidth_mb": 20, "xor_kernel": "native"}, opts
ok("bdev_jraid_set_options", {"recovery_bandwidth_mb": 0, "recovery_window": 32, "init_bandwidth_mb": 0, "init_window": 16,
                              "xor_kernel": "auto"})
print("ok   bdev_jraid_set_options checked, and written by save_config")

expect_error("delete unknown", "bdev_jraid_delete", {"name": "nope"}, -19, ["nope"])
expect_error("delete without name", "bdev_jraid_delete", {}, INVALID, ["name"])
expect_error("get unknown", "bdev_jraid_get_bdevs", {"name": "nope"}, -19, ["nope"])

# save_config has bdev_jraid_create with the uuid; replaying it on running volumes is a no-op,
# and after a delete it re-assembles (the members carry that uuid), running recovery.
# (rpc.py's save_config gathers framework_get_config of every subsystem.)
cfg = ok("framework_get_config", {"name": "bdev"})
calls = [c for c in cfg if c["method"] == E]
assert len(calls) == 2, calls
for c in calls:
    ok(E, c["params"])
print("ok   save_config replay on running volumes")
r0 = next(c["params"] for c in calls if c["params"]["name"] == "r0")
ok("bdev_jraid_delete", {"name": "r0"})
assert not claimed()["m0"], "delete left m0 claimed"
ok(E, r0)
v = ok("bdev_jraid_get_bdevs", {"name": "r0"})[0]
assert v["uuid"] == r0["uuid"] and v["generation"] >= 1, v
print(f"ok   delete + create by uuid re-assembled r0 (journal generation {v['generation']})")

# bdev_jraid_delete stops a volume and keeps its superblocks, as bdev_raid_delete does in SPDK's
# raid module (raid_bdev_delete unregisters and closes the base bdevs, writing nothing): the
# volume stays down until its bdevs register again, and then examine re-assembles it. Same
# steps as SPDK's bdev_raid.sh: passthrus over mallocs, deleted and re-created.
for n in ("q0", "q1", "q2", "qj"):
    ok("bdev_malloc_create", {"name": n, "num_blocks": 4096 if n != "qj" else 1024, "block_size": 4096})
    ok("bdev_passthru_create", {"base_bdev_name": n, "name": "p" + n})
ok(E, {"name": "r2", "strip_size_kb": 16, "base_bdevs": ["pq0", "pq1", "pq2"], "journal_bdev": "pqj"})
u2 = ok("bdev_jraid_get_bdevs", {"name": "r2"})[0]["uuid"]
ok("bdev_jraid_delete", {"name": "r2"})
time.sleep(0.5)
assert "r2" not in volumes(), "r2 came back without its bdevs registering again"
assert not any(claimed()[n] for n in ("pq0", "pq1", "pq2", "pqj")), claimed()
assert all(b["name"] != "r2" for b in ok("bdev_get_bdevs")), "bdev r2 still registered"
for n in ("q0", "q1", "q2", "qj"):
    ok("bdev_passthru_delete", {"name": "p" + n})
for n in ("qj", "q2", "q1", "q0"):  # journal first, members in reverse: order does not matter
    ok("bdev_passthru_create", {"base_bdev_name": n, "name": "p" + n})
for _ in range(100):
    if "r2" in volumes():
        break
    time.sleep(0.1)
v = ok("bdev_jraid_get_bdevs", {"name": "r2"})[0]
assert v["uuid"] == u2 and v["state"] == "online", v
assert [m["name"] for m in v["members"]] == ["pq0", "pq1", "pq2"], v
print("ok   delete keeps the superblocks: r2 re-assembled by examine when its bdevs came back")

if failures:
    for what, problems in failures:
        print(f"FAIL {what}: {'; '.join(problems)}")
    sys.exit(1)
print("rpc_errors: OK")

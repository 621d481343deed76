#!/usr/bin/env python3
"""Aggregate a scripts/bench/journal_scale.sh results folder: raw.jsonl (+ meta.json) ->
results.json and results.md (journal on vs off per member size, journal counters per user write,
targets met/missed); prints results.md.

    journal_scale_report.py DIR

Per (scenario, member size, journal on/off): the median IOPS over the repetitions; on ÷ off is the
ratio of the two medians. Journal counters come from bdev_jraid_get_bdevs read before and after
each perform_tests of a journal-on test (deltas, summed over the repetitions): under the volume's
"journal" object bytes_written, records_written, checkpoints, user_writes (cumulative) and listed
(at the end); a counter this build does not report reads n/a. The top-level record_writes (journal
record I/Os), marks and fast_path_hits are shown per user write as well; where journal.user_writes
is missing, the user writes are bdevperf's own count (IOPS × runtime, marked †).
"""
import json
import os
import statistics
import sys

TARGETS = {"randwrite": 0.95, "seqwrite": 0.97}


def human(b):
    for u, m in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if b >= m and b % m == 0:
            return f"{b // m} {u}"
    return f"{b} B"


def get(obj, *path):
    for p in path:
        if not isinstance(obj, dict) or p not in obj:
            return None
        obj = obj[p]
    return obj if isinstance(obj, (int, float)) and not isinstance(obj, bool) else None


def delta(row, *path):
    a, b = get(row.get("after"), *path), get(row.get("before"), *path)
    return None if a is None or b is None else a - b


def steal_of(r):
    """The share of the reactor cores' time the hypervisor stole during the test (the steal
    column of their /proc/stat lines, read around perform_tests), or None where not recorded."""
    a, b = r.get("cpu_stat_before") or [], r.get("cpu_stat_after") or []
    if not a or len(a) != len(b):
        return None
    stolen = total = 0
    for x, y in zip(a, b):
        fx, fy = [int(v) for v in x.split()[1:9]], [int(v) for v in y.split()[1:9]]
        d = [q - p for p, q in zip(fx, fy)]
        stolen += d[7]
        total += sum(d)
    return stolen / total if total > 0 else None


def load(d):
    rows = []
    with open(os.path.join(d, "raw.jsonl")) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            res = (r.get("bdevperf") or {}).get("results") or []
            if res:
                r["iops"] = sum(x["iops"] for x in res)
                r["mibps"] = sum(x["mibps"] for x in res)
                r["ios"] = sum(x["iops"] * x.get("runtime", 0) for x in res)
                r["avg_latency_us"] = (sum(x["iops"] * x["avg_latency_us"] for x in res) / r["iops"]
                                       if r["iops"] else None)
                bad = [x for x in res if x.get("status") != "finished" or x.get("io_failed")]
                if bad and "error" not in r:
                    r["error"] = "failed I/O"
            elif "error" not in r:
                r["error"] = "no result"
            r["d"] = {
                "bytes_written": delta(r, "journal", "bytes_written"),
                "records_written": delta(r, "journal", "records_written"),
                "checkpoints": delta(r, "journal", "checkpoints"),
                "user_writes": delta(r, "journal", "user_writes"),
                "record_writes": delta(r, "record_writes"),
                "marks": delta(r, "marks"),
                "fast_path_hits": delta(r, "fast_path_hits"),
                "record_full_waits": delta(r, "record_full_waits"),
            }
            r["end"] = {
                "listed": get(r.get("after"), "journal", "listed"),
                "max_listed": get(r.get("after"), "journal", "max_listed"),
                "journal_listed": get(r.get("after"), "journal_listed"),
                "dirty_stripes": get(r.get("after"), "dirty_stripes"),
            }
            r["steal"] = steal_of(r)
            rows.append(r)
    meta = {}
    mp = os.path.join(d, "meta.json")
    if os.path.exists(mp):
        with open(mp) as f:
            meta = json.load(f)
    return rows, meta


def ok(r):
    return "error" not in r and r.get("iops") is not None


def per_write(runs, key):
    """Sum of the counter's deltas over the runs ÷ the user writes (journal.user_writes, else
    bdevperf's count). Returns (value or None, fallback-used)."""
    num = [r["d"][key] for r in runs]
    if not runs or any(x is None for x in num):
        return None, False
    uw = [r["d"]["user_writes"] for r in runs]
    fallback = any(x is None for x in uw)
    den = sum(r["ios"] for r in runs) if fallback else sum(uw)
    return (sum(num) / den if den else None), fallback


def med(xs):
    return statistics.median(xs) if xs else None


def analyse(rows, meta):
    out = []
    keys = []
    for r in rows:
        k = (r["scenario"], r["member_bytes"])
        if k not in keys:
            keys.append(k)
    for scen, size in keys:
        on = [r for r in rows if (r["scenario"], r["member_bytes"], r["variant"]) == (scen, size, "on")
              and ok(r)]
        off = [r for r in rows if (r["scenario"], r["member_bytes"], r["variant"]) == (scen, size, "off")
               and ok(r)]
        e = {"scenario": scen, "member_bytes": size, "runs_on": len(on), "runs_off": len(off),
             "io_size": (on or off or [{}])[0].get("io_size"),
             "queue_depth": (on or off or [{}])[0].get("queue_depth")}
        for name, runs in (("on", on), ("off", off)):
            e[f"iops_{name}"] = med([r["iops"] for r in runs])
            e[f"mibps_{name}"] = med([r["mibps"] for r in runs])
            e[f"lat_{name}"] = med([r["avg_latency_us"] for r in runs if r["avg_latency_us"]])
            e[f"iops_{name}_all"] = [round(r["iops"]) for r in runs]
        e["on_off_of_medians"] = (e["iops_on"] / e["iops_off"]
                                  if e["iops_on"] is not None and e["iops_off"] else None)
        # Each round's on and off ran back to back: their ratio cancels the machine's drift
        # between rounds (steal time on a shared VM moves both sides of a round alike), so the
        # median of the per-round ratios is the figure compared with the target.
        by_rep = {r["rep"]: r["iops"] for r in off}
        pairs = [r["iops"] / by_rep[r["rep"]] for r in on if by_rep.get(r["rep"])]
        e["on_off_rounds"] = [round(x, 3) for x in pairs]
        e["on_off"] = med(pairs) if pairs else e["on_off_of_medians"]
        e["fallback_user_writes"] = False
        for key in ("bytes_written", "records_written", "record_writes", "marks", "fast_path_hits"):
            e[f"{key}_per_write"], fb = per_write(on, key)
            e["fallback_user_writes"] |= fb and e[f"{key}_per_write"] is not None
        for key in ("checkpoints", "record_full_waits", "user_writes"):
            vals = [r["d"][key] for r in on]
            e[f"{key}_per_run"] = med(vals) if on and None not in vals else None
        e["bdevperf_writes_per_run"] = med([r["ios"] for r in on])
        for key in ("listed", "max_listed", "journal_listed", "dirty_stripes"):
            vals = [r["end"][key] for r in on]
            e[key] = med(vals) if on and None not in vals else None
        goal = TARGETS.get(scen)
        e["goal"] = goal
        e["verdict"] = ("n/a" if e["on_off"] is None or goal is None else
                        "met" if e["on_off"] >= goal else "missed")
        out.append(e)
    return out


def f_num(x, fmt="{:,.0f}"):
    return "n/a" if x is None else fmt.format(x)


def f_listed(n, mx):
    return f_num(n) if n is None or mx is None else f"{n:,.0f} of {mx:,.0f}"


def markdown(a, meta, rows):
    L = []
    L.append(f"# jraid journal cost vs volume size {meta.get('date', '')}\n")
    L.append(f"- {meta.get('cpus', '?')} CPU(s): {meta.get('cpu_model', '?')}; kernel "
             f"{meta.get('kernel', '?')}; {meta.get('spdk', 'SPDK')}; jraid "
             f"{meta.get('jraid_git', '?')} ({meta.get('jraid_lib', '?')})")
    cores = meta.get("cores", 1)
    reactors = "one reactor" if cores == 1 else f"{cores} reactors, one job each, IOPS summed"
    L.append(f"- bdevperf {meta.get('core_args', '-m 0x1')} ({reactors}; {meta.get('mem_args', '')}), one fresh process and volume per "
             f"test; {meta.get('members', 4)} null members, strip {meta.get('strip_kb', 64)} KiB, "
             f"{meta.get('journal_mb', 8)} MiB malloc journal; {meta.get('seconds_per_test', '?')} s "
             f"per test, {meta.get('reps', '?')} interleaved round(s) of journal on / off, median "
             f"IOPS of each; load average at start {' '.join(meta.get('loadavg_at_start', []))}")
    if meta.get("warmup_s"):
        L.append(f"- each measured run follows a {meta['warmup_s']} s warm-up run of the same "
                 "workload in the same process (not measured; counters are deltas across the "
                 "measured run only): the steady state, with the listed set filled")
    else:
        L.append("- no warm-up: each measured run starts on a fresh volume, its listed set "
                 "empty")
    if not meta.get("journal_off", True):
        L.append("- journal off: `bdev_jraid_create` rejects `\"journal\": false` in this build, "
                 "so those columns read n/a")
    L.append("")

    def table(entries, seq):
        unit = "MiB/s" if seq else "IOPS"
        L.append(f"| members | journal on ({unit}) | journal off ({unit}) | on ÷ off | "
                 "rounds' on ÷ off | "
                 "journal bytes / write | records / write | listed | record I/Os / write | "
                 "fast-path hits / write | target |")
        L.append("|---|---:|---:|---:|---|---:|---:|---:|---:|---:|---|")
        for e in entries:
            k = "mibps" if seq else "iops"
            fmt = "{:,.1f}" if seq else "{:,.0f}"
            dag = " †" if e["fallback_user_writes"] else ""
            L.append(f"| {human(e['member_bytes'])} | {f_num(e[k + '_on'], fmt)} | "
                     f"{f_num(e[k + '_off'], fmt)} | {f_num(e['on_off'], '{:.3f}')} | "
                     f"{' '.join(f'{x:.3f}' for x in e['on_off_rounds'])} | "
                     f"{f_num(e['bytes_written_per_write'], '{:,.1f}')} | "
                     f"{f_num(e['records_written_per_write'], '{:.4f}')} | "
                     f"{f_listed(e['listed'], e['max_listed'])} | "
                     f"{f_num(e['record_writes_per_write'], '{:.4f}')}{dag} | "
                     f"{f_num(e['fast_path_hits_per_write'], '{:.4f}')}{dag} | "
                     f"≥ {e['goal']}: **{e['verdict']}** |")

    rand = [e for e in a if e["scenario"] == "randwrite"]
    seq = [e for e in a if e["scenario"] == "seqwrite"]
    if rand:
        q = rand[0]["queue_depth"]
        L.append(f"## 4 KiB random writes, QD {q}\n")
        table(rand, False)
    if seq:
        s = seq[0]
        L.append(f"\n## Full-stripe sequential writes ({(s['io_size'] or 0) // 1024} KiB), "
                 f"QD {s['queue_depth']}\n")
        table(seq, True)
        for e in seq:
            L.append(f"\n{human(e['member_bytes'])} members, full-stripe sequential: on ÷ off "
                     f"{f_num(e['on_off'], '{:.3f}')} (target ≥ {e['goal']}: **{e['verdict']}**)")

    L.append("\n## Targets\n")
    for e in a:
        what = ("4 KiB randwrite" if e["scenario"] == "randwrite" else "full-stripe write")
        L.append(f"- {what}, {human(e['member_bytes'])} members: on ÷ off "
                 f"{f_num(e['on_off'], '{:.3f}')}, target ≥ {e['goal']}: **{e['verdict']}**")

    L.append("\nCounters: deltas of `bdev_jraid_get_bdevs` across each journal-on perform_tests, "
             "summed over the rounds and divided by the user writes (`journal.user_writes`; † = "
             "that counter is missing in this build, bdevperf's I/O count used). journal bytes and "
             "records: `journal.bytes_written`, `journal.records_written`; listed: "
             "`journal.listed` after the test (median; of `journal.max_listed` where reported); record I/Os: `record_writes`; fast-path "
             "hits: `fast_path_hits`. n/a: the build does not report that counter. Steal (every test): the "
             "share of the reactor cores' time the hypervisor took during the test (/proc/stat).")

    L.append("\n## Every test\n")
    L.append("| test | members | journal | round | IOPS | MiB/s | avg µs | load | steal | user writes | "
             "Δ bytes | Δ records | Δ checkpoints | Δ record I/Os | Δ marks | Δ fast path | "
             "Δ full waits | listed | dirty_stripes |")
    L.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        d, end = r["d"], r["end"]
        uw = d["user_writes"]
        uws = f_num(uw) if uw is not None else (f_num(r.get("ios")) + " †" if r.get("ios") else "n/a")
        if "error" in r:
            L.append(f"| {r['scenario']} | {human(r['member_bytes'])} | {r['variant']} | {r['rep']} "
                     f"| error: {r['error'][:120]} ||||||||||||||")
            continue
        L.append(f"| {r['scenario']} | {human(r['member_bytes'])} | {r['variant']} | {r['rep']} | "
                 f"{f_num(r['iops'])} | {f_num(r['mibps'], '{:,.1f}')} | "
                 f"{f_num(r['avg_latency_us'], '{:,.1f}')} | "
                 f"{(r.get('loadavg_before') or ['?'])[0]} | {f_num(r['steal'], '{:.1%}')} | {uws} | "
                 f"{f_num(d['bytes_written'])} | {f_num(d['records_written'])} | "
                 f"{f_num(d['checkpoints'])} | {f_num(d['record_writes'])} | {f_num(d['marks'])} | "
                 f"{f_num(d['fast_path_hits'])} | {f_num(d['record_full_waits'])} | "
                 f"{f_listed(end['listed'], end['max_listed'])} | {f_num(end['dirty_stripes'])} |")
    return "\n".join(L) + "\n"


def main():
    d = sys.argv[1]
    rows, meta = load(d)
    a = analyse(rows, meta)

    def strip(o):
        if isinstance(o, dict):
            return {k: strip(v) for k, v in o.items() if k not in ("bdevperf", "before", "after")}
        if isinstance(o, list):
            return [strip(v) for v in o]
        return o
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump({"meta": meta, "summary": a, "rows": strip(rows)}, f, indent=1)
    md = markdown(a, meta, rows)
    with open(os.path.join(d, "results.md"), "w") as f:
        f.write(md)
    print()
    print(md)
    print(f"tables: {os.path.join(d, 'results.md')}")


if __name__ == "__main__":
    main()

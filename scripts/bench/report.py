#!/usr/bin/env python3
"""Aggregate a scripts/bench/run.sh results folder: raw.jsonl (+ meta.json) ->
results.json, results.md (tables and target ratios) and results.png; prints the ratios.

    report.py DIR [--no-plot | --plot-only]
"""
import json
import os
import sys

TARGETS = {
    "on_off": ("journal-on ÷ journal-off, 4 KiB randwrite QD 128", 0.95),
    "vs_raid5f": ("jraid full-stripe write ÷ raid5f", 1.0),
    "efficiency": ("4 KiB randwrite IOPS ÷ (members × member IOPS ÷ 4), QD 128", 0.9),
    "write_vs_raid1": ("4 KiB randwrite, journal on ÷ (raid1 write ÷ 2), QD 128", 0.8),
    "read_vs_raid1": ("4 KiB randread ÷ raid1 randread, QD 128", 0.9),
    "two_write_vs_raid1": ("two reactors: 4 KiB randwrite ÷ (raid1 write ÷ 2)", 0.8),
    "two_read_vs_raid1": ("two reactors: 4 KiB randread ÷ raid1 randread", 0.9),
    "two_vs_raid5f": ("two reactors: full-stripe write ÷ raid5f", 1.0),
    "scale_write": ("jraid two reactors ÷ one, 4 KiB randwrite QD 128", 1.9),
    "scale_read": ("jraid two reactors ÷ one, 4 KiB randread QD 128", 1.9),
    "scale_seq": ("jraid two reactors ÷ one, full-stripe write", 1.9),
}
KIND_ORDER = ["malloc", "delay", "null"]


def load(d):
    rows = []
    with open(os.path.join(d, "raw.jsonl")) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            r = json.loads(line)
            res = (r.get("bdevperf") or {}).get("results") or []
            ok = bool(res) and all(x.get("status") == "finished" and not x.get("io_failed")
                                   for x in res)
            if res:
                iops = sum(x["iops"] for x in res)
                r["iops"] = iops
                r["mibps"] = sum(x["mibps"] for x in res)
                r["avg_latency_us"] = (sum(x["iops"] * x["avg_latency_us"] for x in res) / iops
                                       if iops else None)
                r["max_latency_us"] = max(x["max_latency_us"] for x in res)
                r["io_failed"] = sum(x.get("io_failed", 0) for x in res)
            if not ok:
                r["iops"] = r.get("iops") if res else None
                r.setdefault("error", "failed I/O" if res else "no result")
            rows.append(r)
    meta = {}
    mp = os.path.join(d, "meta.json")
    if os.path.exists(mp):
        with open(mp) as f:
            meta = json.load(f)
    return rows, meta


def find(rows, **kw):
    """The row of the test `kw` names; of several (run.sh --reps), the run of median IOPS (the
    lower of the two middle ones for an even count)."""
    hits = [r for r in rows
            if all(r.get(k) == v for k, v in kw.items()) and r.get("iops") is not None
            and "error" not in r]
    if not hits:
        return None
    hits.sort(key=lambda r: r["iops"])
    return hits[(len(hits) - 1) // 2]


def reps_of(rows):
    return sorted({r.get("rep", 1) for r in rows})


def median(vals):
    v = sorted(x for x in vals if x is not None)
    if not v:
        return None
    n = len(v)
    return v[n // 2] if n % 2 else (v[n // 2 - 1] + v[n // 2]) / 2


def per_rep_targets(a, rows, meta):
    """With several repetitions, each target's value becomes the median of its per-repetition
    ratios (both sides from the same repetition), the ratios kept in "runs"."""
    reps = reps_of(rows)
    if len(reps) < 2:
        return
    per = [analyse([r for r in rows if r.get("rep", 1) == x], meta)["targets"] for x in reps]
    for t in a["targets"]:
        runs = []
        for p in per:
            m = next((x for x in p if x["target"] == t["target"] and x["kind"] == t["kind"]),
                     None)
            runs.append(m and m["value"])
        t["runs"] = runs
        t["value"] = median(runs)
        t["verdict"] = ("n/a" if t["value"] is None else
                        ("PASS" if t["value"] >= t["goal"] else "MISS"))


def kinds_of(rows):
    ks = {r["kind"] for r in rows}
    return [k for k in KIND_ORDER if k in ks] + sorted(ks - set(KIND_ORDER))


def f_iops(r):
    return "n/a" if r is None else f"{r['iops']:,.0f}"


def f_mib(r):
    return "n/a" if r is None else f"{r['mibps']:,.1f}"


def f_lat(r):
    return "n/a" if r is None or r.get("avg_latency_us") is None else f"{r['avg_latency_us']:,.1f}"


def ratio(a, b, key="iops"):
    if a is None or b is None or not b[key]:
        return None
    return a[key] / b[key]


def f_ratio(x):
    return "n/a" if x is None else f"{x:.3f}"


def analyse(rows, meta):
    members = meta.get("members", 4)
    kinds = kinds_of(rows)
    qds_w = sorted({r["queue_depth"] for r in rows if r["scenario"] == "randwrite"})
    qds_r = sorted({r["queue_depth"] for r in rows if r["scenario"] == "randread"})
    out = {"randwrite": [], "seqwrite": [], "randread": [], "scaling": [], "targets": []}
    for k in kinds:
        for q in qds_w:
            j = find(rows, kind=k, scenario="randwrite", variant="jraid", queue_depth=q)
            n = find(rows, kind=k, scenario="randwrite", variant="jraid-nojournal", queue_depth=q)
            w = find(rows, kind=k, scenario="randwrite", variant="raw", queue_depth=q)
            ideal = None if w is None else {"iops": members * w["iops"] / 4}
            out["randwrite"].append({"kind": k, "qd": q, "jraid": j, "nojournal": n, "raw": w,
                                     "on_off": ratio(j, n), "efficiency": ratio(j, ideal)})
        for r in rows:
            if r["kind"] == k and r["scenario"] == "seqwrite" and r["variant"] == "jraid":
                j = find(rows, kind=k, scenario="seqwrite", variant="jraid")
                f = find(rows, kind=k, scenario="seqwrite", variant="raid5f")
                out["seqwrite"].append({"kind": k, "qd": r["queue_depth"], "io_size": r["io_size"],
                                        "jraid": j, "raid5f": f,
                                        "vs_raid5f": ratio(j, f, "mibps")})
                break
        for q in qds_r:
            j = find(rows, kind=k, scenario="randread", variant="jraid", queue_depth=q)
            w = find(rows, kind=k, scenario="randread", variant="raw", queue_depth=q)
            out["randread"].append({"kind": k, "qd": q, "jraid": j, "raw": w,
                                    "vs_raw": ratio(j, w)})
        base = find(rows, kind=k, scenario="randwrite", variant="jraid", queue_depth=128,
                    reactors=1)
        nrs = sorted({r["reactors"] for r in rows
                      if r["kind"] == k and r["scenario"] == "scaling" and r["variant"] == "jraid"
                      and r["workload"] == "randwrite"})
        out["scaling"].append({"kind": k, "reactors": 1, "jraid": base,
                               "speedup": ratio(base, base)})
        for nr in nrs:
            r = find(rows, kind=k, scenario="scaling", variant="jraid", workload="randwrite",
                     reactors=nr)
            out["scaling"].append({"kind": k, "reactors": nr, "jraid": r,
                                   "speedup": ratio(r, base)})
        # SPDK's own RAID as anchors (raid1 over two members, raid5f), one reactor and two.
        w = {}
        for nr in (1, 2):
            scen = (lambda s: s) if nr == 1 else (lambda s: "scaling")
            q = 128
            jw = find(rows, kind=k, scenario=scen("randwrite"), variant="jraid",
                      workload="randwrite", queue_depth=q, reactors=nr)
            jr = find(rows, kind=k, scenario=scen("randread"), variant="jraid",
                      workload="randread", queue_depth=q, reactors=nr)
            js = find(rows, kind=k, scenario=scen("seqwrite"), variant="jraid", workload="write",
                      reactors=nr)
            rw_ = find(rows, kind=k, scenario=scen("randwrite"), variant="raid1",
                       workload="randwrite", queue_depth=q, reactors=nr)
            rr_ = find(rows, kind=k, scenario=scen("randread"), variant="raid1",
                       workload="randread", queue_depth=q, reactors=nr)
            r5 = find(rows, kind=k, scenario=scen("seqwrite"), variant="raid5f", workload="write",
                      reactors=nr)
            half = None if rw_ is None else {"iops": rw_["iops"] / 2}
            w[nr] = {"jraid_write": jw, "jraid_read": jr, "jraid_seq": js, "raid1_write": rw_,
                     "raid1_read": rr_, "raid5f_seq": r5,
                     "write_vs_raid1": ratio(jw, half), "read_vs_raid1": ratio(jr, rr_),
                     "vs_raid5f": ratio(js, r5, "mibps")}
        out.setdefault("anchors", []).append({
            "kind": k, "one": w[1], "two": w[2],
            "scale_write": ratio(w[2]["jraid_write"], w[1]["jraid_write"]),
            "scale_read": ratio(w[2]["jraid_read"], w[1]["jraid_read"]),
            "scale_seq": ratio(w[2]["jraid_seq"], w[1]["jraid_seq"], "mibps")})
    # targets at QD 128
    for k in kinds:
        rw = next((x for x in out["randwrite"] if x["kind"] == k and x["qd"] == 128), None)
        sw = next((x for x in out["seqwrite"] if x["kind"] == k), None)
        an = next((x for x in out.get("anchors", []) if x["kind"] == k), None)
        vals = (("on_off", rw and rw["on_off"]), ("vs_raid5f", sw and sw["vs_raid5f"]),
                ("efficiency", rw and rw["efficiency"]))
        if an:
            vals += (("write_vs_raid1", an["one"]["write_vs_raid1"]),
                     ("read_vs_raid1", an["one"]["read_vs_raid1"]),
                     ("two_write_vs_raid1", an["two"]["write_vs_raid1"]),
                     ("two_read_vs_raid1", an["two"]["read_vs_raid1"]),
                     ("two_vs_raid5f", an["two"]["vs_raid5f"]),
                     ("scale_write", an["scale_write"]), ("scale_read", an["scale_read"]),
                     ("scale_seq", an["scale_seq"]))
        for key, val in vals:
            goal = TARGETS[key][1]
            out["targets"].append({"target": key, "what": TARGETS[key][0], "kind": k,
                                   "value": val, "goal": goal,
                                   "verdict": "n/a" if val is None else
                                   ("PASS" if val >= goal else "MISS")})
    return out


def markdown(a, meta, rows):
    L = []
    L.append(f"# jraid bench {meta.get('date', '')}\n")
    L.append(f"- {meta.get('cpus', '?')} CPU(s): {meta.get('cpu_model', '?')}; kernel "
             f"{meta.get('kernel', '?')}; {meta.get('spdk', 'SPDK')}; jraid "
             f"{meta.get('jraid_git', '?')}")
    L.append(f"- {meta.get('members', 4)} members of {meta.get('member_mb', '?')} MiB, strip "
             f"{meta.get('strip_kb', '?')} KiB (full stripe {meta.get('stripe_bytes', 0) // 1024} "
             f"KiB); {meta.get('seconds_per_test', '?')} s per test; load average at start "
             f"{' '.join(meta.get('loadavg_at_start', []))}")
    d = meta.get("delay_us", {})
    if d:
        L.append(f"- delay members: bdev_delay over malloc, reads {d['read_avg']} µs avg / "
                 f"{d['read_p99']} µs p99, writes {d['write_avg']} µs avg / {d['write_p99']} µs p99")
    if not meta.get("journal_off", True):
        L.append(f"- journal-off: `bdev_jraid_create` rejects `{meta.get('journal_off_params')}` "
                 "in this build, so those rows read n/a")
    if not meta.get("raid5f", True):
        L.append("- raid5f: not available in this SPDK build")
    L.append("- one reactor (-m 0x1) unless stated; the scaling rows use -m <N cores> -C "
             "(one job per core, each at the QD shown)\n")

    # With repetitions, each target's per-repetition ratios in a column of their own.
    many = len(reps_of(rows)) > 1
    if many:
        L.append(f"- {len(reps_of(rows))} repetitions of the whole set, one after the other: "
                 "each table row is the test's run of median IOPS; each target is the median "
                 "of its per-repetition ratios (listed under \"every repetition\")\n")
    L.append("## Target ratios (QD 128, same run" +
             ("; median of the repetitions)\n" if many else ")\n"))
    L.append("| target | kind | value | " + ("every repetition | " if many else "") +
             "goal | verdict |")
    L.append("|---|---|---:|" + ("---|" if many else "") + "---:|---|")
    for t in a["targets"]:
        runs = (" ".join(f_ratio(x) for x in t.get("runs", [])) + " | ") if many else ""
        L.append(f"| {t['what']} | {t['kind']} | {f_ratio(t['value'])} | {runs}≥ {t['goal']} | "
                 f"{t['verdict']} |")

    L.append("\n## 4 KiB random writes\n")
    L.append("| kind | QD | jraid IOPS | jraid avg µs | no-journal IOPS | raw member IOPS | "
             "raw avg µs | on ÷ off | jraid ÷ (N×raw÷4) |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in a["randwrite"]:
        L.append(f"| {x['kind']} | {x['qd']} | {f_iops(x['jraid'])} | {f_lat(x['jraid'])} | "
                 f"{f_iops(x['nojournal'])} | {f_iops(x['raw'])} | {f_lat(x['raw'])} | "
                 f"{f_ratio(x['on_off'])} | {f_ratio(x['efficiency'])} |")

    L.append("\n## Full-stripe sequential writes\n")
    L.append("| kind | QD | I/O size | jraid MiB/s | jraid avg µs | raid5f MiB/s | raid5f avg µs "
             "| jraid ÷ raid5f |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for x in a["seqwrite"]:
        L.append(f"| {x['kind']} | {x['qd']} | {x['io_size'] // 1024} KiB | {f_mib(x['jraid'])} | "
                 f"{f_lat(x['jraid'])} | {f_mib(x['raid5f'])} | {f_lat(x['raid5f'])} | "
                 f"{f_ratio(x['vs_raid5f'])} |")

    L.append("\n## 4 KiB random reads\n")
    L.append("| kind | QD | jraid IOPS | jraid avg µs | raw member IOPS | raw avg µs | jraid ÷ raw |")
    L.append("|---|---:|---:|---:|---:|---:|---:|")
    for x in a["randread"]:
        L.append(f"| {x['kind']} | {x['qd']} | {f_iops(x['jraid'])} | {f_lat(x['jraid'])} | "
                 f"{f_iops(x['raw'])} | {f_lat(x['raw'])} | {f_ratio(x['vs_raw'])} |")

    L.append("\n## Beside SPDK's own RAID (raid1 over two of the same members, raid5f over four)\n")
    L.append("| kind | reactors | jraid write IOPS | raid1 write IOPS | ÷ (raid1 ÷ 2) | "
             "jraid read IOPS | raid1 read IOPS | ÷ raid1 | jraid full-stripe MiB/s | "
             "raid5f MiB/s | ÷ raid5f |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for x in a.get("anchors", []):
        for nr, w in ((1, x["one"]), (2, x["two"])):
            L.append(f"| {x['kind']} | {nr} | {f_iops(w['jraid_write'])} | "
                     f"{f_iops(w['raid1_write'])} | {f_ratio(w['write_vs_raid1'])} | "
                     f"{f_iops(w['jraid_read'])} | {f_iops(w['raid1_read'])} | "
                     f"{f_ratio(w['read_vs_raid1'])} | {f_mib(w['jraid_seq'])} | "
                     f"{f_mib(w['raid5f_seq'])} | {f_ratio(w['vs_raid5f'])} |")
    L.append("\n(4 KiB at QD 128 per reactor; full stripes at the sequential QD; two reactors: "
             "-m 0x3 -C, one job per core.)")

    L.append("\n## Reactor scaling: jraid 4 KiB random writes, QD 128 per reactor\n")
    L.append("| kind | reactors | IOPS | avg µs | speed-up |")
    L.append("|---|---:|---:|---:|---:|")
    for x in a["scaling"]:
        L.append(f"| {x['kind']} | {x['reactors']} | {f_iops(x['jraid'])} | {f_lat(x['jraid'])} | "
                 f"{f_ratio(x['speedup'])} |")

    errs = [r for r in rows if "error" in r]
    if errs:
        L.append("\n## Missing results\n")
        for r in errs:
            L.append(f"- {r['kind']} {r['scenario']} {r['variant']} QD {r['queue_depth']} "
                     f"({r['reactors']} reactor(s)): {r['error']}")
    return "\n".join(L) + "\n"


def plot(a, d):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = []
    for x in a["randwrite"]:
        if x["kind"] not in kinds:
            kinds.append(x["kind"])
    colors = {"jraid": "tab:blue", "nojournal": "tab:orange", "raw": "tab:green",
              "raid5f": "tab:red"}
    fig, ax = plt.subplots(2, 2, figsize=(14, 10))

    def grouped(axis, entries, series, key, ylabel, title, labels, log=False):
        import numpy as np
        xs = np.arange(len(entries))
        w = 0.8 / len(series)
        for i, s in enumerate(series):
            vals = [(e[s][key] if e[s] is not None else 0) for e in entries]
            axis.bar(xs + (i - (len(series) - 1) / 2) * w, vals, w, label=labels[s],
                     color=colors.get(s))
        axis.set_xticks(xs)
        axis.set_xticklabels([e["_label"] for e in entries], rotation=45, ha="right", fontsize=8)
        if log:
            axis.set_yscale("log")
        axis.set_ylabel(ylabel + (" (log)" if log else ""))
        axis.set_title(title)
        axis.legend(fontsize=8)
        axis.grid(axis="y", alpha=0.3)

    rw = [dict(x, _label=f"{x['kind']} QD{x['qd']}") for x in a["randwrite"]]
    grouped(ax[0][0], rw, ["jraid", "nojournal", "raw"], "iops", "IOPS",
            "4 KiB random writes (1 reactor)",
            {"jraid": "jraid", "nojournal": "jraid, journal off", "raw": "raw member"}, log=True)
    sw = [dict(x, _label=f"{x['kind']} QD{x['qd']} {x['io_size'] // 1024}K") for x in a["seqwrite"]]
    grouped(ax[0][1], sw, ["jraid", "raid5f"], "mibps", "MiB/s",
            "Full-stripe sequential writes (1 reactor)", {"jraid": "jraid", "raid5f": "SPDK raid5f"})
    rr = [dict(x, _label=f"{x['kind']} QD{x['qd']}") for x in a["randread"]]
    grouped(ax[1][0], rr, ["jraid", "raw"], "iops", "IOPS", "4 KiB random reads (1 reactor)",
            {"jraid": "jraid", "raw": "raw member"}, log=True)
    axs = ax[1][1]
    for k in kinds:
        pts = [(x["reactors"], x["jraid"]["iops"]) for x in a["scaling"]
               if x["kind"] == k and x["jraid"] is not None]
        if pts:
            axs.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=k)
    axs.set_xlabel("reactors")
    axs.set_xticks(sorted({x["reactors"] for x in a["scaling"]}))
    axs.set_ylabel("IOPS")
    axs.set_title("jraid 4 KiB random writes, QD 128 per reactor")
    axs.legend(fontsize=8)
    axs.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(d, "results.png")
    fig.savefig(path, dpi=110)
    return path


def main():
    d = sys.argv[1]
    rows, meta = load(d)
    a = analyse(rows, meta)
    per_rep_targets(a, rows, meta)
    if "--plot-only" not in sys.argv:
        def strip(o):
            if isinstance(o, dict):
                return {k: strip(v) for k, v in o.items() if k != "bdevperf"}
            if isinstance(o, list):
                return [strip(v) for v in o]
            return o
        with open(os.path.join(d, "results.json"), "w") as f:
            json.dump({"meta": meta, "summary": strip(a), "rows": rows}, f, indent=1)
        md = markdown(a, meta, rows)
        with open(os.path.join(d, "results.md"), "w") as f:
            f.write(md)
        print()
        print("Target ratios (QD 128):")
        for t in a["targets"]:
            print(f"  {t['what']:<62} {t['kind']:<7} {f_ratio(t['value']):>7}  "
                  f"(goal ≥ {t['goal']})  {t['verdict']}")
        print(f"\ntables: {os.path.join(d, 'results.md')}")
    if "--no-plot" not in sys.argv:
        try:
            print(f"plot:   {plot(a, d)}")
        except ImportError:
            print("plot:   skipped (matplotlib not importable)")


if __name__ == "__main__":
    main()

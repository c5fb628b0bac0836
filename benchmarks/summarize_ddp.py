#!/usr/bin/env python3
"""Records and summary for benchmarks/ddp_vs_torch.sh (dptrain data-parallel vs PyTorch DDP).

  summarize_ddp.py record --contender NAME --round R --ranks N --threads T --batch B \\
                          --metrics FILE.jsonl [--stdout LOG] [--window W]
      One JSON line for a `dptrain train` run, from its --metrics file: img_s = median of the
      "step" records' img_s after skipping the first window (warm-up); for multi-rank runs the
      fraction of communication hidden behind backward, from the first source that exists:
        steps   Σ t_comm_exposed_s / Σ t_comm_s over the steady-state step records
        final   t_comm_exposed_s / t_comm_s of the "final" record (whole run)
        stdout  the trainer's "communication: X s all-reduce, Y s exposed" line (whole run)
      and always, when the step records carry it, exposed communication as a fraction of step
      time (Σ t_comm_exposed_s / Σ (t_compute_s + t_comm_exposed_s), steady state).
      "comm_source" names what was used. "ranks_reported" is the final record's ranks; if it
      differs from --ranks the run was not data parallel (see the summary's warning).
  summarize_ddp.py tag KEY=VALUE... < LINE
      Adds fields to each JSON line on stdin (the script tags PyTorch lines with contender, round).
  summarize_ddp.py summary FILE.jsonl
      Median img/s per contender over rounds, the ratio dptrain 2x1 / PyTorch DDP 2x1 (ratio of
      medians and median of per-round ratios), scaling 2x1 vs 1x2, comm hidden; markdown table.
"""
import argparse
import json
import os
import re
import statistics
import sys

# Order of the table; (contender, label, global batch note)
CONTENDERS = [
    ("dptrain-1x2", "dptrain, 1 rank × 2 threads"),
    ("dptrain-2x1", "dptrain, 2 ranks × 1 thread"),
    ("torch-ddp-2x1", "PyTorch DDP (gloo), 2 processes × 1 thread"),
    ("torch-1x2", "PyTorch, 1 process × 2 threads (reference)"),
]
TARGET = 1.5   # issue 4: dptrain 2x1 >= 1.5x PyTorch DDP


def load_jsonl(path):
    rows = []
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line.startswith("{"):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError:
                    pass   # a torn line (e.g. two ranks writing one file): skip it
    return rows


def record(a):
    out = {"bench": "ddp", "impl": "dptrain", "contender": a.contender, "round": a.round,
           "ranks": a.ranks, "threads": a.threads, "batch": a.batch,
           "global_batch": a.ranks * a.batch}
    if a.load is not None:
        out["load1"] = a.load
    try:
        rows = load_jsonl(a.metrics)
    except OSError as e:
        out["error"] = f"no metrics: {e}"
        return out
    steps, seen = [], set()
    for r in rows:
        if r.get("kind") == "step":
            key = (r.get("epoch"), r.get("step"))
            if key not in seen:   # dedupe: several ranks may write one file (pre-DDP binary)
                seen.add(key)
                steps.append(r)
    final = next((r for r in rows if r.get("kind") == "final"), None)
    steps.sort(key=lambda r: r.get("step", 0))
    steady = steps[1:]   # skip the first window (warm-up: allocation, first-touch, JIT)
    if not steady:
        out["error"] = f"{len(steps)} step records: need at least 2 (raise steps or lower window)"
        return out
    rates = [r["img_s"] for r in steady]
    out.update(img_s=round(statistics.median(rates), 1), img_s_min=min(rates),
               img_s_max=max(rates), windows=len(steady))
    if a.window:
        out["window"] = a.window
    if final is not None:
        out["ranks_reported"] = final.get("ranks")
        out["threads_reported"] = final.get("threads")
        if final.get("param_crc"):
            out["param_crc"] = final["param_crc"]
    have = lambda k: all(k in r for r in steady)
    if have("t_comm_exposed_s") and have("t_compute_s"):
        exp = sum(r["t_comm_exposed_s"] for r in steady)
        tot = sum(r["t_compute_s"] + r["t_comm_exposed_s"] for r in steady)
        out["comm_exposed_frac_of_step"] = round(exp / tot, 4) if tot > 0 else None
        out["t_step_ms"] = round(1e3 * tot / len(steady), 3)
    if have("bytes_sent"):
        out["bytes_sent_per_step"] = statistics.median(r["bytes_sent"] for r in steady)
    if a.ranks > 1:
        hidden, source = None, None
        if have("t_comm_s") and have("t_comm_exposed_s"):
            comm = sum(r["t_comm_s"] for r in steady)
            exp = sum(r["t_comm_exposed_s"] for r in steady)
            if comm > 0:
                hidden, source = 1 - exp / comm, "steps: 1 - sum(t_comm_exposed_s)/sum(t_comm_s), steady state"
        if source is None and final is not None and final.get("t_comm_s"):
            hidden = 1 - final.get("t_comm_exposed_s", 0) / final["t_comm_s"]
            source = "final: 1 - t_comm_exposed_s/t_comm_s, whole run"
        if source is None and a.stdout:
            try:
                text = open(a.stdout, errors="replace").read()
            except OSError:
                text = ""
            m = re.search(r"communication:\s*([0-9.]+) s all-reduce,\s*([0-9.]+) s exposed", text)
            if m and float(m.group(1)) > 0:
                hidden = 1 - float(m.group(2)) / float(m.group(1))
                source = "stdout: 1 - exposed/all-reduce seconds, whole run"
        if source is None:
            source = ("none: no total comm time (t_comm_s) anywhere; see "
                      "comm_exposed_frac_of_step")
        out["comm_hidden_frac"] = round(hidden, 4) if hidden is not None else None
        out["comm_source"] = source
    return out


def tag(pairs):
    extra = {}
    for p in pairs:
        k, _, v = p.partition("=")
        try:
            extra[k] = json.loads(v)
        except json.JSONDecodeError:
            extra[k] = v
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue   # stray non-JSON output (warnings): the raw file keeps only records
        r.update(extra)
        print(json.dumps(r))


def med(v):
    return statistics.median(v) if v else float("nan")


def summary(path):
    rows = [r for r in load_jsonl(path) if r.get("bench") == "ddp"]
    ok = [r for r in rows if "error" not in r and "img_s" in r]
    errs = [r for r in rows if "error" in r]
    by = {c: [r for r in ok if r.get("contender") == c] for c, _ in CONTENDERS}
    base = med([r["img_s"] for r in by["torch-ddp-2x1"]])
    print(f"# {path}: {len(ok)} runs, {len(errs)} failed")
    print()
    print("| contender | global batch | img/s (median) | min–max over rounds | runs "
          "| vs PyTorch DDP | comm hidden behind backward |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for c, label in CONTENDERS:
        rs = by[c]
        if not rs:
            continue
        v = [r["img_s"] for r in rs]
        hid = [r["comm_hidden_frac"] for r in rs if r.get("comm_hidden_frac") is not None]
        expo = [r["comm_exposed_frac_of_step"] for r in rs
                if r.get("comm_exposed_frac_of_step") is not None]
        if hid:
            comm = f"{100 * med(hid):.0f}%"
        elif rs[0].get("ranks", 1) > 1 and rs[0].get("impl") == "dptrain" and expo:
            comm = f"n/a (exposed {100 * med(expo):.1f}% of step)"
        else:
            comm = "–"
        ratio = f"{med(v) / base:.2f}×" if base == base and base > 0 else "–"
        print(f"| {label} | {rs[0].get('global_batch', '?')} | {med(v):.1f} "
              f"| {min(v):.1f}–{max(v):.1f} | {len(rs)} | {ratio} | {comm} |")
    print()
    d2, tdp, d1 = by["dptrain-2x1"], by["torch-ddp-2x1"], by["dptrain-1x2"]
    if d2 and tdp:
        r_med = med([r["img_s"] for r in d2]) / base
        pair = {}
        for r in d2:
            pair.setdefault(r.get("round"), {})["d"] = r["img_s"]
        for r in tdp:
            pair.setdefault(r.get("round"), {})["t"] = r["img_s"]
        per_round = [p["d"] / p["t"] for p in pair.values() if "d" in p and "t" in p]
        verdict = "met" if r_med >= TARGET else "NOT met"
        print(f"ratio dptrain 2x1 / PyTorch DDP 2x1: {r_med:.2f}x (ratio of medians), "
              f"{med(per_round):.2f}x (median of {len(per_round)} per-round ratios); "
              f"target >= {TARGET}x: {verdict}")
    if d2 and d1:
        print(f"scaling dptrain 2 ranks x 1 thread / 1 rank x 2 threads: "
              f"{med([r['img_s'] for r in d2]) / med([r['img_s'] for r in d1]):.2f}x")
    t1 = by["torch-1x2"]
    if tdp and t1:
        print(f"scaling PyTorch DDP 2x1 / single process 2 threads: "
              f"{base / med([r['img_s'] for r in t1]):.2f}x")
    srcs = sorted({r["comm_source"] for r in d2 if r.get("comm_source")})
    for s in srcs:
        print(f"comm hidden source: {s}")
    bad = [r for r in ok if r.get("impl") == "dptrain" and r.get("ranks_reported") is not None
           and r["ranks_reported"] != r["ranks"]]
    if bad:
        print(f"WARNING: {len(bad)} dptrain run(s) reported ranks={bad[0]['ranks_reported']} "
              f"under mpirun -np {bad[0]['ranks']}: the binary trained independent processes, "
              "not data parallel; its img/s is one rank's alone and not comparable")
    crcs = [r for r in d2 if r.get("param_crc")]
    if len({r["param_crc"] for r in crcs}) > 1:
        print("note: param_crc differs between rounds of dptrain 2x1 (expected equal for equal "
              "seed/config/ranks)")
    loads = [r["load1"] for r in rows if isinstance(r.get("load1"), (int, float))]
    if loads:
        print(f"1-min load average at run starts: median {med(loads):.2f}, max {max(loads):.2f}"
              f" ({os.cpu_count()} cpus here; above ~2 the machine was shared and the numbers are noisy)")
    for r in errs:
        print(f"failed: {r.get('contender')} round {r.get('round')}: {r['error']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    rp = sub.add_parser("record")
    rp.add_argument("--contender", required=True)
    rp.add_argument("--round", type=int, default=0)
    rp.add_argument("--ranks", type=int, required=True)
    rp.add_argument("--threads", type=int, required=True)
    rp.add_argument("--batch", type=int, required=True)
    rp.add_argument("--metrics", required=True)
    rp.add_argument("--stdout")
    rp.add_argument("--window", type=int)
    rp.add_argument("--load", type=float)
    tp = sub.add_parser("tag")
    tp.add_argument("pairs", nargs="*")
    sp = sub.add_parser("summary")
    sp.add_argument("file")
    a = ap.parse_args()
    if a.cmd == "record":
        print(json.dumps(record(a)))
    elif a.cmd == "tag":
        tag(a.pairs)
    else:
        summary(a.file)


if __name__ == "__main__":
    main()

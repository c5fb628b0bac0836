#!/usr/bin/env python3
"""Table of benchmarks/compress_accuracy.sh's runs: per rank count and codec, the final test
accuracy, its difference from the uncompressed run at the same rank count (points), the mean
bytes each rank sent per step (the metrics' bytes_sent, over the compressed steps and all of
them), the mean compress_ratio (both count what this rank handed a transport: buckets that auto
reduced through shared memory on one host count 0), the bucket plan's ratio (what the codec
itself sends over the fp32 ring's bytes) and the wall time (not a comparison: runs may share the
machine).

Usage: benchmarks/summarize_compress_acc.py [DIR=benchmarks/results/compress-acc] [--markdown]
"""
import glob
import json
import os
import sys


def load(path):
    cfg, steps, final = {}, [], None
    with open(path) as f:
        for line in f:
            try:
                r = json.loads(line)
            except ValueError:
                continue
            k = r.get("kind")
            if k == "config":
                cfg = r
            elif k == "step":
                steps.append(r)
            elif k == "final":
                final = r
    return cfg, steps, final


def plan_ratio(txt):
    """The bucket plan's 'the codec sends X% of its bytes', weighted by the buckets' floats (the
    codec's own volume over the fp32 ring's, whatever algorithm auto picked); 1 without one."""
    import re
    tot = sent = 0.0
    try:
        with open(txt) as f:
            for line in f:
                m = re.match(r"\s+bucket \d+: (\d+) floats .*the codec sends ([0-9.eE+-]+)%", line)
                if m:
                    tot += float(m.group(1))
                    sent += float(m.group(1)) * float(m.group(2)) / 100
    except OSError:
        pass
    return sent / tot if tot else 1.0


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    md = "--markdown" in sys.argv
    d = args[0] if args else "benchmarks/results/compress-acc"
    rows = []
    for p in sorted(glob.glob(os.path.join(d, "np*-*.jsonl"))):
        cfg, steps, final = load(p)
        if not final:
            continue
        flags = cfg.get("flags", {})
        codec, cs = flags.get("compress", "?"), str(flags.get("compress-start", "0"))
        start = int(cs) if cs.isdigit() else -1   # "auto": the run's header says which step
        np_ = int(final.get("ranks", cfg.get("ranks", 0)))
        comp = [s for s in steps if s["step"] > start] or steps
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
        rows.append({"np": np_, "codec": codec, "start": start, "acc": final["test_acc"],
                     "wall": final["wall_s"], "bytes": mean([s["bytes_sent"] for s in comp]),
                     "ratio": mean([s.get("compress_ratio", 1.0) for s in comp]),
                     "epochs": flags.get("epochs", "?"),
                     "plan": plan_ratio(p[:-len(".jsonl")] + ".txt")})
    base = {r["np"]: r["acc"] for r in rows if r["codec"] == "none"}
    hdr = ["np", "codec", "--compress-start", "epochs", "test acc %", "vs none (points)",
           "KB/step/rank", "ratio", "plan ratio", "wall s"]
    out = []
    for r in sorted(rows, key=lambda r: (r["np"], r["codec"] != "none", r["codec"], r["start"])):
        delta = 100 * (r["acc"] - base[r["np"]]) if r["np"] in base else float("nan")
        out.append([str(r["np"]), r["codec"], str(r["start"]) if r["start"] >= 0 else "auto",
                    str(r["epochs"]),
                    "%.2f" % (100 * r["acc"]), "%+.2f" % delta, "%.1f" % (r["bytes"] / 1e3),
                    "%.4f" % r["ratio"], "%.4f" % r["plan"], "%.0f" % r["wall"]])
    if md:
        print("| " + " | ".join(hdr) + " |")
        print("|" + "---|" * len(hdr))
        for o in out:
            print("| " + " | ".join(o) + " |")
    else:
        w = [max(len(h), *(len(o[i]) for o in out)) if out else len(h) for i, h in enumerate(hdr)]
        print("  ".join(h.ljust(w[i]) for i, h in enumerate(hdr)))
        for o in out:
            print("  ".join(c.ljust(w[i]) for i, c in enumerate(o)))


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Summary of benchmarks/models_vs_torch.sh JSON lines: per model and thread count, the median
over rounds of each contender's img/s (each run's own median step), and the ratio of dptrain's
best contender to torch's best (over every torch version, format and compile setting), and to
each torch version's best.

Contenders: dptrain blocked, dptrain nchw; torch VERSION eager nchw, eager channels_last,
compile FORMAT (the format the script picked for torch.compile, per round).

Usage: benchmarks/summarize_models.py benchmarks/results/models_vs_torch/DATE.jsonl
"""
import json
import statistics
import sys


def contender(r):
    if r["impl"] == "dptrain":
        return ("dptrain", f"dptrain {r['layout']}")
    mode = f"compile {r['format']}" if r.get("compile") else f"eager {r['format']}"
    return (f"torch {r['torch']}", f"torch {r['torch']} {mode}")


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    meta = next((r for r in rows if r.get("bench") == "meta"), None)
    if meta:
        print(f"# {meta['cpu']}, {meta['nproc']} cpus; {meta['dptrain']}; "
              + "; ".join(f"{py}: torch {v}" for py, v in meta["torch"].items())
              + f"; {meta['rounds']} rounds x {meta['steps']} steps")
    runs = [r for r in rows if r.get("bench") == "train"]
    models = list(dict.fromkeys(r["model"] for r in runs))   # in the order they ran
    print(f"{'model':<16} {'threads':>7} {'batch':>5} {'contender':<40} {'median':>12} {'rounds':>6}")
    for m in models:
        for t in sorted({r["threads"] for r in runs if r["model"] == m}):
            sel = [r for r in runs if r["model"] == m and r["threads"] == t]
            groups = {}
            for r in sel:
                groups.setdefault(contender(r), []).append(r["img_s"])
            best = {}
            for (who, label), xs in groups.items():
                med = statistics.median(xs)
                best[who] = max(best.get(who, 0.0), med)
                print(f"{m:<16} {t:>7} {sel[0]['batch']:>5} {label:<40} {med:>8.1f} img/s "
                      f"{len(xs):>5}")
            torch_best = max((v for k, v in best.items() if k.startswith("torch")), default=0.0)
            if "dptrain" in best and torch_best:
                extra = "".join(f", / {k} best: {best['dptrain'] / v:.2f}x"
                                for k, v in best.items() if k.startswith("torch"))
                print(f"{m:<16} {t:>7} ratio dptrain best / torch best = "
                      f"{best['dptrain'] / torch_best:.2f}x{extra if len(best) > 2 else ''}")


if __name__ == "__main__":
    main()

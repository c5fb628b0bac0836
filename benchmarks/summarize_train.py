#!/usr/bin/env python3
"""Summary of benchmarks/train_vs_torch.sh JSON lines: median img/s per contender, the ratio of
dptrain's best to PyTorch's best per thread count, and GFLOP/s against the measured sgemm peak.

GFLOP/s counts the direct-convolution FLOPs (3x forward); with Winograd convolutions fewer
multiplications are done, so that figure is an effective rate and can exceed the GEMM peak.

Usage: benchmarks/summarize_train.py build/bench/train_vs_torch.jsonl
"""
import json
import statistics
import sys

CONTENDERS = [  # (label, predicate on a train record)
    ("dptrain blocked+winograd",
     lambda r: r["impl"] == "dptrain" and r["layout"] == "blocked" and r.get("winograd", True)),
    ("dptrain blocked direct",
     lambda r: r["impl"] == "dptrain" and r["layout"] == "blocked" and r.get("winograd") is False),
    ("dptrain nchw",
     lambda r: r["impl"] == "dptrain" and r["layout"] == "nchw"),
    ("pytorch nchw",
     lambda r: r["impl"].startswith("pytorch") and r["layout"] == "nchw"),
    ("pytorch channels_last",
     lambda r: r["impl"].startswith("pytorch") and r["layout"] == "channels_last"),
]


def before_after(rows):
    """With DPT_BEFORE: each dptrain contender's median for both builds, and after / before."""
    if not any(r.get("build") == "before" for r in rows):
        return
    print(f"\n{'threads':>7} {'contender':<28} {'after':>10} {'before':>10} {'after/before':>13}")
    for t in sorted({r["threads"] for r in rows}):
        for label, pred in CONTENDERS:
            if not label.startswith("dptrain"):
                continue
            v = {}
            for build in ("after", "before"):
                xs = [r["img_s"] for r in rows if r.get("bench") == "train" and r["threads"] == t
                      and pred(r) and r.get("build", "after") == build]
                v[build] = statistics.median(xs) if xs else float("nan")
            print(f"{t:>7} {label:<28} {v['after']:>10.1f} {v['before']:>10.1f} "
                  f"{v['after'] / v['before']:>13.3f}")


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    before_after(rows)
    rows = [r for r in rows if r.get("build", "after") == "after"]

    def med(pred, key):
        v = [r[key] for r in rows if pred(r)]
        return (statistics.median(v), len(v)) if v else (float("nan"), 0)

    print(f"{'threads':>7} {'contender':<28} {'median':>12} {'runs':>5}")
    for t in sorted({r["threads"] for r in rows}):
        best, res = {}, {}
        for label, pred in CONTENDERS:
            m, n = med(lambda r: r.get("bench") == "train" and r["threads"] == t and pred(r),
                       "img_s")
            if not n:
                continue
            res[label] = m
            print(f"{t:>7} {label:<28} {m:>8.1f} img/s {n:>3}")
            who = label.split()[0]
            best[who] = max(best.get(who, 0.0), m)
        peak, lib = 0.0, "none"
        for impl in ("openblas", "onednn"):
            g, n = med(lambda r: r.get("bench") == "sgemm" and r["threads"] == t
                       and r.get("impl", "openblas") == impl, "gflops")
            if n:
                print(f"{t:>7} {'sgemm ' + impl:<28} {g:>8.1f} GF/s  {n:>3}")
                if g > peak:
                    peak, lib = g, impl
        if "dptrain" in best and "pytorch" in best:
            print(f"{t:>7} ratio dptrain-best / pytorch-best = "
                  f"{best['dptrain'] / best['pytorch']:.2f}x")
            direct = res.get("dptrain blocked direct")
            if direct:
                print(f"{t:>7} ratio dptrain blocked direct / pytorch-best = "
                      f"{direct / best['pytorch']:.2f}x")
        for label, pred in CONTENDERS[:2]:
            gf, n = med(lambda r: r.get("bench") == "train" and r["threads"] == t and pred(r),
                        "gflops")
            if n and peak:
                print(f"{t:>7} {label}: {gf:.1f} GFLOP/s (direct-equivalent) = "
                      f"{100 * gf / peak:.0f}% of the sgemm peak {peak:.1f} ({lib})")


if __name__ == "__main__":
    main()

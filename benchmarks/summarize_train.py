#!/usr/bin/env python3
"""Summary of benchmarks/train_vs_torch.sh JSON lines: median img/s per contender, ratios, GFLOP/s."""
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def med(pred, key):
    v = [r[key] for r in rows if pred(r)]
    return statistics.median(v) if v else float("nan"), len(v)
print(f"{'threads':>7} {'contender':<26} {'img/s (median)':>15} {'runs':>5}")
for t in (1, 2):
    best = {}
    for impl in ("dptrain", "pytorch"):
        for layout in (("blocked", "nchw") if impl == "dptrain" else ("nchw", "channels_last")):
            m, n = med(lambda r: r.get("bench") == "train" and r["threads"] == t
                       and r["impl"].startswith(impl) and r["layout"] == layout, "img_s")
            print(f"{t:>7} {impl + ' ' + layout:<26} {m:>15.1f} {n:>5}")
            best[impl] = max(best.get(impl, 0), m)
    peak, lib = 0.0, "none"
    for impl in ("openblas", "onednn"):
        g, n = med(lambda r: r.get("bench") == "sgemm" and r["threads"] == t
                   and r.get("impl", "openblas") == impl, "gflops")
        if n:
            print(f"{t:>7} {'sgemm ' + impl:<26} {g:>13.1f} GF {n:>5}")
            if g > peak:
                peak, lib = g, impl
    gf, _ = med(lambda r: r.get("bench") == "train" and r["threads"] == t
                and r["impl"] == "dptrain" and r["layout"] == "blocked", "gflops")
    print(f"{t:>7} ratio dptrain-best / pytorch-best = {best['dptrain'] / best['pytorch']:.2f}x;"
          f" dptrain blocked {gf:.1f} GFLOP/s = {100 * gf / peak:.0f}% of the sgemm peak {peak:.1f} ({lib})")

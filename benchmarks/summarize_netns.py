#!/usr/bin/env python3
"""Summary of the all-reduce runs across network-namespace hosts (benchmarks/netns_allreduce.sh).

Per link configuration (rate, MTU, hosts): the median over rounds of every algorithm's time and
busbw (busbw = algbw * 2(p-1)/p, as nccl-tests) as % of the nominal link rate; an alpha-beta fit
of those links; measured against predicted per algorithm and size with the relative error; the
size below which rd beats ring; and the issue-3 targets (ring/rhd busbw >= 95% of the link at
200 Mbit/s and >= 90% at 1 Gbit/s for >= 16 MiB; model error within 15%).

The model is the one of src/comm/cost.c (mirrored in predict() below; keep the two in step):
  ring  (2(p-1) + s - 1) alpha + 2(p-1)/p n beta + (p-1)/p n gamma,  s = ceil(n / p / S)
  rd    log2(p2) (alpha + n beta + n gamma)        (+ 2 alpha + 2 n beta + n gamma if p != p2)
  rhd   2 log2(p2) alpha + 2(p2-1)/p2 n beta + (p2-1)/p2 n gamma          (+ the same fold-in)
  tree  2 ceil(log2 p) (alpha + n beta) + ceil(log2 p) n gamma  (binomial: cost.c does not model
        the double binary tree that large buffers use, so tree's error above S is not a target)
  mpi   Open MPI's choice as bench_allreduce.c mirrors it: rd below 8 KiB (256 KiB at p = 2), rhd
gamma is the reduction speed the bench measured on rank 0 in the same runs (median); alpha and
beta are fitted by least relative error, sum ((pred - meas) / meas)^2, over the ring and rd
medians (both are linear in alpha and beta) of the sizes up to 16 KiB (latency) and from 1 MiB
(bandwidth): in between, the shaper's token buckets let a message that follows an idle gap leave
faster than the link rate (see FIT_SKIP); those sizes are still compared with the model.

Usage: benchmarks/summarize_netns.py [--session ID[,ID...] | --all] [--min-busbw-bytes N]
                                    results.jsonl
  Default: the latest session in the file; several sessions are pooled (medians over all runs).
"""
import argparse
import collections
import json
import math
import statistics
import sys

ALGOS = ("ring", "rhd", "rd", "tree", "mpi", "auto")
FIT_ALGOS = ("ring", "rd")
TARGET_ALGOS = ("ring", "rd", "rhd")   # model error targets
BIG = 16 << 20                         # busbw targets hold from 16 MiB
# Sizes left out of the fit: after an idle gap the shaper's buckets (128 KiB, and one 64 KiB GSO
# packet at the peak rate) let a message this size leave faster than the link rate, so it is
# latency plus less than n beta; every size is still compared with the fitted model.
FIT_SKIP = (16 << 10, 1 << 20)


def ceil_log2(p):
    k = 0
    while (1 << k) < p:
        k += 1
    return k


def floor_pow2(p):
    q = 1
    while q * 2 <= p:
        q *= 2
    return q


def terms(algo, p, n, seg):
    """(alpha coefficient, beta coefficient, gamma coefficient) of cost.c's formula."""
    if p == 1 or n == 0:
        return 0.0, 0.0, 0.0
    q = floor_pow2(p)
    fa, fb, fg = (2.0, 2.0 * n, float(n)) if q != p else (0.0, 0.0, 0.0)
    if algo == "ring":
        s = max(1.0, math.ceil(n / p / seg)) if seg else 1.0
        return 2.0 * (p - 1) + s - 1, 2.0 * (p - 1) / p * n, (p - 1) / p * n
    if algo == "rd":
        k = ceil_log2(q)
        return k + fa, k * n + fb, k * n + fg
    if algo == "rhd":
        k = ceil_log2(q)
        return 2.0 * k + fa, 2.0 * (q - 1) / q * n + fb, (q - 1) / q * n + fg
    if algo == "tree":
        d = ceil_log2(p)
        return 2.0 * d, 2.0 * d * n, float(d * n)
    return None


def model_name(algo, p, n, choice):
    if algo == "mpi":
        return "rd" if n < ((256 << 10) if p == 2 else (8 << 10)) else "rhd"
    if algo == "auto":
        return choice
    return algo


def predict(algo, p, n, seg, a, b, g):
    t = terms(algo, p, n, seg)
    return None if t is None else t[0] * a + t[1] * b + t[2] * g


def fit(points, p, seg, g):
    """Least-relative-error alpha, beta over (algo, n, t) with gamma fixed."""
    sxx = sxy = syy = rx = ry = 0.0
    for algo, n, t in points:
        ca, cb, cg = terms(algo, p, n, seg)
        w = 1.0 / (t * t)
        y = t - cg * g
        sxx += w * ca * ca
        sxy += w * ca * cb
        syy += w * cb * cb
        rx += w * ca * y
        ry += w * cb * y
    det = sxx * syy - sxy * sxy
    if abs(det) < 1e-300:
        return float("nan"), float("nan")
    return (rx * syy - ry * sxy) / det, (sxx * ry - sxy * rx) / det


def fit1(points, p, seg, g, which, known):
    """Least-relative-error value of one parameter (which: 0 alpha, 1 beta) with the other fixed
    at `known` and gamma at g, over (algo, n, t)."""
    num = den = 0.0
    for algo, n, t in points:
        ca, cb, cg = terms(algo, p, n, seg)
        x = (ca, cb)[which]
        y = t - cg * g - (cb, ca)[which] * known
        num += x * y / (t * t)
        den += x * x / (t * t)
    return num / den if den > 0 else float("nan")


def fit_staged(points, p, seg, g):
    """Each parameter from the sizes where it dominates: beta from the sizes >= FIT_SKIP[1] (alpha
    is < 1% of those times), then alpha from the sizes <= FIT_SKIP[0] given beta. A joint fit over
    both ends lets the many small sizes pull beta 20-30% off the link rate (their n beta is small
    and noisy), which then misses every large size."""
    big = [q for q in points if q[1] >= FIT_SKIP[1]]
    small = [q for q in points if q[1] <= FIT_SKIP[0]]
    beta = fit1(big, p, seg, g, 1, 0.0)
    alpha = fit1(small, p, seg, g, 0, beta)
    beta = fit1(big, p, seg, g, 1, alpha)   # once more with alpha's share
    return alpha, beta


def parse_bytes(s):
    s = s.strip().upper()
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(s[-1:], 1)
    return int(float(s[:-1] if s[-1:] in "KMG" else s) * mult)


def fmt_bytes(n):
    for unit, k in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= k and n % k == 0:
            return f"{n // k} {unit}"
    return f"{n} B"


def perc(x):
    return "—" if x != x else f"{100 * x:.0f}%"


def pct(x):
    return "—" if x is None or x != x else f"{100 * x:+.0f}%"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("results")
    ap.add_argument("--session", help="summarize these sessions, comma-separated (default: the "
                    "latest)")
    ap.add_argument("--all", action="store_true", help="every session in the file together")
    ap.add_argument("--min-busbw-bytes", default="1M", help="smallest size of the busbw table")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.results) if line.strip().startswith("{")]
    rows = [r for r in rows if "session" in r]
    if not rows:
        sys.exit(f"{args.results}: no tagged rows (run benchmarks/netns_allreduce.sh)")
    if not args.all:
        want = (args.session or max(r["session"] for r in rows)).split(",")
        rows = [r for r in rows if r["session"] in want]
        if not rows:
            sys.exit(f"{args.results}: no rows of session {args.session}")
    print("# session " + ", ".join(sorted({r["session"] for r in rows})))
    min_busbw = parse_bytes(args.min_busbw_bytes)

    cfgs = collections.OrderedDict()
    for r in rows:
        key = (r["rate_Bps"], r["mtu"], r["hosts"], r["rate"], r.get("segment", "256K"))
        c = cfgs.setdefault(key, {"meas": collections.defaultdict(list), "gamma": [],
                                  "choice": collections.defaultdict(list), "loads": {},
                                  "wrong": 0, "np": None})
        run = (r["session"], r["run"])
        c["loads"][run] = max(c["loads"].get(run, 0.0), r.get("load1", 0.0))
        if r.get("algo") == "model":
            if r.get("gamma_GBs", 0) > 0:
                c["gamma"].append(1e-9 / r["gamma_GBs"])
        elif "time_us" in r:
            c["np"] = r["np"]
            c["meas"][(r["algo"], r["bytes"])].append((r["time_us"] * 1e-6, r["busbw_GBs"] * 1e9))
            c["wrong"] += r.get("wrong", 0)
            if r.get("choice"):
                c["choice"][r["bytes"]].append(r["choice"])

    summary = []
    for key in sorted(cfgs, key=lambda k: (k[0], -k[1])):
        rate_Bps, mtu, hosts, rate, seg_s = key
        c = cfgs[key]
        p, seg = c["np"], parse_bytes(seg_s)
        med = {k: (statistics.median(t for t, _ in v), statistics.median(b for _, b in v), len(v))
               for k, v in c["meas"].items()}
        g = statistics.median(c["gamma"]) if c["gamma"] else 0.0
        sizes = sorted({n for _, n in med})
        algos = [a for a in ALGOS if any((a, n) in med for n in sizes)]
        pts = [(a, n, med[(a, n)][0]) for a in FIT_ALGOS for n in sizes
               if (a, n) in med and not FIT_SKIP[0] < n < FIT_SKIP[1]]
        alpha, beta = fit_staged(pts, p, seg, g)
        runs = sorted(c["loads"])
        print(f"\n## {rate} ({rate_Bps / 1e6:.1f} MB/s), MTU {mtu}, {hosts} hosts x 1 rank, "
              f"segment {seg_s}: medians over {len(runs)} runs (load average at start: "
              + ", ".join(f"{c['loads'][r]:.1f}" for r in runs) + ")")
        print(f"\nfit over ring and rd (beta from >= 1 MiB, then alpha from <= 16 KiB): alpha = "
              f"{alpha * 1e6:.1f} us, beta = "
              f"{beta * 1e9:.3f} ns/B (= {1e-6 / beta if beta > 0 else 0:.2f} MB/s, "
              f"{100 / (beta * rate_Bps) if beta > 0 else 0:.1f}% of the nominal rate), "
              f"gamma = {1e-9 / g if g else 0:.2f} GB/s (measured); wrong elements: {c['wrong']}")

        print(f"\nbusbw in MB/s (% of the {rate} link), sizes >= {fmt_bytes(min_busbw)}:\n")
        print("| bytes | " + " | ".join(algos) + " |")
        print("|---:|" + "---:|" * len(algos))
        for n in sizes:
            if n < min_busbw:
                continue
            cells = []
            for a in algos:
                if (a, n) not in med:
                    cells.append("—")
                    continue
                b = med[(a, n)][1]
                cell = f"{b / 1e6:.2f} ({100 * b / rate_Bps:.1f}%)"
                if a == "auto" and c["choice"].get(n):
                    cell += " " + collections.Counter(c["choice"][n]).most_common(1)[0][0]
                cells.append(cell)
            print(f"| {fmt_bytes(n)} | " + " | ".join(cells) + " |")

        print("\ntime in us, measured / predicted (error = measured vs predicted):\n")
        print("| bytes | " + " | ".join(f"{a} meas | pred | err" for a in algos) + " | rd/ring |")
        print("|---:|" + "---:|---:|---:|" * len(algos) + "---:|")
        errs = collections.defaultdict(list)
        for n in sizes:
            cells = []
            for a in algos:
                if (a, n) not in med:
                    cells += ["—", "—", "—"]
                    continue
                t = med[(a, n)][0]
                ch = collections.Counter(c["choice"].get(n, ["ring"])).most_common(1)[0][0]
                pr = predict(model_name(a, p, n, ch), p, n, seg, alpha, beta, g)
                e = (t - pr) / pr if pr else None
                if e is not None:
                    errs[a].append((n, e))
                cells += [f"{t * 1e6:.0f}", "—" if pr is None else f"{pr * 1e6:.0f}", pct(e)]
            rr = (med[("rd", n)][0] / med[("ring", n)][0]
                  if ("rd", n) in med and ("ring", n) in med else float("nan"))
            print(f"| {fmt_bytes(n)} | " + " | ".join(cells) + f" | {rr:.2f} |")

        rd_wins = [n for n in sizes if ("rd", n) in med and ("ring", n) in med
                   and med[("rd", n)][0] < med[("ring", n)][0]]
        ring_wins = [n for n in sizes if ("rd", n) in med and ("ring", n) in med
                     and med[("rd", n)][0] >= med[("ring", n)][0]]
        first_ring = min(ring_wins) if ring_wins else None
        exceptions = [n for n in rd_wins if first_ring is not None and n > first_ring]
        below = [n for n in rd_wins if first_ring is None or n < first_ring]
        if not ring_wins:
            cross = "rd faster than ring at every size"
        elif not rd_wins:
            cross = "ring faster than rd at every size"
        else:
            cross = ((f"rd faster than ring up to {fmt_bytes(max(below))}, " if below else "")
                     + f"ring faster from {fmt_bytes(first_ring)}")
        if exceptions:
            cross += " (rd faster again at " + ", ".join(fmt_bytes(n) for n in exceptions) + ")"
        a_, b_ = 4 * alpha, 0.5 * beta   # p = 4: rd - ring = -4 alpha + 0.5 n beta (+ gamma terms)
        model_cross = f"; the fit puts it at {fmt_bytes(int(a_ / b_)) if p == 4 and b_ > 0 else '?'}"
        print(f"\ncrossover: {cross}" + (model_cross if p == 4 and b_ > 0 else ""))

        big = {a: [100 * med[(a, n)][1] / rate_Bps for n in sizes if n >= BIG and (a, n) in med]
               for a in ("ring", "rhd")}
        maxerr = {a: max((abs(e) for _, e in errs[a]), default=float("nan")) for a in TARGET_ALGOS}
        bigerr = {a: max((abs(e) for n, e in errs[a] if n >= 1 << 20), default=float("nan"))
                  for a in TARGET_ALGOS}
        summary.append((rate, rate_Bps, mtu, big, maxerr, bigerr, cross))
        print("max |error| per algorithm over all sizes: "
              + ", ".join(f"{a} {100 * max(abs(e) for _, e in v):.0f}%" for a, v in errs.items()
                          if v))

    print("\n## Targets (issue 3, across hosts)\n")
    print("| rate | MTU | ring busbw >= 16 MiB | rhd busbw >= 16 MiB | target | met | "
          "max model error ring / rd / rhd, all sizes | the same, >= 1 MiB |")
    print("|---|---:|---|---|---:|---|---|---|")
    for rate, rate_Bps, mtu, big, maxerr, bigerr, cross in summary:
        target = 95 if rate_Bps <= 25e6 else 90
        lo = min((x for a in big for x in big[a]), default=float("nan"))
        met = "yes" if lo >= target else "no"
        print(f"| {rate} | {mtu} | " + ", ".join(f"{x:.1f}%" for x in big["ring"]) + " | "
              + ", ".join(f"{x:.1f}%" for x in big["rhd"]) + f" | {target}% | {met} | "
              + " / ".join(perc(maxerr[a]) for a in TARGET_ALGOS) + " | "
              + " / ".join(perc(bigerr[a]) for a in TARGET_ALGOS) + " |")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Summary of `dptrain bench allreduce --json` runs (benchmarks/allreduce.sh).

Per (np, size): the median over runs of each algorithm's time and busbw, our best algorithm
against MPI_Allreduce (busbw ratio; latency ratio for small messages), `auto` on an ordinary
buffer against the best algorithm on an ordinary buffer (auto/best), and `auto0copy` (auto on a
buffer inside the shm window) against the best for such a buffer: shm0copy or a message-passing
algorithm (auto0/best) -- these two as the median
over runs of the ratio inside each run (each run is its own mpirun, and on an oversubscribed
node the same algorithm's time moves 20-30% from run to run; inside a run `dptrain bench
allreduce` interleaves the timed blocks of all algorithms, window variants included),
the memcpy-bound limit (median per-rank copy bandwidth with all ranks copying at once: an
on-node all-reduce moves every byte of busbw through at least one copy per rank), and `wrong`
(must be 0 everywhere).

Usage: benchmarks/summarize_allreduce.py build/bench/allreduce.jsonl
"""
import collections
import json
import statistics
import sys

OURS = ("ring", "tree", "rd", "rhd", "shm", "shm0copy", "hier")


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    meas = collections.defaultdict(list)      # (np, algo, bytes) -> [(time_us, busbw)]
    copy = collections.defaultdict(list)      # np -> [copy_GBs]
    wrong = 0
    for r in rows:
        if r.get("algo") == "memcpy":
            copy[r["np"]].append(r["copy_GBs"])
        elif "time_us" in r:
            meas[(r["np"], r["algo"], r["bytes"])].append((r["time_us"], r["busbw_GBs"],
                                                          r.get("predicted_us", -1)))
            wrong += r.get("wrong", 0)
    per_run = {}                               # (run, np, algo, bytes) -> time_us
    for r in rows:
        if "time_us" in r:
            per_run[(r.get("run", 0), r["np"], r["algo"], r["bytes"])] = r["time_us"]

    def run_ratio(np_, s, algo, best_of):
        ratios = []
        for run in sorted({k[0] for k in per_run}):
            mine = per_run.get((run, np_, algo, s))
            others = [per_run[(run, np_, a, s)] for a in best_of if (run, np_, a, s) in per_run]
            if mine and others and min(others) > 0:
                ratios.append(mine / min(others))
        return statistics.median(ratios) if ratios else float("nan")

    med = {k: (statistics.median(t for t, _, _ in v), statistics.median(b for _, b, _ in v),
               statistics.median(p for _, _, p in v), len(v)) for k, v in meas.items()}
    for np_ in sorted({k[0] for k in med}):
        algos = sorted({k[1] for k in med if k[0] == np_},
                       key=lambda a: (a not in OURS, a == "auto", a))
        sizes = sorted({k[2] for k in med if k[0] == np_})
        limit = statistics.median(copy[np_]) if copy[np_] else float("nan")
        print(f"\nnp = {np_}: medians of {max(v[3] for k, v in med.items() if k[0] == np_)} runs;"
              f" memcpy-bound limit {limit:.2f} GB/s per rank")
        print(f"{'bytes':>11} " + " ".join(f"{a + ' us':>10} {a + ' GB/s':>10}" for a in algos)
              + f" {'best':>8} {'vs mpi':>7} {'%limit':>7} {'auto/best':>9} {'auto0/best':>10}")
        for s in sizes:
            line = f"{s:>11} "
            for a in algos:
                t, b, _, _ = med.get((np_, a, s), (float("nan"),) * 4)
                line += f"{t:>10.1f} {b:>10.3f} "
            ours = [(med[(np_, a, s)][0], a) for a in algos if a in OURS and (np_, a, s) in med]
            best_t, best = min(ours) if ours else (float("nan"), "-")
            mpi = med.get((np_, "mpi", s))
            ratio = mpi[0] / best_t if mpi and best_t > 0 else float("nan")   # >1: ours faster
            pct = 100 * med[(np_, best, s)][1] / limit if ours and limit == limit else float("nan")
            heap_algos = [a for a in OURS if a != "shm0copy"]
            auto_r = run_ratio(np_, s, "auto", heap_algos)
            # on a window buffer shm runs as shm0copy; the others treat it as any buffer
            auto0_r = run_ratio(np_, s, "auto0copy", [a for a in OURS if a != "shm"])
            print(line + f"{best:>8} {ratio:>6.2f}x {pct:>6.0f}% {auto_r:>9.2f} {auto0_r:>10.2f}")
    print(f"\nwrong elements over all runs: {wrong}")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Summary of benchmarks/dvc_pipeline.sh JSON lines: medians over rounds of prepare images/s by
thread count, shard bytes against JPEG and pixel bytes, loader img/s (shard open, then per worker
setting) and the ratio of loader img/s to the training step's img/s at the same batch.

Usage: benchmarks/summarize_dvc.py build/bench/dvc_pipeline.jsonl
"""
import json
import statistics
import sys


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    rows = [json.loads(line) for line in open(sys.argv[1]) if line.strip()]
    rounds = len({r["round"] for r in rows if r["round"] > 0})
    by = lambda **kw: [r for r in rows if all(r.get(k) == v for k, v in kw.items())]

    print(f"\n## prepare (decode + resize to 64 px + zstd + write), median of {rounds}")
    print("| threads | images | wall s | images/s |")
    print("|---:|---:|---:|---:|")
    for t in (1, 2):
        rs = by(bench="prepare", threads=t)
        if rs:
            w = med([r["wall_s"] for r in rs])
            print(f"| {t} | {rs[0]['images']} | {w:.2f} | {rs[0]['images'] / w:.0f} |")

    print("\n## sizes")
    print("| side | images | JPEG MB | shard MB | pixel MB | shard / JPEG | shard / pixels |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for r in by(bench="sizes"):
        j, s, p = r["jpeg_bytes"], r["shard_bytes"], r["pixel_bytes"]
        print(f"| {r['size']} | {r['images']} | {j / 1e6:.1f} | {s / 1e6:.1f} | {p / 1e6:.1f} "
              f"| {s / j:.2f} | {s / p:.2f} |")

    print(f"\n## loader (random resized crop + flip + normalize), median of {rounds}")
    print("| side | open img/s | workers | batch | batches/s | img/s |")
    print("|---:|---:|---|---:|---:|---:|")
    loader = {}
    for size in (64, 32):
        op = med([r["img_s"] for r in by(bench="loader_open", size=size)])
        for w in ("sync", "1", "2"):
            rs = by(bench="loader", size=size, workers=w)
            if not rs:
                continue
            img = med([r["img_s"] for r in rs])
            loader[(size, w)] = img
            print(f"| {size} | {op:.0f} | {w} | {rs[0]['batch']} "
                  f"| {med([r['batches_s'] for r in rs]):.1f} | {img:.0f} |")

    print(f"\n## training step vs loader (same batch), median of {rounds}")
    print("| model | threads | step img/s | loader 1 worker / step | loader 2 workers / step |")
    print("|---|---:|---:|---:|---:|")
    for size, model in ((64, "dvc-resnet"), (32, "dvc-small")):
        for t in (1, 2):
            rs = [r for r in by(bench="train", size=size, threads=t)]
            if not rs:
                continue
            step = med([r["img_s"] for r in rs])
            l1, l2 = loader.get((size, "1"), float("nan")), loader.get((size, "2"), float("nan"))
            print(f"| {model} ({size} px) | {t} | {step:.0f} | {l1 / step:.1f} | {l2 / step:.1f} |")


if __name__ == "__main__":
    main()

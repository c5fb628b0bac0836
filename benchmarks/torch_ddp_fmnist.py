#!/usr/bin/env python3
"""PyTorch DistributedDataParallel (gloo) twin of `dptrain train` on fmnist-cnn, for
benchmarks/ddp_vs_torch.sh.

Same network as models/fmnist-cnn.cfg and benchmarks/torch_fmnist.py (conv3x3 32, conv3x3 32,
maxpool, conv3x3 64, conv3x3 64, maxpool, fc 128, fc 10; BN+ReLU after each conv, no conv bias;
ReLU after fc 128), same loss (softmax cross-entropy, label smoothing 0.1) and optimizer (SGD,
Nesterov momentum 0.9, weight decay 5e-4 on all parameters, as torch_fmnist.py). Unlike
torch_fmnist.py it trains on the real Fashion-MNIST training set, read from the IDX files that
dptrain reads (/usr/share/datasets/fashion-mnist, Debian's dataset-fashion-mnist; .gz or not),
normalised with dptrain's mean/std, each rank taking its shard of every epoch through
DistributedSampler (shuffled, seeded, drop_last). Batch assembly is part of the timed step.

--mode ddp-gloo (default): --ranks N processes x --threads T threads (default 2 x 1), per-rank
batch --batch B (global N*B), DistributedDataParallel over the gloo backend with its defaults
(bucket_cap_mb 25; torch 1.13 runs the first iteration with one bucket, then rebuilds them in
backward order with a 1 MiB first bucket, so here about two: the fc layers' ~1.6 MB, all-reduced
while the convolutions' backward runs, then the rest; BN buffers broadcast from rank 0 each step).
--mode single: one process, no process group, --threads T, batch B (the reference row).

Timing: --warmup-steps untimed steps, then --steps timed steps in windows of --window steps;
rank 0 times each window (DDP's all-reduce keeps the ranks in lock step) and the result is the
median over windows of the global images/s (N*B*window / window time). Prints one JSON line.

Processes: spawned with torch.multiprocessing (default), or, when RANK and WORLD_SIZE are in the
environment, this process is that rank (launch it N times with RANK, WORLD_SIZE, MASTER_ADDR
(e.g. 127.0.0.1) and MASTER_PORT set; rank 0 prints the line).

Usage: /usr/bin/python3 benchmarks/torch_ddp_fmnist.py --ranks 2 --threads 1 --batch 64
       /usr/bin/python3 benchmarks/torch_ddp_fmnist.py --mode single --threads 2 --batch 128
"""
import argparse
import gzip
import json
import os
import socket
import statistics
import sys
import time

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist"
FASHION_MNIST_MEAN = 0.2860   # as src/data/dataset.c
FASHION_MNIST_STD = 0.3530


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=["ddp-gloo", "single"], default="ddp-gloo")
    ap.add_argument("--ranks", type=int, default=2, help="processes (ddp-gloo; default 2)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads per process")
    ap.add_argument("--batch", type=int, default=64, help="batch per rank")
    ap.add_argument("--steps", type=int, default=50, help="timed steps")
    ap.add_argument("--warmup-steps", type=int, default=10)
    ap.add_argument("--window", type=int, default=10, help="steps per timing window")
    ap.add_argument("--format", choices=["nchw", "channels_last"], default="channels_last")
    ap.add_argument("--data", default=FASHION_MNIST_DIR, help="directory of the IDX files")
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--bucket-cap-mb", type=float, default=25.0, help="DDP bucket size")
    ap.add_argument("--port", type=int, default=0, help="MASTER_PORT when spawning (0 = free)")
    a = ap.parse_args(argv)
    if a.steps < a.window or a.window < 1:
        ap.error("--steps must be at least --window (>= 1)")
    if a.mode == "single":
        a.ranks = 1
    return a


def pin_threads(threads):
    """Before torch is imported: keep OpenMP/MKL/OpenBLAS to the requested team."""
    for v in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[v] = str(threads)


def read_idx(directory, name):
    """An IDX file as (dims, bytes); accepts NAME or NAME.gz like dptrain's resolve_idx."""
    import numpy as np
    for path, opener in ((os.path.join(directory, name), open),
                         (os.path.join(directory, name + ".gz"), gzip.open)):
        if os.path.exists(path):
            with opener(path, "rb") as f:
                raw = f.read()
            break
    else:
        sys.exit(f"torch_ddp_fmnist: no {name}[.gz] in {directory} "
                 "(apt-get install dataset-fashion-mnist)")
    if raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        sys.exit(f"torch_ddp_fmnist: {name}: not an unsigned-byte IDX file")
    nd = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(nd)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * nd)
    if data.size != int(np.prod(dims)):
        sys.exit(f"torch_ddp_fmnist: {name}: {data.size} bytes for dims {dims}")
    return data.reshape(dims)


def make_model(nn):
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]
    return nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2),
                         *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(inplace=True),
                         nn.Linear(128, 10))


def worker(rank, a, world):
    """One rank (or the single process). Returns the result dict on rank 0, else None."""
    pin_threads(a.threads)
    import torch
    import torch.distributed as dist
    import torch.nn as nn
    from torch.utils.data.distributed import DistributedSampler

    torch.set_num_threads(a.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass   # already set (env-launched processes that did work before)
    ddp = a.mode == "ddp-gloo"
    if ddp:
        if not dist.is_available() or not dist.is_gloo_available():
            sys.exit("torch_ddp_fmnist: this torch build has no gloo backend")
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)

    images = torch.from_numpy(read_idx(a.data, "train-images-idx3-ubyte").copy())
    labels = torch.from_numpy(read_idx(a.data, "train-labels-idx1-ubyte").astype("int64"))
    n_train = images.shape[0]
    images = images.view(n_train, 1, 28, 28)

    torch.manual_seed(a.seed)   # same init on every rank (DDP also broadcasts rank 0's)
    fmt = torch.channels_last if a.format == "channels_last" else torch.contiguous_format
    model = make_model(nn).to(memory_format=fmt)
    model.train()
    if ddp:
        model = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=a.bucket_cap_mb)
    opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    sampler = DistributedSampler(range(n_train), num_replicas=world, rank=rank, shuffle=True,
                                 seed=a.seed, drop_last=True)
    steps_per_epoch = len(sampler) // a.batch

    def batches():
        epoch = 0
        while True:
            sampler.set_epoch(epoch)
            idx = torch.tensor(list(iter(sampler)), dtype=torch.int64)
            for s in range(steps_per_epoch):
                yield idx[s * a.batch:(s + 1) * a.batch]
            epoch += 1

    scale = 1.0 / (255.0 * FASHION_MNIST_STD)
    shift = FASHION_MNIST_MEAN / FASHION_MNIST_STD
    it = batches()
    total = a.warmup_steps + a.steps
    windows, t_win = [], None
    loss = None
    for i in range(total):
        if i == a.warmup_steps:
            if ddp:
                dist.barrier()
            t_win = time.perf_counter()
        b = next(it)
        x = (images.index_select(0, b).float().mul_(scale).sub_(shift)).to(memory_format=fmt)
        y = labels.index_select(0, b)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        k = i + 1 - a.warmup_steps
        if k > 0 and k % a.window == 0:
            now = time.perf_counter()
            windows.append(now - t_win)
            t_win = now
    final_loss = float(loss.detach())
    if ddp:
        dist.barrier()
        dist.destroy_process_group()
    if rank != 0:
        return None
    glob = a.batch * world
    rates = [glob * a.window / w for w in windows]
    return {"bench": "ddp", "impl": "pytorch-" + torch.__version__, "mode": a.mode,
            "backend": "gloo" if ddp else "none", "ranks": world, "threads": a.threads,
            "batch": a.batch, "global_batch": glob, "layout": a.format,
            "steps": a.steps, "warmup_steps": a.warmup_steps, "window": a.window,
            "windows": len(rates), "img_s": round(statistics.median(rates), 1),
            "img_s_min": round(min(rates), 1), "img_s_max": round(max(rates), 1),
            "bucket_cap_mb": a.bucket_cap_mb if ddp else None, "loss": round(final_loss, 4)}


def spawned(rank, a, world, port):
    os.environ["MASTER_ADDR"] = "127.0.0.1"
    os.environ["MASTER_PORT"] = str(port)
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    res = worker(rank, a, world)
    if res is not None:
        print(json.dumps(res), flush=True)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    a = parse_args()
    pin_threads(a.threads)
    if a.mode == "ddp-gloo" and "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        world = int(os.environ["WORLD_SIZE"])
        if os.environ.get("MASTER_ADDR") in ("127.0.0.1", "localhost"):
            os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        a.ranks = world
        res = worker(int(os.environ["RANK"]), a, world)
        if res is not None:
            print(json.dumps(res), flush=True)
        return
    if a.mode == "single":
        print(json.dumps(worker(0, a, 1)), flush=True)
        return
    import torch.multiprocessing as mp
    mp.spawn(spawned, args=(a, a.ranks, a.port or free_port()), nprocs=a.ranks, join=True)


if __name__ == "__main__":
    main()

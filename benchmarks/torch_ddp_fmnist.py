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
--mode horovod: Horovod over MPI (pip install horovod, built against MPI and this torch): start
it under mpirun, one process per rank; hvd.DistributedOptimizer with --hook none or fp16
(hvd.Compression.fp16), parameters broadcast from rank 0 at the start. Horovod takes contiguous
tensors only, so there the parameters (and with them the gradients) stay in the default layout
and only the inputs are channels_last.

Timing: --warmup-steps untimed steps, then --steps timed steps in windows of --window steps;
rank 0 times each window (DDP's all-reduce keeps the ranks in lock step) and the result is the
median over windows of the global images/s (N*B*window / window time). Prints one JSON line.

Processes: spawned with torch.multiprocessing (default), or, when RANK and WORLD_SIZE are in the
environment, this process is that rank (launch it N times with RANK, WORLD_SIZE, MASTER_ADDR
(e.g. 127.0.0.1) and MASTER_PORT set; rank 0 prints the line). Across network-namespace hosts
(benchmarks/netns_compress.sh) each rank is started in its namespace with `ip netns exec`,
MASTER_ADDR host 0's address and GLOO_SOCKET_IFNAME=mpi0.

Communication hooks (--hook, ddp-gloo): none (DDP's fp32 all-reduce), fp16
(default_hooks.fp16_compress_hook: gradients cast to fp16, all-reduced, divided, cast back) or
powersgd[:R] (powerSGD_hook with PowerSGDState(matrix_approximation_rank=R (default 1),
start_powerSGD_iter=--start-iter, min_compression_rate=2, error feedback and warm start on): the
first --start-iter iterations all-reduce fp32 as dptrain's --compress-start; torch refuses fewer
than 2 with error feedback, so 0 and 1 run as 2 (the record says start_iter_effective)). Both
hooks exist in torch 1.13 (Debian's python3-torch) and in current releases. powerSGD_hook
issues its second and third all-reduces of a bucket from future callbacks; with DDP's two buckets
their order then differs between ranks, and gloo matches collectives by issue order: plain
powerSGD_hook runs here aborted with "gloo::EnforceNotMet ... op.preamble.length <= op.nbytes"
(3 of 5 at 2 ranks x 16). So each bucket's hook starts after the previous bucket's has completed
(SerialPowerSGD): the fc layers' bucket still overlaps the convolutions' backward, and the last
bucket (ready at the end of backward) waits for it, as one link would make it anyway.

Time to accuracy (any of --eval-every, --stop-at-acc, --max-steps): train --max-steps steps
(default --epochs epochs), evaluating every --eval-every steps on the real test set (10000
images): sharded over the ranks as dptrain does (each rank a contiguous 1/N of the test set, in
chunks of 1000, BN in inference mode with the running statistics first averaged over
the ranks, as dptrain's epoch end; loss, hits and count summed with an all-reduce), so every rank
takes the same --stop-at-acc decision (stop at the first evaluation with test accuracy >= A).
Rank 0 prints one {"kind":"eval"} line per evaluation (step, epoch, test_loss, test_acc, wall_s
since training started, eval_s: of it, the time spent evaluating, this one included) and a
result line: steps, reached, tta_s (training time to the accuracy: wall_s - eval_s of the
evaluation that reached it; null if none did), tta_wall_s, step_s (median over --window-step
windows, evaluations excluded, windows from step --warmup-steps on and, with powersgd, from
--start-iter on), tx_bytes_step (bytes the rank's interface GLOO_SOCKET_IFNAME sent per step in
those windows, from /sys/class/net/IF/statistics/tx_bytes: measured, headers included; null
without the variable) and nominal_bytes_step (the bytes the hook hands gloo's all-reduce per
step: 4 per parameter, 2 for fp16, PowerSGD's P and Q plus the uncompressed tensors: nominal,
not what the all-reduce algorithm sends). --decay weights puts weight decay on the conv and fc
weights only, as dptrain does (default all parameters, as torch_fmnist.py).

Usage: /usr/bin/python3 benchmarks/torch_ddp_fmnist.py --ranks 2 --threads 1 --batch 64
       /usr/bin/python3 benchmarks/torch_ddp_fmnist.py --mode single --threads 2 --batch 128
       /usr/bin/python3 benchmarks/torch_ddp_fmnist.py --ranks 2 --batch 16 --hook powersgd:2 \
           --start-iter 100 --eval-every 100 --stop-at-acc 0.85 --max-steps 3000
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
    ap.add_argument("--mode", choices=["ddp-gloo", "single", "horovod"], default="ddp-gloo")
    ap.add_argument("--iface", default=os.environ.get("GLOO_SOCKET_IFNAME"),
                    help="interface whose tx bytes are counted (default $GLOO_SOCKET_IFNAME)")
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
    ap.add_argument("--first-bucket-mb", type=float, default=None,
                    help="DDP's first bucket in MiB (default torch's, 1 MiB)")
    ap.add_argument("--hook", default="none", help="DDP comm hook: none, fp16, powersgd[:RANK]")
    ap.add_argument("--start-iter", type=int, default=0,
                    help="powersgd: plain fp32 all-reduce for the first S iterations (min 2)")
    ap.add_argument("--eval-every", type=int, default=0,
                    help="time to accuracy: evaluate on the test set every STEPS steps")
    ap.add_argument("--stop-at-acc", type=float, default=0.0,
                    help="stop at the first evaluation with test accuracy >= A (0 = off)")
    ap.add_argument("--max-steps", type=int, default=0, help="time to accuracy: at most N steps")
    ap.add_argument("--epochs", type=int, default=8, help="time to accuracy without --max-steps")
    ap.add_argument("--decay", choices=["all", "weights"], default="all",
                    help="weight decay on all parameters or the conv/fc weights only (dptrain)")
    ap.add_argument("--momentum", type=float, default=0.9)
    a = ap.parse_args(argv)
    if a.window < 1:
        ap.error("--window must be >= 1")
    a.tta = a.eval_every > 0 or a.stop_at_acc > 0 or a.max_steps > 0
    if not a.tta and a.steps < a.window:
        ap.error("--steps must be at least --window (>= 1)")
    if a.stop_at_acc > 0 and a.eval_every <= 0:
        ap.error("--stop-at-acc needs --eval-every STEPS")
    kind, _, r = a.hook.partition(":")
    if kind not in ("none", "fp16", "powersgd") or (r and (kind != "powersgd" or not r.isdigit()
                                                            or int(r) < 1)):
        ap.error(f"--hook: expected none, fp16 or powersgd[:RANK], got {a.hook!r}")
    a.hook_kind, a.psgd_rank = kind, int(r) if r else 1
    if a.mode == "single":
        a.ranks = 1
        if kind != "none":
            ap.error("--hook needs --mode ddp-gloo")
    if a.mode == "horovod" and kind == "powersgd":
        ap.error("--mode horovod: --hook none or fp16")
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


def register_hook(model, a):
    """--hook on the DDP model; returns the effective PowerSGD start iteration (or None)."""
    if a.hook_kind == "none":
        return None
    from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
    if a.hook_kind == "fp16":
        model.register_comm_hook(None, default_hooks.fp16_compress_hook)
        return None
    from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as ps
    start = max(2, a.start_iter)   # torch: > 1 with error feedback or warm start
    state = ps.PowerSGDState(process_group=None, matrix_approximation_rank=a.psgd_rank,
                             start_powerSGD_iter=start, min_compression_rate=2,
                             use_error_feedback=True, warm_start=True, random_seed=a.seed)
    model.register_comm_hook(SerialPowerSGD(state), SerialPowerSGD.hook)
    return start


class SerialPowerSGD:
    """powerSGD_hook, each bucket's launched after the previous bucket's has completed (see the
    module doc: gloo matches collectives by issue order)."""

    def __init__(self, state):
        self.state, self.prev = state, None

    @staticmethod
    def hook(self, bucket):
        from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as ps
        if self.prev is not None:
            self.prev.wait()
        self.prev = ps.powerSGD_hook(self.state, bucket)
        return self.prev


def nominal_bytes(params, a):
    """Bytes per step the hook hands gloo's all-reduce (after --start-iter for powersgd)."""
    n = sum(p.numel() for p in params)
    if a.hook_kind == "none":
        return 4 * n
    if a.hook_kind == "fp16":
        return 2 * n
    total, r = 0, a.psgd_rank
    for p in params:   # powerSGD_hook: a tensor of dim > 1 as (shape[0], rest), if it pays
        if p.dim() > 1:
            rows, cols = p.shape[0], p.numel() // p.shape[0]
            if (rows + cols) * r * 2 < rows * cols:   # min_compression_rate 2, as _should_compress
                total += (rows + cols) * r
                continue
        total += p.numel()
    return 4 * total


class Comm:
    """The few collectives outside the gradients' all-reduce: over torch.distributed (ddp-gloo),
    Horovod, or none (single)."""

    def __init__(self, dist=None, hvd=None):
        self.dist, self.hvd = dist, hvd
        self.on = dist is not None or hvd is not None

    def allreduce_(self, t):   # sum, in place
        if self.dist is not None:
            self.dist.all_reduce(t)
        elif self.hvd is not None:
            self.hvd.allreduce_(t, op=self.hvd.Sum)

    def barrier(self):
        if self.dist is not None:
            self.dist.barrier()
        elif self.hvd is not None:
            self.hvd.barrier()

    def close(self):
        if self.dist is not None:
            self.dist.barrier()
            self.dist.destroy_process_group()
        elif self.hvd is not None:
            self.hvd.barrier()


TX_IFACE = None


def tx_bytes():
    """Bytes sent so far by --iface (this namespace's sysfs), None if unknown."""
    ifname = TX_IFACE
    if not ifname or ifname == "lo":
        return None
    try:
        with open(f"/sys/class/net/{ifname}/statistics/tx_bytes") as f:
            return int(f.read())
    except (OSError, ValueError):
        return None


def evaluate(torch, comm, net, test_x, test_y, rank, world, fmt, loss_fn):
    """The test set sharded over the ranks (contiguous 1/N each), BN running statistics averaged
    over the ranks first; returns (loss, accuracy), the same on every rank."""
    if comm.on:
        for b in net.buffers():
            if b.dtype.is_floating_point:
                comm.allreduce_(b)
                b.div_(world)
    n = test_x.shape[0]
    lo, hi = n * rank // world, n * (rank + 1) // world
    v = torch.zeros(3, dtype=torch.float64)
    net.eval()
    with torch.no_grad():
        for i in range(lo, hi, 1000):
            x = test_x[i:min(hi, i + 1000)].to(memory_format=fmt)
            y = test_y[i:min(hi, i + 1000)]
            out = net(x)
            v[0] += float(loss_fn(out, y)) * y.numel()
            v[1] += float((out.argmax(1) == y).sum())
            v[2] += y.numel()
    net.train()
    comm.allreduce_(v)
    return float(v[0] / v[2]), float(v[1] / v[2])


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
    global TX_IFACE
    TX_IFACE = a.iface
    ddp = a.mode == "ddp-gloo"
    hvd = None
    if ddp:
        if not dist.is_available() or not dist.is_gloo_available():
            sys.exit("torch_ddp_fmnist: this torch build has no gloo backend")
        dist.init_process_group("gloo", init_method="env://", rank=rank, world_size=world)
    elif a.mode == "horovod":
        import horovod.torch as hvd
        hvd.init()
        rank, world = hvd.rank(), hvd.size()
    comm = Comm(dist if ddp else None, hvd)
    a.zero_kw = {} if hvd else {"set_to_none": True}   # Horovod's zero_grad takes no arguments

    images = torch.from_numpy(read_idx(a.data, "train-images-idx3-ubyte").copy())
    labels = torch.from_numpy(read_idx(a.data, "train-labels-idx1-ubyte").astype("int64"))
    n_train = images.shape[0]
    images = images.view(n_train, 1, 28, 28)

    torch.manual_seed(a.seed)   # same init on every rank (DDP also broadcasts rank 0's)
    fmt = torch.channels_last if a.format == "channels_last" else torch.contiguous_format
    model = make_model(nn)
    if hvd is None:   # Horovod needs contiguous parameters (and so gradients): inputs only
        model = model.to(memory_format=fmt)
    model.train()
    net = model
    start_iter = None
    if ddp:
        if a.first_bucket_mb is not None:
            dist._DEFAULT_FIRST_BUCKET_BYTES = int(a.first_bucket_mb * (1 << 20))
        model = nn.parallel.DistributedDataParallel(model, bucket_cap_mb=a.bucket_cap_mb)
        start_iter = register_hook(model, a)
    if a.decay == "weights":   # dptrain: conv/fc weights only, never BN or biases
        groups = [{"params": [p for p in net.parameters() if p.dim() > 1]},
                  {"params": [p for p in net.parameters() if p.dim() <= 1], "weight_decay": 0.0}]
    else:
        groups = net.parameters()
    opt = torch.optim.SGD(groups, lr=a.lr, momentum=a.momentum, nesterov=a.momentum > 0,
                          weight_decay=5e-4)
    if hvd is not None:
        hvd.broadcast_parameters(net.state_dict(), root_rank=0)
        opt = hvd.DistributedOptimizer(
            opt, named_parameters=net.named_parameters(),
            compression=hvd.Compression.fp16 if a.hook_kind == "fp16" else hvd.Compression.none)
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
    if a.tta:
        return train_to_accuracy(torch, comm, a, rank, world, fmt, model, net, opt, loss_fn,
                                 it, images, labels, scale, shift, steps_per_epoch, start_iter)
    total = a.warmup_steps + a.steps
    windows, t_win = [], None
    loss = None
    for i in range(total):
        if i == a.warmup_steps:
            comm.barrier()
            t_win = time.perf_counter()
        b = next(it)
        x = (images.index_select(0, b).float().mul_(scale).sub_(shift)).to(memory_format=fmt)
        y = labels.index_select(0, b)
        opt.zero_grad(**a.zero_kw)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        k = i + 1 - a.warmup_steps
        if k > 0 and k % a.window == 0:
            now = time.perf_counter()
            windows.append(now - t_win)
            t_win = now
    final_loss = float(loss.detach())
    comm.close()
    if rank != 0:
        return None
    glob = a.batch * world
    rates = [glob * a.window / w for w in windows]
    return {"bench": "ddp", "impl": "pytorch-" + torch.__version__, "mode": a.mode,
            "backend": "gloo" if ddp else "mpi" if hvd else "none", "ranks": world, "threads": a.threads,
            "batch": a.batch, "global_batch": glob, "layout": a.format,
            "steps": a.steps, "warmup_steps": a.warmup_steps, "window": a.window,
            "windows": len(rates), "img_s": round(statistics.median(rates), 1),
            "img_s_min": round(min(rates), 1), "img_s_max": round(max(rates), 1),
            "bucket_cap_mb": a.bucket_cap_mb if ddp else None, "loss": round(final_loss, 4),
            "hook": a.hook if comm.on else None}


def train_to_accuracy(torch, comm, a, rank, world, fmt, model, net, opt, loss_fn, it,
                      images, labels, scale, shift, steps_per_epoch, start_iter):
    """The time-to-accuracy run (see the module doc); rank 0 prints the eval lines and returns
    the result."""
    test_x = read_idx(a.data, "t10k-images-idx3-ubyte")
    test_x = torch.from_numpy(test_x.copy()).view(-1, 1, 28, 28).float().mul_(scale).sub_(shift)
    test_y = torch.from_numpy(read_idx(a.data, "t10k-labels-idx1-ubyte").astype("int64"))
    total = a.max_steps if a.max_steps > 0 else a.epochs * steps_per_epoch
    skip = a.warmup_steps + (start_iter or 0)   # step-time windows start here
    comm.barrier()
    t_start = time.perf_counter()
    eval_s, tta, tta_wall, reached, done = 0.0, None, None, False, 0
    windows = []   # (seconds, tx bytes or None, steps, first step)
    win_t, win_b, win_n = t_start, tx_bytes(), 0
    acc = loss_v = None
    for i in range(total):
        b = next(it)
        x = (images.index_select(0, b).float().mul_(scale).sub_(shift)).to(memory_format=fmt)
        y = labels.index_select(0, b)
        opt.zero_grad(**a.zero_kw)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        done, win_n = i + 1, win_n + 1
        if win_n == a.window:
            now, tb = time.perf_counter(), tx_bytes()
            windows.append((now - win_t, None if tb is None or win_b is None else tb - win_b,
                            win_n, done - win_n))
            win_t, win_b, win_n = now, tb, 0
        if a.eval_every > 0 and done % a.eval_every == 0:
            t0, b0 = time.perf_counter(), tx_bytes()
            loss_v, acc = evaluate(torch, comm, net, test_x, test_y, rank, world, fmt, loss_fn)
            t1, b1 = time.perf_counter(), tx_bytes()
            eval_s += t1 - t0
            win_t += t1 - t0   # evaluations are not part of any step time
            if win_b is not None and b0 is not None and b1 is not None:
                win_b += b1 - b0
            if rank == 0:
                print(json.dumps({"kind": "eval", "step": done, "epoch": i // steps_per_epoch + 1,
                                  "test_loss": round(loss_v, 6), "test_acc": round(acc, 6),
                                  "wall_s": round(t1 - t_start, 3), "eval_s": round(eval_s, 3)}),
                      flush=True)
            if a.stop_at_acc > 0 and acc >= a.stop_at_acc:
                reached, tta, tta_wall = True, t1 - t_start - eval_s, t1 - t_start
                break
    wall = time.perf_counter() - t_start
    final_loss = float(loss.detach())
    comm.close()
    if rank != 0:
        return None
    timed = [w for w in windows if w[3] >= skip] or windows
    step_s = statistics.median(w[0] / w[2] for w in timed) if timed else None
    txs = [w for w in timed if w[1] is not None]
    tx_step = sum(w[1] for w in txs) / sum(w[2] for w in txs) if txs else None
    return {"bench": "ddp_tta", "impl": "pytorch-" + torch.__version__, "mode": a.mode,
            "backend": "gloo" if comm.dist else "mpi" if comm.hvd else "none",
            "hook": a.hook if comm.on else None,
            "start_iter": a.start_iter, "start_iter_effective": start_iter,
            "ranks": world, "threads": a.threads, "batch": a.batch,
            "global_batch": a.batch * world, "lr": a.lr, "decay": a.decay,
            "eval_every": a.eval_every, "stop_at_acc": a.stop_at_acc, "max_steps": total,
            "steps": done, "reached": reached,
            "tta_s": None if tta is None else round(tta, 3),
            "tta_wall_s": None if tta_wall is None else round(tta_wall, 3),
            "wall_s": round(wall, 3), "eval_s": round(eval_s, 3),
            "test_acc": None if acc is None else round(acc, 6),
            "step_s": None if step_s is None else round(step_s, 6),
            "step_windows": len(timed), "window": a.window,
            "tx_bytes_step": None if tx_step is None else round(tx_step),
            "nominal_bytes_step": nominal_bytes(list(net.parameters()), a) if comm.on else 0,
            "bucket_cap_mb": a.bucket_cap_mb if comm.dist else None, "loss": round(final_loss, 4)}


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
    if a.mode == "horovod":   # one process of an mpirun job: ranks from Horovod
        res = worker(0, a, 1)
        if res is not None:
            print(json.dumps(res), flush=True)
        return
    import torch.multiprocessing as mp
    mp.spawn(spawned, args=(a, a.ranks, a.port or free_port()), nprocs=a.ranks, join=True)


if __name__ == "__main__":
    main()

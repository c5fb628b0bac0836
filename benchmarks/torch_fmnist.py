#!/usr/bin/env python3
"""PyTorch twin of dptrain's fmnist-cnn training step, for benchmarks/train_vs_torch.sh.

Same network as models/fmnist-cnn.cfg (conv3x3 32, conv3x3 32, maxpool, conv3x3 64, conv3x3 64,
maxpool, fc 128, fc 10; BN+ReLU after each conv, no conv bias; ReLU after fc 128), same loss
(softmax cross-entropy, label smoothing 0.1) and optimizer (SGD, Nesterov momentum 0.9, weight
decay 5e-4), fixed random batch so only the step is timed (as `dptrain bench train`).
Prints one JSON line with the median img/s over --steps timed steps after --warmup-steps.

Usage: /usr/bin/python3 benchmarks/torch_fmnist.py --threads 2 --format channels_last
"""
import argparse
import json
import time

import torch
import torch.nn as nn


def make_model():
    def block(cin, cout):
        return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True)]
    return nn.Sequential(*block(1, 32), *block(32, 32), nn.MaxPool2d(2),
                         *block(32, 64), *block(64, 64), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(inplace=True),
                         nn.Linear(128, 10))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--format", choices=["nchw", "channels_last"], default="nchw")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    fmt = torch.channels_last if a.format == "channels_last" else torch.contiguous_format
    model = make_model().to(memory_format=fmt)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(a.batch, 1, 28, 28).to(memory_format=fmt)
    y = torch.randint(0, 10, (a.batch,))
    times = []
    for i in range(a.warmup_steps + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        if i >= a.warmup_steps:
            times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    print(json.dumps({"bench": "train", "impl": "pytorch-" + torch.__version__,
                      "layout": a.format, "batch": a.batch, "threads": a.threads, "steps": n,
                      "img_s": round(a.batch / med, 1), "img_s_min": round(a.batch / times[-1], 1),
                      "img_s_max": round(a.batch / times[0], 1)}))


if __name__ == "__main__":
    main()

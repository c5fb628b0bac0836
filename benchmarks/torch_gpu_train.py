#!/usr/bin/env python3
"""PyTorch eager twin of `dptrain bench train --device cuda`, for benchmarks/gpu_vs_torch.sh.

The same networks as models/fmnist-cnn.cfg and models/resnet9.cfg (the myrtle.ai ResNet-9:
prep conv 64; layer1 conv 128 + maxpool + residual (conv 128, conv 128); layer2 conv 256 +
maxpool; layer3 conv 512 + maxpool + residual (conv 512, conv 512); maxpool 4; fc 10 without
bias; x 0.125), every conv 3x3 without bias and followed by BN + ReLU; the same loss (softmax
cross-entropy, label smoothing 0.1) and optimizer (SGD, Nesterov momentum 0.9, weight decay 5e-4
on every parameter here: dptrain exempts BN and biases, which costs nothing measurable), a fixed
random batch kept on the GPU (as dptrain's bench keeps it in the input tensor), and the same
precision: fp32; bf16 or fp16 through torch.autocast, fp16 with a GradScaler (dynamic loss
scaling, as dptrain). Each step ends with torch.cuda.synchronize() (dptrain's bench syncs per
step too), timed by the wall clock; prints one JSON line per configuration with the median img/s
over --steps timed steps after --warmup-steps. Several --config entries run in one process (one
import of torch), in the order given.

Usage: python3 benchmarks/torch_gpu_train.py --config resnet9:bf16:channels_last:512 ...
       (model fmnist-cnn|resnet9, precision fp32|bf16|fp16, format nchw|channels_last, batch)
"""
import argparse
import json
import time

import torch
import torch.nn as nn


def cbr(cin, cout):
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True)]


def fmnist_cnn():
    return nn.Sequential(*cbr(1, 32), *cbr(32, 32), nn.MaxPool2d(2),
                         *cbr(32, 64), *cbr(64, 64), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(inplace=True),
                         nn.Linear(128, 10))


class Residual(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.body = nn.Sequential(*cbr(c, c), *cbr(c, c))

    def forward(self, x):
        return x + self.body(x)


class Scale(nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s


def resnet9():
    return nn.Sequential(*cbr(3, 64),
                         *cbr(64, 128), nn.MaxPool2d(2), Residual(128),
                         *cbr(128, 256), nn.MaxPool2d(2),
                         *cbr(256, 512), nn.MaxPool2d(2), Residual(512),
                         nn.MaxPool2d(4), nn.Flatten(), nn.Linear(512, 10, bias=False), Scale(0.125))


MODELS = {"fmnist-cnn": (fmnist_cnn, (1, 28, 28)), "resnet9": (resnet9, (3, 32, 32))}


def run(model_name, precision, fmt, batch, steps, warmup):
    make, shape = MODELS[model_name]
    torch.manual_seed(0)
    mf = torch.channels_last if fmt == "channels_last" else torch.contiguous_format
    model = make().cuda().to(memory_format=mf)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True,
                          weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(batch, *shape, device="cuda").to(memory_format=mf)
    y = torch.randint(0, 10, (batch,), device="cuda")
    dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None
    times = []
    for i in range(warmup + steps):
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(model(x), y)
        if scaler:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
        else:
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    return {"bench": "train", "impl": "pytorch-" + torch.__version__, "device": "cuda",
            "gpu": torch.cuda.get_device_name(), "model": model_name, "precision": precision,
            "layout": fmt, "batch": batch, "steps": n,
            "cudnn_tf32": torch.backends.cudnn.allow_tf32,
            "matmul_tf32": torch.backends.cuda.matmul.allow_tf32,
            "img_s": round(batch / med, 1), "img_s_min": round(batch / times[-1], 1),
            "img_s_max": round(batch / times[0], 1), "loss": round(float(loss), 4)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", action="append", required=True,
                    help="MODEL:PRECISION:FORMAT:BATCH (repeatable)")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup-steps", type=int, default=10)
    a = ap.parse_args()
    torch.backends.cudnn.benchmark = True   # eager PyTorch's usual fast setting for fixed shapes
    for c in a.config:
        model, precision, fmt, batch = c.split(":")
        print(json.dumps(run(model, precision, fmt, int(batch), a.steps, a.warmup_steps)),
              flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""PyTorch twins of dptrain's model zoo (resnet50, vit-lite, vit-tiny, efficientnet-b0) and their
training-step throughput, for benchmarks/models_vs_torch.sh.

The networks are those of models/*.cfg, layer for layer, with the same parameter counts (checked
at start; a mismatch is an error):
  resnet50         torchvision resnet50(num_classes=10), CIFAR stem: conv1 a 3x3 stride-1 conv
                   of 64 (no bias), maxpool = Identity; 3x32x32. 23,520,842 parameters.
  efficientnet-b0  torchvision efficientnet_b0(num_classes=10) with the stem conv
                   (features[0][0]) at stride 1; Dropout(0.2) before the fc and stochastic depth
                   0.2 * block / 16 on the residual blocks, as torchvision (and the .cfg); 3x32x32.
                   4,020,358 parameters.
  vit-lite         ViT-Lite-7/4: 4x4 stride-4 Conv2d patch embedding (with bias) to 256, class
                   token, learned position embedding (65 tokens), 7 pre-norm encoder layers
                   (LayerNorm eps 1e-6; fused qkv Linear(D, 3D) with bias; 4 heads,
                   softmax(q k^T / sqrt(dh)) v; proj Linear(D, D) with bias; residual; LayerNorm;
                   Linear(D, 512), GELU (erf), Linear(512, D); residual), final LayerNorm, the
                   class token, Linear(D, 10); 3x32x32. 3,722,250 parameters.
  vit-tiny         the same at 1x28x28, D 64, 2 heads, MLP 128, 4 layers. 139,018 parameters.
  resnet50-fmnist, efficientnet-b0-fmnist: the same as resnet50 and efficientnet-b0 on 1x28x28
                   (the stem conv takes 1 channel): 23,519,690 and 4,019,782 parameters.
The qkv channels split as dptrain's [attention] reads them: [q | k | v], each heads x dh.

The step is `dptrain bench train`'s: a fixed random batch (only the step is timed), forward,
softmax cross-entropy with label smoothing 0.1 (dptrain's default), backward, optimizer step at
lr 0.01. bench train always uses the default optimizer, SGD with Nesterov momentum 0.9 and weight
decay 5e-4 (`--optimizer` is a train flag), so that is the default here too for every model;
--optimizer adamw (betas 0.9/0.999, eps 1e-8, decoupled decay 0.05) is there for a ViT run as
`dptrain train --optimizer adamw` would train it. Weight decay applies, as in dptrain, to conv and
linear weights only: not to BN/LayerNorm parameters, biases, the class token or the position
embedding.

--attention sdpa (the default where torch has it, >= 2.0) computes the attention core with
F.scaled_dot_product_attention (the same math, PyTorch's fused CPU kernel); manual writes it as
matmul, softmax, matmul (the only choice on torch 1.13).

--compile wraps the model in torch.compile (mode default; the optimizer step stays eager); the
warm-up is at least 3 steps so that compilation (first step) and any recompilation are outside
the timing; "compile_s" is the first step's time.

Prints one JSON line with the median img/s over --steps timed steps after --warmup-steps, with
dptrain's bench field names where they apply (bench, impl, model, layout, batch, threads, steps,
img_s, img_s_min, img_s_max), plus format (= layout), compile, torch (version) and the rest.
--check only builds the model, prints its parameter count and output shape and runs one step.

Usage: python3 benchmarks/torch_models.py --model resnet50 --threads 2 --format channels_last
"""
import argparse
import json
import math
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EXPECTED_PARAMS = {"resnet50": 23_520_842, "vit-lite": 3_722_250, "vit-tiny": 139_018,
                   "efficientnet-b0": 4_020_358,
                   "resnet50-fmnist": 23_519_690, "efficientnet-b0-fmnist": 4_019_782}
INPUT = {"resnet50": (3, 32, 32), "vit-lite": (3, 32, 32), "vit-tiny": (1, 28, 28),
         "efficientnet-b0": (3, 32, 32),
         "resnet50-fmnist": (1, 28, 28), "efficientnet-b0-fmnist": (1, 28, 28)}
HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def resnet50(in_ch=3):
    import torchvision
    m = torchvision.models.resnet50(num_classes=10)
    m.conv1 = nn.Conv2d(in_ch, 64, kernel_size=3, stride=1, padding=1, bias=False)
    m.maxpool = nn.Identity()
    return m


def efficientnet_b0(in_ch=3):
    import torchvision
    m = torchvision.models.efficientnet_b0(num_classes=10)
    if in_ch == 3:
        m.features[0][0].stride = (1, 1)
    else:
        m.features[0][0] = nn.Conv2d(in_ch, 32, 3, stride=1, padding=1, bias=False)
    return m


class Attention(nn.Module):
    """LayerNorm'd tokens -> fused qkv Linear -> multi-head softmax(q k^T / sqrt(dh)) v -> proj."""

    def __init__(self, dim, heads, sdpa):
        super().__init__()
        self.heads = heads
        self.sdpa = sdpa
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        n, t, d = x.shape
        # [q | k | v], each heads x dh, as dptrain's [attention] splits its input
        qkv = self.qkv(x).reshape(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]                    # (n, heads, t, dh)
        if self.sdpa:
            y = F.scaled_dot_product_attention(q, k, v)
        else:
            p = torch.softmax(q @ k.transpose(-2, -1) * (1.0 / math.sqrt(d // self.heads)), -1)
            y = p @ v
        return self.proj(y.transpose(1, 2).reshape(n, t, d))


class EncoderLayer(nn.Module):
    def __init__(self, dim, heads, mlp, sdpa):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, heads, sdpa)
        self.ln2 = nn.LayerNorm(dim, eps=1e-6)
        self.fc1 = nn.Linear(dim, mlp)
        self.act = nn.GELU()                                # erf: dptrain's approximate = none
        self.fc2 = nn.Linear(mlp, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(self.act(self.fc1(self.ln2(x))))


class ViT(nn.Module):
    def __init__(self, in_ch, size, patch, dim, heads, mlp, layers, classes, sdpa):
        super().__init__()
        self.patch = nn.Conv2d(in_ch, dim, patch, stride=patch)   # with bias, as [conv]
        tokens = (size // patch) ** 2 + 1
        self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos_embed = nn.Parameter(torch.randn(1, tokens, dim) * 0.02)
        self.layers = nn.Sequential(*[EncoderLayer(dim, heads, mlp, sdpa) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.fc = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)              # (n, tokens, dim), row by row
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], 1) + self.pos_embed
        x = self.norm(self.layers(x))
        return self.fc(x[:, 0])


def make_model(name, sdpa):
    if name.startswith("resnet50"):
        return resnet50(INPUT[name][0])
    if name.startswith("efficientnet-b0"):
        return efficientnet_b0(INPUT[name][0])
    if name == "vit-lite":
        return ViT(3, 32, 4, 256, 4, 512, 7, 10, sdpa)
    if name == "vit-tiny":
        return ViT(1, 28, 4, 64, 2, 128, 4, 10, sdpa)
    raise ValueError(name)


def param_groups(model, wd):
    """dptrain's weight decay: conv and linear weights only (never BN/LN, biases, tokens)."""
    decay, rest = [], []
    for name, p in model.named_parameters():
        is_weight = p.ndim >= 2 and not name.endswith(("cls_token", "pos_embed"))
        (decay if is_weight else rest).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, choices=sorted(EXPECTED_PARAMS))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup-steps", type=int, default=5)
    ap.add_argument("--format", choices=["nchw", "channels_last"], default="nchw")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (torch >= 2)")
    ap.add_argument("--optimizer", choices=["sgd", "adamw"], default="sgd")
    ap.add_argument("--attention", choices=["sdpa", "manual"],
                    default="sdpa" if HAS_SDPA else "manual")
    ap.add_argument("--check", action="store_true",
                    help="print parameters and output shape, run one step, no timing")
    a = ap.parse_args()
    if a.attention == "sdpa" and not HAS_SDPA:
        sys.exit(f"torch_models: torch {torch.__version__} has no scaled_dot_product_attention")
    if a.compile and not hasattr(torch, "compile"):
        sys.exit(f"torch_models: torch {torch.__version__} has no torch.compile")
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    vit = a.model.startswith("vit")
    model = make_model(a.model, a.attention == "sdpa")
    n_params = sum(p.numel() for p in model.parameters())
    if a.check:
        print(f"# {a.model}: {n_params:,} parameters (torch {torch.__version__})", file=sys.stderr)
    if n_params != EXPECTED_PARAMS[a.model]:
        sys.exit(f"torch_models: {a.model} has {n_params:,} parameters, dptrain's "
                 f"models/{a.model}.cfg {EXPECTED_PARAMS[a.model]:,}")
    fmt = torch.channels_last if a.format == "channels_last" else torch.contiguous_format
    model = model.to(memory_format=fmt)
    model.train()
    if a.optimizer == "sgd":
        opt = torch.optim.SGD(param_groups(model, 5e-4), lr=0.01, momentum=0.9, nesterov=True)
    else:
        opt = torch.optim.AdamW(param_groups(model, 0.05), lr=0.01, betas=(0.9, 0.999), eps=1e-8)
    loss_fn = nn.CrossEntropyLoss(label_smoothing=0.1)
    x = torch.randn(a.batch, *INPUT[a.model]).to(memory_format=fmt)
    y = torch.randint(0, 10, (a.batch,))
    net = torch.compile(model) if a.compile else model

    def step():
        opt.zero_grad(set_to_none=True)
        out = net(x)
        loss = loss_fn(out, y)
        loss.backward()
        opt.step()
        return out, loss

    if a.check:
        out, loss = step()
        finite = all(torch.isfinite(p.grad).all() for p in model.parameters()
                     if p.grad is not None)
        print(json.dumps({"check": a.model, "torch": torch.__version__, "params": n_params,
                          "input": list(x.shape), "output": list(out.shape),
                          "loss": round(loss.item(), 4), "grads_finite": bool(finite),
                          "format": a.format, "compile": a.compile,
                          **({"attention": a.attention} if vit else {})}))
        return
    warmup = max(a.warmup_steps, 3) if a.compile else a.warmup_steps
    times, compile_s = [], None
    for i in range(warmup + a.steps):
        t0 = time.perf_counter()
        _, loss = step()
        dt = time.perf_counter() - t0
        if i == 0:
            compile_s = dt
        if i >= warmup:
            times.append(dt)
    times.sort()
    n = len(times)
    med = times[n // 2] if n % 2 else 0.5 * (times[n // 2 - 1] + times[n // 2])
    rec = {"bench": "train", "impl": "torch", "torch": torch.__version__, "model": a.model,
           "layout": a.format, "format": a.format, "compile": a.compile,
           "optimizer": a.optimizer, "batch": a.batch, "threads": a.threads, "steps": n,
           "warmup_steps": warmup, "img_s": round(a.batch / med, 1),
           "img_s_min": round(a.batch / times[-1], 1), "img_s_max": round(a.batch / times[0], 1),
           "loss": round(loss.item(), 4), "params": n_params}
    if vit:
        rec["attention"] = a.attention
    if a.compile:
        rec["compile_s"] = round(compile_s, 2)
    print(json.dumps(rec, separators=(",", ":")), flush=True)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Checks benchmarks/torch_models.py's twins against dptrain's own model summary, layer by layer.

For each model: runs `dptrain train` for one step on a tiny synthetic data set (only to get the
per-layer summary it prints: output shape and parameter count of every layer), takes the layers
that have parameters, and compares that sequence of (parameters, channels, positions) with the
torch twin's layers that have parameters, in forward order (forward hooks; the ViT's class token
and position embedding count as dptrain's [tokens] layer, right after the patch conv). Equal
sequences mean the same layers with the same widths, kernel sizes (through the counts) and
strides (through the output sizes) in the same order. Then the twin's output shape and one
training step (finite gradients) under this torch. No timing. Exit 1 on any difference.

Usage: python3 benchmarks/check_torch_twins.py [models...]   (after `make build`)
Env:   DPT=PATH   the dptrain binary (default build/dptrain)
"""
import os
import re
import subprocess
import sys

import torch
import torch.nn as nn

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINE = re.compile(r"\s+(\S+)\s+(\S+)\s+->\s+(\d+) x\s+(\d+) x\s+(\d+)\s+params\s+(\d+)")


def dptrain_layers(name):
    c, h, w = tm.INPUT[name]
    out = subprocess.run([os.environ.get("DPT", os.path.join(ROOT, "build", "dptrain")), "train", "--model", name,
                          "--data", f"synthetic:4:{c}:{h}:{w}:10", "--batch", "2", "--epochs", "1",
                          "--max-steps", "1", "--threads", "1"],
                         cwd=ROOT, capture_output=True, text=True, check=True).stdout
    layers = []
    for line in out.splitlines():
        r = LINE.match(line)
        if r and int(r.group(6)):
            layers.append((int(r.group(6)), int(r.group(3)), int(r.group(4)) * int(r.group(5))))
    return layers


def torch_layers(name):
    model = tm.make_model(name, False).train()
    seen = []

    def hook(mod, inp, out):
        n = sum(p.numel() for p in mod.parameters(recurse=False))
        if not n or mod is model:
            return
        if out.dim() == 4:
            seen.append((n, out.shape[1], out.shape[2] * out.shape[3]))
        elif out.dim() == 3:                      # tokens (N, T, D): dptrain's D x 1 x T
            seen.append((n, out.shape[2], out.shape[1]))
        else:
            seen.append((n, out.shape[1], 1))
        if isinstance(model, tm.ViT) and mod is model.patch:
            pe = model.pos_embed
            seen.append((model.cls_token.numel() + pe.numel(), pe.shape[2], pe.shape[1]))

    for mod in model.modules():
        mod.register_forward_hook(hook)
    with torch.no_grad():
        model(torch.randn(2, *tm.INPUT[name]))
    return seen


def main():
    torch.set_num_threads(1)
    names = sys.argv[1:] or list(tm.EXPECTED_PARAMS)
    bad = 0
    for name in names:
        d, t = dptrain_layers(name), torch_layers(name)
        ok = d == t
        print(f"{name}: {len(d)} layers with parameters in dptrain, {len(t)} in torch "
              f"{torch.__version__}: {'same' if ok else 'DIFFERENT'} (params, C, H*W) sequence")
        if not ok:
            bad += 1
            for i, (a, b) in enumerate(zip(d, t)):
                if a != b:
                    print(f"  first difference at layer {i}: dptrain {a}, torch {b}")
                    break
        r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "torch_models.py"),
                            "--model", name, "--batch", "2", "--check"],
                           capture_output=True, text=True)
        print("  " + (r.stdout.strip() or r.stderr.strip()))
        bad += r.returncode != 0 or '"grads_finite": true' not in r.stdout
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()

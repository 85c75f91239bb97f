"""``accelerators`` benchmark: FlexNet train steps eager vs compile,
channels-last and bf16 autocast, timed round-robin in one run.

Each variant trains its own copy of the same initial model on the same batch with the
trainer's step (batched crop refresh, autocast, Adam). ``torch.compile`` is timed after
its first (compiling) steps; the compile time is reported separately.
"""
from __future__ import annotations

import argparse
import copy
import functools
import time
from typing import Callable, Dict, List

import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.benchmarks.harness import Report, Table, register_benchmark, time_round_robin
from flexcore.engine.accelerate import autocast, compile_model, to_channels_last
from flexcore.layers import FlexConv, GaussianMask, refresh_crops
from flexcore.modeling.backbones.flexnet import FlexNet
from flexcore.registry import KERNEL_NETS

# name -> (hidden, blocks, batch, resolution): both CIFAR-shaped, FlexNet-3 and FlexNet-5 widths.
MODELS = {"small": (16, 2, 16, 32), "medium": (32, 4, 32, 32)}
QUICK_MODELS = {"tiny": (8, 1, 4, 16)}


def build_flexnet(hidden: int, blocks: int, resolution: int) -> nn.Module:
    """A CIFAR-10 FlexNet as in the paper (MAGNet H32 L3, Gaussian mask), ``blocks`` residual blocks."""
    net = functools.partial(KERNEL_NETS.get("MAGNet"), hidden_channels=32, num_layers=3, input_scale=25.6)
    conv = functools.partial(FlexConv, kernel_net=net, mask=GaussianMask, horizon=resolution + 1)
    return FlexNet(3, 10, 2, conv=conv, hidden_channels=hidden, num_blocks=blocks, block_width_factors=None,
                   dropout=0.0)


def _train_step(model: nn.Module, x: torch.Tensor, y: torch.Tensor, amp) -> Callable[[], None]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    device = x.device

    def step():
        refresh_crops(model)
        with autocast(device, amp):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if not step.losses:
            step.losses.append(float(loss.detach()))

    step.losses = []
    return step


def _variants(base: nn.Module, x: torch.Tensor, y: torch.Tensor, args) -> Dict[str, Callable[[], None]]:
    fns = {"eager": _train_step(copy.deepcopy(base), x, y, None)}
    fns["channels_last"] = _train_step(to_channels_last(copy.deepcopy(base)),
                                       x.contiguous(memory_format=torch.channels_last), y, None)
    fns["bf16"] = _train_step(copy.deepcopy(base), x, y, torch.bfloat16)
    if not args.skip_compile:
        fns["compile"] = _train_step(compile_model(copy.deepcopy(base), backend=args.compile_backend), x, y, None)
    return fns


def _accel_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--skip-compile", action="store_true", help="leave out torch.compile (minutes of compiling on CPU)")
    p.add_argument("--compile-backend", default="inductor", help="torch.compile backend (default inductor)")
    p.add_argument("--models", nargs="+", default=None, help=f"subset of {sorted(MODELS)}")


@register_benchmark("accelerators", "FlexNet train step: eager vs torch.compile vs channels-last vs bf16 autocast",
                    _accel_arguments)
def bench_accelerators(args) -> Report:
    dev = torch.device(args.device)
    models = QUICK_MODELS if args.quick else {k: v for k, v in MODELS.items() if not args.models or k in args.models}
    table = Table("FlexNet train step (Adam): accelerators vs eager float32",
                  ["model", "batch", "variant", "ms (median)", "IQR", "ratio to eager", "first 2 steps s", "step-1 loss",
                   "vs eager"])
    report = Report(tables=[table])
    for name, (hidden, blocks, batch, res) in models.items():
        torch.manual_seed(0)
        base = build_flexnet(hidden, blocks, res).to(dev)
        x = torch.randn(batch, 3, res, res, device=dev)
        y = torch.randint(0, 10, (batch,), device=dev)
        base(x)  # fixes the grids (horizon res+1, crops 5x5... at init)
        fns = _variants(base, x, y, args)
        first: Dict[str, float] = {}
        for variant, fn in fns.items():  # the first steps compile (torch.compile) or warm caches
            t0 = time.perf_counter()
            for _ in range(2):
                fn()
            first[variant] = time.perf_counter() - t0
        stats = time_round_robin(fns, args.repeat, args.warmup, args.budget)
        losses = {k: fn.losses[0] for k, fn in fns.items()}
        for variant, s in stats.items():
            ratio = s.median / stats["eager"].median
            delta = abs(losses[variant] - losses["eager"]) / abs(losses["eager"])
            table.rows.append([name, batch, variant, s.median, s.spread, ratio, first[variant], losses[variant],
                               f"{100 * delta:.2f} %"])
        report.data[name] = {"hidden": hidden, "blocks": blocks, "batch": batch, "resolution": res,
                             "stats": {k: v.to_dict() for k, v in stats.items()}, "first_steps_s": first,
                             "step1_loss": losses}
    table.note = ("ratio < 1: faster than eager float32, measured in this run. 'first steps s': the first two "
                  "steps (torch.compile compiles there; FlexConv recompiles whenever a kernel size changes). "
                  "step-1 loss: the first step's loss (same init, same batch) and its relative difference to eager.")
    return report


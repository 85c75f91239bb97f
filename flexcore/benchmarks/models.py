"""``models`` and ``inference`` benchmarks: whole FlexNet-7 / CKCNN steps against the original's timings.

Models come from the original system's seed fixtures (``flexnet7_cifar10`` at init, all
kernels 5x5; ``flexnet7_cifar10_perturbed`` with trained-like mask parameters, kernels
5x5 ... 33x33, several non-square), converted to flexcore. Measured in the same run:

- ``flexcore``: the model as shipped (``fft='auto'``, low-rank spectra, eval caches).
- ``spatial ref``: the same model forced onto the direct path (``fft=False``) and, for
  inference, regenerating every kernel per call: the original's algorithm in our code.
- ``probe``: a plain ``nn.Conv2d`` 64->64 5x5 fwd+bwd (batch 16, 32x32), which measured
  46 ms on the machine that timed the original (docs/performance.md). ``probe / 46 ms`` is
  this run's machine factor; the "load-scaled" ratio divides by the original's figure times
  that factor.

The original's figures (2 threads, quiet machine) are fixed targets.
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
import json
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.benchmarks.harness import Check, Report, Stats, Table, register_benchmark, time_round_robin
from flexcore.engine.accelerate import autocast
from flexcore.layers.bake import bake_model
from flexcore.layers.traversal import clear_kernel_caches, continuous_convs, refresh_crops

__all__ = ["ORIGINAL_MS", "load_fixture_model", "ckcnn_from", "train_step_fn", "probe_fn", "MachineFactor"]

# The original code's measured times (ms, medians, 2 CPU threads; docs/performance.md says how).
ORIGINAL_MS = {
    "conv2d_5x5_train": 46.0,
    "flexnet7_init_train_b64": 1542.0,
    "ckcnn_train_b16": 36409.0,
    "flexnet7_init_eval_b16": 156.0,
    "flexnet7_trained_train_b16": 7795.0,
    "flexnet7_trained_eval_b16": 1189.0,
    "flextcn_train_b16": 189.0,
    "kernel_generation": 33.0,
}

INIT_CASE, TRAINED_CASE = "flexnet7_cifar10", "flexnet7_cifar10_perturbed"


# -- models ------------------------------------------------------------------------------
def _fixtures_dir(args) -> Path:
    from flexcore.utils.testing import seed_fixtures_dir

    folder = Path(args.fixtures) if getattr(args, "fixtures", None) else seed_fixtures_dir()
    if folder is None or not (folder / f"{INIT_CASE}.json").is_file():
        raise SystemExit(
            f"benchmark: seed fixtures not found ({folder}); pass --fixtures DIR with {INIT_CASE}.json/.pt "
            "(tests/fixtures/seed in a checkout) or set FLEXCORE_SEED_FIXTURES"
        )
    return folder


def load_fixture_model(folder: Path, case: str, with_weights: bool = True):
    """``(model, spec)``: the original model of fixture ``case`` rebuilt in flexcore (its weights loaded)."""
    from flexcore.compat.original.weights import convert_original_model
    from flexcore.compat.original.spec import spec_from_config

    meta = json.loads((folder / f"{case}.json").read_text())
    spec = spec_from_config(meta["config"], meta["constructor"]["in_channels"], meta["constructor"]["out_channels"])
    torch.manual_seed(meta.get("torch_seed", 0))
    model = spec.build()
    if with_weights:
        ref = torch.load(folder / f"{case}.pt", weights_only=True)
        model.load_state_dict(convert_original_model(ref["state_dict"], spec.kernel_type, spec.dim))
    return model, spec


def ckcnn_from(spec) -> nn.Module:
    """The same network with CKConv (no mask: the full 33x33 grid in every layer)."""
    conv_hp = {k: v for k, v in spec.conv_hp.items() if k != "dynamic_cropping"}
    ck = dataclasses.replace(spec, conv="CKConv", conv_hp=conv_hp, mask=None, mask_hp={})
    torch.manual_seed(0)
    return ck.build()


def kernel_sizes(model: nn.Module) -> List[Tuple[int, ...]]:
    return [tuple(c.kernel_size()) for _, c in continuous_convs(model)]


def set_fft(model: nn.Module, fft) -> nn.Module:
    for _, conv in continuous_convs(model):
        conv.fft = fft
    return model


# -- timed steps -------------------------------------------------------------------------
def train_step_fn(model: nn.Module, x: torch.Tensor, target: torch.Tensor, lr: float = 0.0,
                  amp: Optional[torch.dtype] = None) -> Callable[[], None]:
    """One training step as the trainer runs it: crops refreshed in bulk, forward (under
    autocast to ``amp``, if given), loss, backward, Adam.

    Adam runs with ``lr=0`` by default: the same arithmetic, but the masks (hence kernel sizes)
    stay where the fixture put them, so every timed step does the same work. With ``lr > 0``
    the masks move and every crop is stale at the next step (the worst case for host syncs).
    """
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    def run():
        optimizer.zero_grad(set_to_none=True)
        refresh_crops(model)
        with autocast(x.device, amp):
            loss = F.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()

    return run


def eval_fn(model: nn.Module, x: torch.Tensor, regenerate: bool = False) -> Callable[[], None]:
    """Eval forward without gradients; ``regenerate`` drops the kernel caches first (as the original)."""
    model.eval()

    def run():
        if regenerate:
            clear_kernel_caches(model)
        with torch.no_grad():
            model(x)

    return run


def probe_fn(device) -> Callable[[], None]:
    """The machine-speed probe: ``nn.Conv2d`` 64->64 5x5, batch 16, 32x32, fwd+bwd (46 ms beside the original's figures)."""
    conv = nn.Conv2d(64, 64, 5, padding=2).to(device)
    x = torch.randn(16, 64, 32, 32, device=device)

    def run():
        conv.zero_grad(set_to_none=True)
        conv(x).sum().backward()

    return run


@dataclasses.dataclass
class MachineFactor:
    """This run's speed relative to the machine of the original's figures (> 1: slower here)."""

    probe: Optional[Stats]

    @property
    def value(self) -> float:
        return 1.0 if self.probe is None else self.probe.median / ORIGINAL_MS["conv2d_5x5_train"]


def fmt(value) -> str:
    """Table text of a number: 3 significant digits, no exponent below a million."""
    if not isinstance(value, float):
        return str(value)
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def _row(label, batch, t: Dict[str, Stats], original_key: Optional[str], target: Optional[float]) -> Tuple[list, dict]:
    """A table row: flexcore vs the spatial reference (same run) and vs the original's figure."""
    ours = t["flexcore"]
    ref = t.get("spatial ref")
    factor = MachineFactor(t.get("probe")).value
    original = ORIGINAL_MS.get(original_key) if original_key else None
    vs_orig = ours.median / original if original else None
    vs_scaled = ours.median / (original * factor) if original else None
    row = [label, batch, fmt(ours.median), ours.spread,
           fmt(ref.median) if ref else "-", ref.spread if ref else "-",
           fmt(ours.median / ref.median) if ref else "-",
           fmt(original) if original else "-", fmt(vs_orig) if original else "-",
           fmt(vs_scaled) if original else "-", f"<= {target:g}" if target is not None else "-"]
    data = {"label": label, "batch": batch, "times": {k: v.to_dict() for k, v in t.items()},
            "original_ms": original, "machine_factor": factor, "ratio_vs_original": vs_orig,
            "ratio_vs_original_load_scaled": vs_scaled, "target": target}
    return row, data


_HEADERS = ["workload", "batch", "flexcore ms", "IQR", "spatial ref ms", "IQR", "vs ref",
            "original ms", "vs original", "vs original (load-scaled)", "target"]


def _time(args, fns: Dict[str, Callable[[], None]], repeat: Optional[int] = None) -> Dict[str, Stats]:
    if not args.quick:
        fns = dict(fns, probe=probe_fn(torch.device(args.device)))
    return time_round_robin(fns, repeat or args.repeat, args.warmup, args.budget)


def _add(report: Report, table: Table, label, batch, t, key, target, check_name=None) -> None:
    row, data = _row(label, batch, t, None if table is None else key, target)
    table.rows.append(row)
    report.data.setdefault("rows", []).append(data)
    if check_name and target is not None and data["ratio_vs_original"] is not None:
        report.checks.append(Check(f"{check_name} / original {ORIGINAL_MS[key]:.0f} ms", data["ratio_vs_original"], target))


def _start(args, title: str):
    """(device, fixtures folder, report, its model table) of a models/inference run."""
    table = Table(title, list(_HEADERS))
    return torch.device(args.device), _fixtures_dir(args), Report(tables=[table]), table


def _quick_input(args, batch: int):
    size = 16 if args.quick else 32
    dev = torch.device(args.device)
    return torch.randn(batch, 3, size, size, device=dev), torch.randint(0, 10, (batch,), device=dev)


def _common_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--fixtures", default=None, help="seed fixture folder (default: tests/fixtures/seed)")
    p.add_argument("--skip-reference", action="store_true", help="do not time the spatial reference models")


def _models_arguments(p: argparse.ArgumentParser) -> None:
    _common_arguments(p)
    p.add_argument("--ckcnn-reference", action="store_true",
                   help="also time CKCNN on the direct path (~30 s a step on 2 CPU threads)")


@register_benchmark("models", "FlexNet-7 / CKCNN train steps (init, trained-like kernels), kernel generation", _models_arguments)
def bench_models(args) -> Report:
    dev, folder, report, table = _start(args, "FlexNet-7 CIFAR-10 training step (fwd + loss + bwd + Adam)")
    b_init, b16 = (2, 2) if args.quick else (64, 16)

    init, _ = load_fixture_model(folder, INIT_CASE)
    trained, spec = load_fixture_model(folder, TRAINED_CASE)
    for model in (init, trained):
        model.to(dev)
    x64, y64 = _quick_input(args, b_init)
    x16, y16 = _quick_input(args, b16)

    for label, model, (x, y), key, target in (
        ("FlexNet-7, init (all 5x5)", init, (x64, y64), "flexnet7_init_train_b64", 1.0),
        ("FlexNet-7, trained-like (5x5..33x33)", trained, (x16, y16), "flexnet7_trained_train_b16", 0.25),
    ):
        fns = {"flexcore": train_step_fn(model, x, y)}
        if not args.skip_reference and not (args.quick and model is init):
            fns["spatial ref"] = train_step_fn(set_fft(copy.deepcopy(model), False), x, y)
        t = _time(args, fns)
        _add(report, table, label, x.shape[0], t, key, None if args.quick else target, label)
    report.data["trained_like_kernel_sizes"] = kernel_sizes(trained)

    ckcnn = ckcnn_from(spec).to(dev)
    fns = {"flexcore": train_step_fn(ckcnn, x16, y16)}
    if args.ckcnn_reference and not args.skip_reference:
        fns["spatial ref"] = train_step_fn(set_fft(copy.deepcopy(ckcnn), False), x16, y16)
    t = _time(args, fns, repeat=max(2, args.repeat // 2))
    _add(report, table, "CKCNN-7 (33x33 everywhere)", b16, t, "ckcnn_train_b16", None if args.quick else 0.1,
         "CKCNN train step")

    # Kernel generation alone: all 15 kernels at init, fwd+bwd (the original: 33 ms, 2% of a step).
    convs = [c for _, c in continuous_convs(init)]
    init.train()

    def generate():
        init.zero_grad(set_to_none=True)
        sum(c.generate_kernel().square().sum() for c in convs).backward()

    t = _time(args, {"flexcore": generate})
    row, data = _row("kernel generation, 15 layers at init, fwd+bwd", "-", t, "kernel_generation", None)
    table.rows.append(row)
    report.data["rows"].append(data)
    step = report.data["rows"][0]["times"]["flexcore"]["median"]
    report.data["kernel_generation_share_of_init_step"] = t["flexcore"].median / step
    table.note = (
        f"Trained-like kernel sizes (fixture {TRAINED_CASE}): "
        + ", ".join("x".join(map(str, k)) for k in report.data["trained_like_kernel_sizes"])
        + f". Kernel generation = {100 * t['flexcore'].median / step:.1f}% of the init step here. "
        "spatial ref = the same model on the direct path (the original's algorithm); 'load-scaled' divides by "
        "the original's figure times this run's probe (nn.Conv2d 5x5 fwd+bwd) / 46 ms."
    )
    return report


@register_benchmark("inference", "FlexNet-7 eval forward: cached vs baked vs regenerating spatial kernels", _common_arguments)
def bench_inference(args) -> Report:
    dev, folder, report, table = _start(args, "FlexNet-7 eval forward (no grad)")
    batch = 2 if args.quick else 16
    x, _ = _quick_input(args, batch)
    for case, label, key, target in (
        (INIT_CASE, "init (all 5x5)", "flexnet7_init_eval_b16", 0.8),
        (TRAINED_CASE, "trained-like (5x5..33x33)", "flexnet7_trained_eval_b16", 0.25),
    ):
        model, _ = load_fixture_model(folder, case)
        model.to(dev).eval()
        with torch.no_grad():
            expected = model(x)  # also records the input shape that baking resolves 'auto' at
        baked = bake_model(copy.deepcopy(model)).eval()
        with torch.no_grad():
            err = ((baked(x) - expected).abs().max() / expected.abs().max().clamp_min(1e-12)).item()
        if err > 1e-4:
            raise AssertionError(f"inference benchmark: baked model disagrees with the unbaked one ({err:.2g}, {case})")
        variants = {"cached": eval_fn(model, x), "baked": eval_fn(baked, x)}
        if not args.skip_reference:
            variants["spatial ref"] = eval_fn(set_fft(copy.deepcopy(model), False), x, regenerate=True)
        t = _time(args, variants)
        for name in ("cached", "baked"):
            row_t = dict(t, flexcore=t[name])
            row_t.pop("cached"), row_t.pop("baked")
            goal = target if name == "baked" and not args.quick else None
            _add(report, table, f"{label}, {name}", batch, row_t, key, goal, f"baked eval, {label}" if goal else None)
    table.note = ("cached = unbaked model in eval mode (kernels and spectra cached after the first call); "
                  "baked = bake_model (plain convs with the cropped kernels, FFT where it wins); spatial ref = "
                  "kernels regenerated every call and the direct path (the original's eval); 'load-scaled' "
                  "as in the models table.")
    return report

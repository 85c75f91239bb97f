"""Fit several kernel nets to several targets and report MSE/PSNR (as the original's `ckernel_fitting/`); gin-configurable.

    tools/fit_kernel.py --config-file kernel_fitting/gabor.gin
    tools/fit_kernel.py --kernel-nets MAGNet SIREN GaborNet --targets image --image cat.png
    flexcore-fit-kernel --targets gabor chirp --freqs 1 4 16 --iterations 500

Any registered kernel net can be fitted, plugins included (``--plugin``); its
hyper-parameters come from gin (``MAGNet.hidden_channels = 64``), its factory is called as
``factory(dim, channels)``. Outputs in ``output_dir``: ``results.{csv,json}``, a table in
``log.txt`` and on stdout, and per target the PNGs of :mod:`flexcore.fitting.report`.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence

import gin
import torch

from flexcore.fitting.fit import SCHEDULES, fit_kernel_net
from flexcore.fitting.report import format_table, save_comparison, save_image, write_table
from flexcore.fitting.targets import FREQUENCY_TARGETS, TARGETS, make_target, target_label
from flexcore.utils.cli_args import add_config_arguments, resolve_output_dir

__all__ = ["fit_kernels", "build_parser", "main"]

logger = logging.getLogger("flexcore")
DEFAULT_CONFIG = "kernel_fitting/gabor.gin"
OUTPUT_FOLDER = "fit_kernel"  # results go to output/fit_kernel/<config name> by default


@gin.configurable(module="fitting")
def fit_kernels(
    output_dir: str,
    kernel_nets: Sequence[str] = ("MAGNet", "GaborNet", "FourierNet", "SIREN"),
    targets: Sequence[str] = ("gabor",),
    freqs: Sequence[float] = (1.0, 4.0, 16.0, 64.0),
    size: int = 33,
    dim: int = 2,
    channels: int = 1,
    iterations: int = 3000,
    lr: float = 0.01,
    schedule: str = "cosine",
    weight_decay: float = 0.0,
    omega_0_lr_factor: float = 50.0,
    seed: int = 0,
    save_images: bool = True,
    num_threads: Optional[int] = None,
) -> List[Dict[str, Any]]:
    """Fit every kernel net to every target; returns one result row per (target, net).

    Args:
        output_dir: where results and images go.
        kernel_nets: registered ``KERNEL_NETS`` names (built-in or plugin).
        targets: names of :data:`flexcore.fitting.targets.TARGETS`; their options (``image``,
            ``gauss_sigma``, ``extent``, ...) are ``make_target``'s gin bindings.
        freqs: the frequency sweep of sine/chirp/Gabor targets (each one fitted per value).
        size: samples per dim of the target and the position grid.
        dim: 1 or 2.
        channels: target channels = the kernel nets' ``out_channels`` (3 for RGB images).
        iterations, lr, schedule, weight_decay, omega_0_lr_factor: see ``fit_kernel_net``.
        seed: every net is built after ``torch.manual_seed(seed)`` (same init whatever the order).
        save_images: write the PNGs.
        num_threads: torch CPU threads (None: torch's default).
    """
    from flexcore.registry import KERNEL_NETS

    if num_threads:
        torch.set_num_threads(num_threads)
    if schedule not in SCHEDULES:
        raise ValueError(f"fit_kernels.schedule must be one of {SCHEDULES}, got {schedule!r}.")
    factories = {name: KERNEL_NETS.get(name) for name in kernel_nets}  # unknown names fail here, before fitting
    unknown = [t for t in targets if t.lower() not in TARGETS]
    if unknown:
        raise ValueError(f"Unknown kernel-fitting target(s) {unknown}; use any of {sorted(TARGETS)}.")
    os.makedirs(output_dir, exist_ok=True)
    try:
        image = gin.query_parameter("make_target.image")
    except ValueError:  # not bound
        image = None

    rows: List[Dict[str, Any]] = []
    for name in targets:
        sweep = list(freqs) if name.lower() in FREQUENCY_TARGETS else [None]
        for freq in sweep:
            extra = {} if freq is None else {"freq": float(freq)}
            target = make_target(name, size=size, dim=dim, channels=channels, **extra)
            label = target_label(name, freq, image)
            predictions, psnrs = {}, {}
            for net_name, factory in factories.items():
                torch.manual_seed(seed)
                net = factory(dim, channels)
                result = fit_kernel_net(net, target, iterations=iterations, lr=lr, schedule=schedule,
                                        weight_decay=weight_decay, omega_0_lr_factor=omega_0_lr_factor)
                rows.append({"target": label, "kernel_net": net_name, **result.row()})
                predictions[net_name], psnrs[net_name] = result.prediction, result.psnr
                logger.info("%s <- %s: MSE %.3e, PSNR %.2f dB (best at iteration %d of %d, %.1f s)", label,
                            net_name, result.mse, result.psnr, result.best_iteration, iterations, result.seconds)
            if save_images:
                folder = os.path.join(output_dir, label)
                os.makedirs(folder, exist_ok=True)
                if dim == 2:
                    save_image(target, os.path.join(folder, "ground_truth.png"))
                    for net_name, values in predictions.items():
                        save_image(values, os.path.join(folder, f"{net_name}.png"))
                save_comparison(target, predictions, psnrs, os.path.join(folder, "comparison.png"),
                                title=f"{label}: {size}{'x' + str(size) if dim == 2 else ''} samples, {iterations} iterations")
            write_table(rows, output_dir)  # after every target: an interrupted sweep keeps what it did
    logger.info("Kernel fitting results (%s):\n%s", output_dir, format_table(rows))
    return rows


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Fit kernel nets to target functions, images or random kernels; report MSE and PSNR.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=f"Targets: {', '.join(sorted(TARGETS))} (frequency sweeps: {', '.join(FREQUENCY_TARGETS)}).",
    )
    add_config_arguments(parser, default_config=DEFAULT_CONFIG, tool=OUTPUT_FOLDER, what="results and images")
    parser.add_argument("--kernel-nets", nargs="+", metavar="NAME", help="registered kernel nets to fit")
    parser.add_argument("--targets", nargs="+", metavar="NAME", help="targets to fit")
    parser.add_argument("--image", metavar="PATH", help="image file for the 'image' target (adds it if not given)")
    parser.add_argument("--freqs", nargs="+", type=float, metavar="F", help="frequency sweep of sine/chirp/gabor")
    parser.add_argument("--size", type=int, help="samples per dim")
    parser.add_argument("--iterations", type=int, help="optimisation steps per fit")
    parser.add_argument("--lr", type=float, help="learning rate")
    return parser


def _cli_bindings(args: argparse.Namespace) -> List[str]:
    bindings = []
    for flag, key in (("kernel_nets", "kernel_nets"), ("freqs", "freqs"), ("size", "size"),
                      ("iterations", "iterations"), ("lr", "lr")):
        value = getattr(args, flag)
        if value is not None:
            bindings.append(f"fit_kernels.{key} = {list(value) if isinstance(value, list) else value!r}")
    targets = list(args.targets) if args.targets else None
    if args.image:
        bindings.append(f"make_target.image = {args.image!r}")
        if targets is None:
            targets = ["image"]
        elif "image" not in targets:
            targets.append("image")
    if targets is not None:
        bindings.append(f"fit_kernels.targets = {targets!r}")
    return bindings


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``tools/fit_kernel.py`` / ``flexcore-fit-kernel``."""
    from flexcore.config import ConfigError, parse_config, write_config_files
    from flexcore.registry import PluginError, UnknownNameError
    from flexcore.utils.logger import setup_logger

    args = build_parser().parse_args(argv)
    files = args.config_files or [DEFAULT_CONFIG]
    output_dir = resolve_output_dir(args, tool=OUTPUT_FOLDER, default_config=DEFAULT_CONFIG)
    try:
        parse_config(files, list(args.bindings) + _cli_bindings(args), plugins=args.plugins, finalize=False)
        setup_logger(output_dir)
        rows = fit_kernels(output_dir)
        write_config_files(output_dir, operative=True)
    except PluginError as exc:  # the message already holds the plugin's own traceback
        print(f"Plugin error: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, UnknownNameError, FileNotFoundError, ValueError, FloatingPointError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 2 if isinstance(exc, (ConfigError, UnknownNameError)) else 1
    print(f"Results and images: {output_dir} (results.csv, results.json, one folder of PNGs per target)")
    return 0

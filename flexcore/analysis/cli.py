"""``tools/analyze_model.py`` / ``flexcore-analyze``: FLOPs, parameters, activations, profile, kernels.

    tools/analyze_model.py --config-file cifar10/flexnet7.gin --fake-data --tasks flops params
    tools/analyze_model.py --config-file cifar10/flexnet7.gin --weights run/model_final.pth --tasks kernels
    tools/analyze_model.py --config-file cifar10/flexnet7.gin --fake-data --tasks profile --profile-steps 10

The model and data come from the gin config exactly as training builds them (the dataset
named by ``Data.dataset``, the model by ``build_model``); ``--fake-data`` replaces the
dataset by random samples of its shape, so nothing needs to be on disk.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from typing import Any, Dict, List, Optional, Sequence, Tuple

import gin
import torch
import torch.nn as nn

from flexcore.config import ConfigError, parse_config
from flexcore.engine.trainer_config import configured_value
from flexcore.utils.cli_args import add_config_arguments, resolve_output_dir
from flexcore.utils.logger import setup_logger

__all__ = ["TASKS", "build_parser", "main", "load_analysis_setup", "AnalysisSetup"]

OUTPUT_FOLDER = "analysis"  # reports go to output/analysis/<config name> by default
TASKS = ("flops", "params", "activations", "profile", "kernels", "structure")

logger = logging.getLogger("flexcore")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Count FLOPs/parameters/activations, profile training steps and report learned "
        "kernels of a flexcore model composed from gin files.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("\n\n", 1)[1],
    )
    add_config_arguments(parser, tool=OUTPUT_FOLDER, what="reports", output_aliases=("--output",))
    parser.add_argument("--weights", action="append", default=[], metavar="PATH",
                        help="checkpoint(s) to load; the first is analysed, all appear in the kernel-size plot")
    parser.add_argument("--fake-data", action="store_true",
                        help="use random samples of the dataset's shape (no dataset files needed)")
    parser.add_argument("--tasks", nargs="+", choices=TASKS, default=["flops", "params"],
                        help="what to compute (default: flops params)")
    parser.add_argument("--batch-size", type=int, default=1, help="input batch for FLOP/activation counts (default 1)")
    parser.add_argument("--input-size", type=int, nargs="+", default=None, metavar="N",
                        help="analyse random inputs of this spatial size instead of the dataset's "
                        "(e.g. 64 64: counts at another resolution)")
    parser.add_argument("--convention", choices=("mac", "flop"), default="mac",
                        help="mac: one multiply-add = 1 (fvcore, default); flop: = 2 (torch FlopCounterMode)")
    parser.add_argument("--max-depth", type=int, default=3, help="module depth of the per-module tables")
    parser.add_argument("--strict", action="store_true", help="fail if any traced op has no FLOP handle")
    parser.add_argument("--profile-steps", type=int, default=10, help="profiled training steps (default 10)")
    parser.add_argument("--profile-warmup", type=int, default=1, help="unrecorded steps before profiling")
    parser.add_argument("--profile-batch-size", type=int, default=None,
                        help="training batch while profiling (default: the config's Data.batch_size)")
    parser.add_argument("--kernel-slices", type=int, default=4, help="(out, in) kernel slices per layer in kernels.png")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ... (default cpu)")
    return parser


class AnalysisSetup:
    """What every task needs: the dataset (real or fake), its metadata and a model factory."""

    def __init__(self, dataset, dataset_name: str, device: torch.device, input_size: Optional[Sequence[int]] = None):
        self.dataset = dataset
        self.dataset_name = dataset_name
        self.metadata = dataset.metadata
        self.device = device
        if input_size is not None and len(input_size) != self.metadata.dim:
            raise ConfigError(
                f"--input-size {' '.join(map(str, input_size))}: {dataset_name} samples have "
                f"{self.metadata.dim} spatial dim(s) {tuple(self.metadata.shape)}; give {self.metadata.dim} sizes."
            )
        self.input_size = tuple(input_size) if input_size else None
        self._shared: Dict[Optional[str], nn.Module] = {}

    def build_model(self, weights: Optional[str] = None) -> nn.Module:
        from flexcore.modeling import build_model

        model = build_model(self.metadata)
        if weights:
            load_weights(model, weights)
        return model.to(self.device)

    def shared_model(self, weights: Optional[str] = None) -> nn.Module:
        """One model for the tasks that only read it (FLOPs trace a copy; params, structure):
        building a full-size model costs seconds."""
        if weights not in self._shared:
            self._shared[weights] = self.build_model(weights)
        return self._shared[weights]

    def batch(self, batch_size: int) -> Tuple[torch.Tensor, Any]:
        """The first ``batch_size`` samples of the dataset, stacked: ``(B, C, *shape)`` and targets
        (random ones of ``input_size`` if that was given)."""
        if self.input_size is not None:
            from dataclasses import replace

            from flexcore.data.base import FakeDataset

            fake = FakeDataset(replace(self.metadata, shape=self.input_size), length=batch_size)
            samples = [fake[i] for i in range(batch_size)]
            inputs = torch.stack([s[0] for s in samples]).to(self.device)
            return inputs, torch.stack([torch.as_tensor(s[1]) for s in samples]).to(self.device)
        n = min(batch_size, len(self.dataset))
        samples = [self.dataset[i] for i in range(n)]
        inputs = torch.stack([torch.as_tensor(s[0]) for s in samples]).to(self.device)
        targets = torch.stack([torch.as_tensor(s[1]) for s in samples]).to(self.device)
        return inputs, targets


def _query(name: str) -> Any:
    try:
        return gin.query_parameter(name)
    except ValueError:
        return None


def load_analysis_setup(fake_data: bool, device: str = "cpu", split: str = "train",
                        input_size: Optional[Sequence[int]] = None) -> AnalysisSetup:
    """Build the config's training dataset (``fake_data``: random samples of its shape) under gin."""
    from flexcore.data.base import build_dataset

    name = configured_value("dataset") or _query("build_dataset.name")
    if not name:
        raise ConfigError(
            "The config names no dataset: set `Data.dataset = '<name>'` (see `python -m flexcore.registry "
            "list datasets`)."
        )
    with gin.config_scope(split):
        dataset = build_dataset(name=name, split=split, fake=fake_data)
    return AnalysisSetup(dataset, name, torch.device(device), input_size)


def load_weights(model: nn.Module, path: str) -> None:
    """Load a flexcore checkpoint's model weights (safe loading: tensors only)."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--weights {path!r}: no such file.")
    from flexcore.checkpoint import Checkpointer

    Checkpointer(model).load(path, checkpointables=[])


# ---------------------------------------------------------------- tasks
def _write(output: str, name: str, text: str) -> str:
    path = os.path.join(output, name)
    with open(path, "w", encoding="utf-8") as f:
        f.write(text.rstrip() + "\n")
    return path


def run_flops(setup: AnalysisSetup, args, output: str, tasks: Sequence[str]) -> Dict[str, Any]:
    from .flops import flop_report

    model = setup.shared_model(args.weights[0] if args.weights else None)
    inputs, _ = setup.batch(args.batch_size)
    report = flop_report(model, (inputs,), convention=args.convention, strict=args.strict)
    sections = []
    if "flops" in tasks:
        sections += [
            "## Summary\n" + report.summary_table(),
            "## Kernel generation per layer (training)\n" + report.kernel_table() if report.kernel_flops else "",
            "## By operator\n" + report.operator_table(),
            "## Training, per module (kernels generated each forward)\n" + report.module_table("train", args.max_depth),
            "## Inference, per module (baked kernels)\n" + report.module_table("inference", args.max_depth),
        ]
        _write(output, "flops.txt", "\n\n".join(s for s in sections if s))
        with open(os.path.join(output, "flops.json"), "w", encoding="utf-8") as f:
            json.dump({"convention": args.convention, "input_shape": list(report.input_shape),
                       "notes": report.notes, **report.totals(), "kernel_generation_by_layer": report.kernel_flops,
                       "train_by_operator": dict(report.train.by_operator()),
                       "inference_by_operator": dict(report.inference.by_operator())}, f, indent=2)
        logger.info("FLOPs of %s on %s:\n%s", type(model).__name__, setup.dataset_name, "\n\n".join(sections[:2]))
    if "activations" in tasks:
        text = ("Activations: output elements of convolutions, linears, matmuls, einsums and inverse FFTs "
                f"(fvcore's definition), input batch {tuple(report.input_shape)}.\n"
                + report.module_table("train", args.max_depth))
        _write(output, "activations.txt", text)
        logger.info("%s", text)
    missing = report.train.unsupported_ops() + report.inference.unsupported_ops()
    if missing:
        logger.warning("Ops without a FLOP handle (not counted): %s", dict(missing))
    return {"totals": report.totals(), "uncounted": dict(missing)}


def run_params(setup: AnalysisSetup, args, output: str) -> Dict[str, Any]:
    from fvcore.nn import parameter_count, parameter_count_table

    model = setup.shared_model(args.weights[0] if args.weights else None)
    table = parameter_count_table(model, max_depth=args.max_depth)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    text = f"{trainable:,} trainable parameters ({type(model).__name__} on {setup.dataset_name}).\n{table}"
    path = _write(output, "params.txt", text)
    logger.info("Parameters: %s (table by module: %s)", f"{trainable:,}", path)
    return {"params": parameter_count(model)[""], "trainable": trainable}


def run_structure(setup: AnalysisSetup, args, output: str) -> Dict[str, Any]:
    model = setup.shared_model(args.weights[0] if args.weights else None)
    path = _write(output, "structure.txt", str(model))
    logger.info("Model structure written to %s", path)
    return {}


def run_profile(setup: AnalysisSetup, args, output: str) -> Dict[str, Any]:
    from .profiler import profile_training
    from .training import training_components

    model = setup.build_model(args.weights[0] if args.weights else None)
    batch_size = args.profile_batch_size or configured_value("batch_size") or 32
    loss_fn, optimizer = training_components(model, setup.metadata)
    batches = [setup.batch(batch_size)]
    result = profile_training(model, batches, loss_fn, optimizer, os.path.join(output, "profile"),
                              steps=args.profile_steps, warmup=args.profile_warmup)
    logger.info("Profile (batch %d), top ops by self time:\n%s\n\nRegions:\n%s", batch_size,
                result.top_ops_table(15), result.regions_table())
    return {"top_ops": result.top_ops(10)}


def run_kernels(setup: AnalysisSetup, args, output: str) -> Dict[str, Any]:
    from .kernels import kernel_stats, write_kernel_report

    checkpoints = list(args.weights) or [None]
    inputs, _ = setup.batch(1)
    stats_by_label, last_model, last_label = {}, None, "init"
    for path in checkpoints:
        model = setup.build_model(path).eval()
        with torch.no_grad():
            model(inputs)  # fixes every layer's grid (horizon 'same')
        label = _checkpoint_label(path, checkpoints)
        stats_by_label[label] = kernel_stats(model)
        last_model, last_label = model, label
    extra = {k: v for k, v in stats_by_label.items() if k != last_label}
    written = write_kernel_report(last_model, output, label=last_label, num_slices=args.kernel_slices,
                                  extra_stats=extra)
    return {"files": written}


def _checkpoint_label(path: Optional[str], all_paths: Sequence[Optional[str]]) -> str:
    if path is None:
        return "init"
    names = [os.path.basename(p) for p in all_paths if p]
    base = os.path.basename(path)
    if names.count(base) > 1:  # same file name in several runs: show the run folder too
        return os.path.join(os.path.basename(os.path.dirname(os.path.abspath(path))), base)
    return os.path.splitext(base)[0]


def analyze(args: argparse.Namespace) -> Dict[str, Any]:
    """Run the requested tasks; returns their results by task name."""
    bindings = list(args.bindings)
    parse_config(args.config_files, bindings, plugins=args.plugins, finalize=False)
    output = resolve_output_dir(args, tool=OUTPUT_FOLDER)
    os.makedirs(output, exist_ok=True)
    setup_logger(output, name="flexcore")
    setup = load_analysis_setup(args.fake_data, args.device, input_size=args.input_size)
    shape = setup.input_size or setup.metadata.shape
    logger.info("Analysing %s (dataset %s%s, input %s) -> %s", args.config_files, setup.dataset_name,
                ", fake data" if args.fake_data else "", (setup.metadata.in_channels, *shape), output)
    results: Dict[str, Any] = {}
    tasks = list(dict.fromkeys(args.tasks))
    if "flops" in tasks or "activations" in tasks:
        results["flops"] = run_flops(setup, args, output, tasks)
    if "params" in tasks:
        results["params"] = run_params(setup, args, output)
    if "structure" in tasks:
        results["structure"] = run_structure(setup, args, output)
    if "profile" in tasks:
        results["profile"] = run_profile(setup, args, output)
    if "kernels" in tasks:
        results["kernels"] = run_kernels(setup, args, output)
    logger.info("Analysis written to %s", output)
    return results


def main(argv: Optional[List[str]] = None) -> int:
    """Console entry: parse ``argv`` and run; config and data errors print one clear message."""
    args = build_parser().parse_args(argv)
    from flexcore.checkpoint import CheckpointError
    from flexcore.data.base import DatasetError
    from flexcore.registry import PluginError

    try:
        analyze(args)
    except PluginError as exc:  # the message already holds the plugin's own traceback
        print(f"Plugin error: {exc}", file=sys.stderr)
        return 2
    except (ConfigError, DatasetError, FileNotFoundError, CheckpointError) as exc:
        print(f"Error: {exc}", file=sys.stderr)
        if isinstance(exc, DatasetError) and not args.fake_data:
            print("Add --fake-data to analyse the model without the dataset's files.", file=sys.stderr)
        return 2
    return 0

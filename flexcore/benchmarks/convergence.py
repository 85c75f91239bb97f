"""``convergence`` benchmark: train the quick configs to convergence on the CPU.

No dataset of the paper can be downloaded here, so convergence is shown on what can be
had: the embedded ``Digits`` data (as images and as pixel sequences) and the generated
sequence tasks (adding problem, copy memory). Each run is the shipped ``gin_configs/quick/`` config trained in full through the
``Trainer``; the table gives the final test metric, the final training loss and the wall
time, and the targets check that each run got well past chance.

    python tools/benchmark.py convergence               # all runs, minutes each on 2 cores
    python tools/benchmark.py convergence --runs digits_flexnet
    python tools/benchmark.py convergence --quick       # a few steps each: a smoke run
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import time
from typing import Any, Dict, List, Optional

import gin
import torch

from flexcore.benchmarks.harness import Check, Report, Table, register_benchmark
from flexcore.utils.cli_args import add_output_dir_argument

# name -> (config, task metric, chance level, target on the test split, what the target means)
RUNS = {
    "digits_flexnet": ("quick/digits_flexnet.gin", "accuracy", 10.0, 95.0, "test accuracy >= 95 %"),
    "sdigits_flextcn": ("quick/sdigits_flextcn.gin", "accuracy", 10.0, 90.0, "test accuracy >= 90 %"),
    # Regression: the task's metric is the loss, the MSE.
    "adding_flextcn": ("quick/adding_flextcn.gin", "loss", 1 / 6, 0.01, "test MSE <= 0.01 (constant guess: 0.167)"),
    # Accuracy over every step (blanks included); the recall accuracy is reported beside it.
    "copymemory_flextcn": ("quick/copymemory_flextcn.gin", "accuracy", None, 90.0, "test accuracy >= 90 %"),
}

# --quick: a few steps on small splits, evaluated once, to check the machinery in seconds.
_QUICK_BINDINGS = [
    "Schedule.epochs = 0",
    "Schedule.max_iter = 3",
    "Schedule.eval_period = 0",
    "Schedule.checkpoint_period = 0",
    "Outputs.tensorboard = False",
    "Outputs.kernel_report = False",
    "AddingProblem.seq_length = 50",
    "CopyMemory.seq_length = 10",
]
_QUICK_SAMPLES = ["{}.train_samples = 64", "{}.val_samples = 32", "{}.test_samples = 32"]


def _bindings(config: str, quick: bool) -> List[str]:
    bindings = ["Outputs.tensorboard = False"]
    if quick:
        bindings = list(_QUICK_BINDINGS)
        dataset = {"adding": "AddingProblem", "copymemory": "CopyMemory"}.get(os.path.basename(config).split("_")[0])
        if dataset:
            bindings += [b.format(dataset) for b in _QUICK_SAMPLES]
    return bindings


def _final_train_loss(output_dir: str) -> Optional[float]:
    """The last logged training loss (median over the log window) in ``metrics.json``."""
    path = os.path.join(output_dir, "metrics.json")
    if not os.path.exists(path):
        return None
    loss = None
    with open(path) as f:
        for line in f:
            record = json.loads(line)
            if "loss" in record:
                loss = record["loss"]
    return loss


def train_config(config: str, output_dir: str, bindings: List[str]) -> Dict[str, Any]:
    """Train one gin config from scratch with the Trainer; returns its summary plus timing."""
    from flexcore.config import parse_config
    from flexcore.engine.trainer import Trainer

    gin.clear_config()
    parse_config([config], bindings, finalize=False)
    if os.path.isdir(output_dir):
        shutil.rmtree(output_dir)  # a fresh run: never resume a previous benchmark's checkpoint
    start = time.perf_counter()
    trainer = Trainer(output_dir)
    trainer.resume_or_load(resume=False)
    results = trainer.train()
    results = dict(results, total_wall_s=round(time.perf_counter() - start, 2),
                   final_train_loss=_final_train_loss(output_dir))
    memory = trainer.metadata.extras.get("memory_size") if trainer.metadata.name == "CopyMemory" else None
    if memory and trainer.test_set is not None:
        results["test_recall_accuracy"] = recall_accuracy(trainer.model, trainer.eval_loader(trainer.test_set),
                                                          memory, trainer.device)
    gin.clear_config()
    return results


@torch.no_grad()
def recall_accuracy(model, loader, memory_size: int, device) -> float:
    """Copy memory: percent of the ``memory_size`` recalled digits (the last steps) predicted right.

    The task's accuracy counts every step, most of them blanks; this is the part that needs memory.
    """
    was_training = model.training
    model.eval()
    correct = total = 0
    for inputs, targets in loader:
        logits = model(inputs.to(device))  # (B, classes, L)
        pred = logits.argmax(dim=1)[:, -memory_size:]
        correct += int((pred == targets.to(device)[:, -memory_size:]).sum())
        total += pred.numel()
    model.train(was_training)
    return 100.0 * correct / max(total, 1)


def _convergence_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", nargs="+", default=None, choices=sorted(RUNS), help="subset of the runs")
    add_output_dir_argument(p, os.path.join("output", "benchmark", "convergence"),
                            what="runs' checkpoints and metrics, one folder per run")
    p.set_defaults(output_dir=os.path.join("output", "benchmark", "convergence"))


@register_benchmark("convergence", "train the quick configs (digits, adding problem, copy memory) to convergence on CPU",
                    _convergence_arguments)
def bench_convergence(args) -> Report:
    logging.getLogger("flexcore").setLevel(logging.WARNING)  # the table is the output
    table = Table(
        "Convergence on CPU: quick configs trained in full" + (" (--quick: 3 steps, not converged)" if args.quick else ""),
        ["run", "config", "metric", "test (final model)", "test (best model)", "best val", "chance",
         "recall acc", "final train loss", "iterations", "epochs", "wall s", "params"],
    )
    report = Report(tables=[table])
    for name in args.runs or list(RUNS):
        config, metric, chance, target, meaning = RUNS[name]
        r = train_config(config, os.path.join(args.output_dir, name), _bindings(config, args.quick))
        final = r.get(f"test_{metric}_final_model")
        best = r.get(f"test_{metric}_best_model")
        best_val = next((v for k, v in r.items() if k.startswith("best_") and k.endswith(metric)), None)
        label = "mse" if metric == "loss" else metric
        table.rows.append([name, config, label, final, best, best_val, "-" if chance is None else f"{chance:.3g}",
                           r.get("test_recall_accuracy", "-"), r["final_train_loss"], r["iterations"], r["epochs"],
                           r["total_wall_s"], r["parameters"]])
        report.data[name] = {"config": config, "metric": metric, "chance": chance, **r}
        if not args.quick and final is not None:
            # Check is "value <= limit": accuracy targets as error rates.
            value, limit = (100.0 - final, 100.0 - target) if metric == "accuracy" else (final, target)
            label = f"{name}: {meaning}" + (" (as test error %)" if metric == "accuracy" else "")
            report.checks.append(Check(label, value, limit))
    table.note = ("test = the run's test split (final and best-on-validation model); wall s includes data "
                  "generation, every evaluation and the kernel report. recall acc: copy memory's accuracy on the "
                  "recalled digits only (chance 10-12.5 %). Targets: well past chance, not the paper's numbers.")
    return report

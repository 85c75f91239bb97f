"""``tools/benchmark.py quickstart``: the README's first command, timed end to end.

Runs ``python tools/train_net.py`` (the quick-start config, no arguments besides a fresh
output dir) in a child process, as a user on a fresh checkout would, and reports its test
accuracy, wall time and CPU time against the quick start's target: >= 97 % test accuracy in <= 3
minutes on 2 CPU cores. CPU time is reported too because on a shared machine the wall time
measures the other jobs as much as this one.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

from flexcore.benchmarks.harness import Check, Report, Table, register_benchmark

__all__ = ["quick_start"]

TARGET_ACCURACY = 97.0
TARGET_SECONDS = 180.0


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output-dir", default=None, help="the run's output dir (default: a fresh temporary one)")
    parser.add_argument("--gin", action="append", default=[], help="extra binding for the run (repeatable)")


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@register_benchmark("quickstart", "python tools/train_net.py end to end: test accuracy, wall and CPU time", _arguments)
def quick_start(args: argparse.Namespace) -> Report:
    output_dir = args.output_dir or os.path.join(tempfile.mkdtemp(prefix="flexcore_quickstart_"), "run")
    command = [sys.executable, "-c", "import sys; from flexcore.engine.defaults import cli_entry; sys.exit(cli_entry())",
               "--output-dir", output_dir]
    for binding in args.gin:
        command += ["--gin", binding]
    cpu_before = _children_cpu_s()
    start = time.perf_counter()
    done = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False)
    wall = time.perf_counter() - start
    cpu = _children_cpu_s() - cpu_before
    if done.returncode != 0:
        raise SystemExit(f"quickstart: the run failed (exit {done.returncode}):\n{done.stdout[-4000:]}")
    with open(os.path.join(output_dir, "summary.json")) as f:
        summary = json.load(f)
    final, best = summary["test_accuracy_final_model"], summary.get("test_accuracy_best_model", float("nan"))
    table = Table(
        "Quick start (python tools/train_net.py)",
        ["test acc. final %", "test acc. best-val %", "wall s", "CPU s", "training s", "samples/s", "parameters"],
        [[final, best, wall, cpu, summary["wall_time_s"], summary["train_samples_per_s"], summary["parameters"]]],
        note=f"wall = the whole command (start-up, training, tests, report); output in {output_dir}",
    )
    checks = [
        Check("quick start test error % (target accuracy >= 97 %)", 100.0 - final, 100.0 - TARGET_ACCURACY),
        Check("quick start wall time s", wall, TARGET_SECONDS),
        Check("quick start CPU time s (wall on an idle 2-core machine is about this)", cpu, TARGET_SECONDS),
    ]
    data = {"summary": summary, "wall_s": wall, "cpu_s": cpu, "output_dir": output_dir}
    return Report([table], checks, data)

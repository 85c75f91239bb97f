"""Sweeps: the cartesian grid of ``--sweep`` bindings, as one SLURM job array or local runs.

    tools/train_net.py --sweep "MAGNet.hidden_channels=16,32" --sweep "seed=0,1,2" --launcher slurm

Each run gets its own output dir named from its bindings (``hidden_channels-16_seed-0``)
inside the sweep's dir, which also holds ``sweep.json`` (the runs and their jobs) and, once
every run ended, ``sweep_summary.md`` / ``sweep_summary.json`` (bindings -> final and best
metrics). ``python -m flexcore.engine.sweep DIR`` writes the summary again at any time.
Each run that completes also records its swept values and final metrics for TensorBoard's
HParams tab (``tensorboard --logdir <sweep dir>`` compares the runs).
"""
from __future__ import annotations

import argparse
import ast
import copy
import dataclasses
import functools
import hashlib
import itertools
import json
import os
import re
import sys
import traceback
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import gin
import submitit
from tabulate import tabulate

from flexcore.engine.distributed import LaunchError, launch_local
from flexcore.engine.output_dir import run_output_dir
from flexcore.engine.slurm import (SlurmJob, check_config, job_log_paths, make_executor, portable_args,
                                   print_submission, require_slurm, sbatch_errors, wait_for_jobs)
from flexcore.utils import comm
from flexcore.utils.events import write_hparams

__all__ = ["SweepRun", "parse_sweep", "sweep_runs", "launch_sweep", "summarize_sweep", "read_run_results",
           "write_run_hparams"]


MANIFEST = "sweep.json"
_OPEN, _CLOSE = "([{", ")]}"


@dataclasses.dataclass
class SweepRun:
    """One point of the grid."""

    name: str
    bindings: List[str]
    values: Dict[str, str]
    output_dir: str
    job_id: Optional[str] = None
    status: Optional[str] = None  # local runs: "completed" / "failed: ..."


def _split_values(text: str) -> List[str]:
    """Split on commas outside brackets and quotes: ``[1,2],[3,4]`` -> two values."""
    values, depth, quote, start = [], 0, None, 0
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char in _OPEN:
            depth += 1
        elif char in _CLOSE:
            depth -= 1
        elif char == "," and depth == 0:
            values.append(text[start:i].strip())
            start = i + 1
    values.append(text[start:].strip())
    return values


def parse_sweep(specs: Sequence[str]) -> List[Tuple[str, List[str]]]:
    """``["A.b=1,2", "seed=0,1"]`` -> ``[("A.b", ["1", "2"]), ("seed", ["0", "1"])]``."""
    axes, seen = [], set()
    for spec in specs:
        key, sep, values_text = spec.partition("=")
        key = key.strip()
        values = _split_values(values_text) if sep else []
        if not key or not values or any(not v for v in values):
            raise LaunchError(
                f"--sweep {spec!r}: expected BINDING=V1,V2,... with gin values, e.g. "
                "--sweep \"MAGNet.hidden_channels=16,32\" (lists: --sweep \"A.b=[1,2],[3,4]\")."
            )
        if key in seen:
            raise LaunchError(f"--sweep names {key!r} twice; give all its values in one --sweep.")
        seen.add(key)
        axes.append((key, values))
    return axes


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.+-]+", "_", text.strip().strip("'\"")).strip("_") or "_"


def _short_keys(keys: Sequence[str]) -> Dict[str, str]:
    """``MAGNet.hidden_channels`` -> ``hidden_channels`` unless two keys would then collide."""
    short = {k: re.split(r"[./]", k)[-1] for k in keys}
    counts = {s: list(short.values()).count(s) for s in short.values()}
    return {k: _safe(s if counts[s] == 1 else k) for k, s in short.items()}


def run_name(values: Dict[str, str], short: Dict[str, str], max_len: int = 120) -> str:
    """A filesystem-safe folder name from a run's bindings."""
    name = "_".join(f"{short[k]}-{_safe(v)}" for k, v in values.items())
    if len(name) > max_len:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: max_len - 9]}-{digest}"
    return name


def sweep_runs(axes: Sequence[Tuple[str, List[str]]], sweep_dir: str) -> List[SweepRun]:
    """The cartesian grid, first axis slowest, each run with its own output dir."""
    short = _short_keys([k for k, _ in axes])
    runs, names = [], set()
    for combo in itertools.product(*[values for _, values in axes]):
        values = {k: v for (k, _), v in zip(axes, combo)}
        name = run_name(values, short)
        if name in names:  # values that differ only in unsafe characters
            name = f"{name}-{len(runs)}"
        names.add(name)
        bindings = [f"{k} = {v}" for k, v in values.items()]
        runs.append(SweepRun(name, bindings, values, os.path.join(sweep_dir, name)))
    return runs


def _write_atomic(path: str, text: str) -> None:
    """Readers (and a second writer) never see a half-written file."""
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def _write_manifest(sweep_dir: str, axes, runs: Sequence[SweepRun], launcher: str) -> None:
    os.makedirs(sweep_dir, exist_ok=True)
    manifest = {"axes": [[k, v] for k, v in axes], "launcher": launcher, "runs": [dataclasses.asdict(r) for r in runs]}
    _write_atomic(os.path.join(sweep_dir, MANIFEST), json.dumps(manifest, indent=1))


# summary.json entries the table leaves to sweep_summary.json (bookkeeping, not results),
# and those it shows only where they differ between runs (the model's size and cost).
_SUMMARY_DETAILS = ("iterations", "epochs", "best_iteration", "best_epoch", "train_samples_per_s")
_MODEL_FIGURES = ("parameters", "flops", "flops_per_sample")


def _metric_goal(key: str) -> Optional[str]:
    """``max`` for accuracies, ``min`` for losses, None for everything else (lr, times, ...)."""
    low = key.lower()
    if any(tag in low for tag in ("acc", "top1", "top5", "top-1", "top-5")):
        return "max"
    return "min" if "loss" in low or "mse" in low else None


def read_run_results(output_dir: str) -> Dict[str, Dict[str, float]]:
    """A run's results from its output dir.

    Returns ``final`` (last value of every scalar in ``metrics.json``), ``best`` (best value
    of each accuracy and loss there) and ``summary`` (the trainer's ``summary.json``).
    """
    final: Dict[str, float] = {}
    best: Dict[str, float] = {}
    summary: Dict[str, Any] = {}
    path = os.path.join(output_dir, "metrics.json")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:  # a line cut short by a killed job
                    continue
                for key, value in record.items():
                    if not isinstance(value, (int, float)) or isinstance(value, bool):
                        continue
                    final[key] = value
                    goal = _metric_goal(key)
                    if goal:
                        best[key] = (max if goal == "max" else min)(value, best.get(key, value))
    path = os.path.join(output_dir, "summary.json")
    if os.path.exists(path):
        with open(path) as f:
            summary = json.load(f)
    return {"final": final, "best": best, "summary": summary}


def _hparam_value(text: str) -> Any:
    """A swept gin value as TensorBoard takes it: a number, a bool, else a string."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):  # @References, macros, ...
        return text
    return value if isinstance(value, (bool, int, float, str)) else text


def _hparam_domains(axes: Sequence[Tuple[str, Sequence[str]]]) -> Dict[str, List[Any]]:
    """Every value of each axis, of one type (numbers as floats where any is a float, or all as text)."""
    domains = {}
    for key, texts in axes:
        values = [_hparam_value(t) for t in texts]
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            values = [float(v) for v in values] if any(isinstance(v, float) for v in values) else values
        elif len({type(v) for v in values}) > 1:
            values = list(texts)
        domains[key] = values
    return domains


def write_run_hparams(output_dir: str, values: Dict[str, str],
                      domains: Optional[Dict[str, List[Any]]] = None) -> Dict[str, float]:
    """Record a finished run's swept values and final metrics for TensorBoard's HParams tab.

    The metrics are the numbers of the trainer's ``summary.json`` (else the best accuracy
    and loss in ``metrics.json``), as scalars ``hparams/<name>``. Returns them.
    """
    results = read_run_results(output_dir)
    source = results["summary"] or results["best"]
    metrics = {f"hparams/{k}": float(v) for k, v in source.items()
               if isinstance(v, (int, float)) and not isinstance(v, bool) and k not in _SUMMARY_DETAILS}
    domains = dict(domains or {})
    hparams = {}
    for key, text in values.items():
        value = _hparam_value(text)
        domain = domains.get(key)
        if domain and not any(type(d) is type(value) for d in domain):
            value = float(value) if isinstance(domain[0], float) and isinstance(value, int) else text
        hparams[key] = value
    step = int(results["summary"].get("iterations", results["final"].get("iteration", 0) + 1)) - 1
    write_hparams(output_dir, hparams, metrics, domains, step=max(step, 0))
    return metrics


def _run_and_write_hparams(main: Callable[[argparse.Namespace], Any], values: Dict[str, str],
                           domains: Dict[str, List[Any]], args: argparse.Namespace) -> Any:
    """A sweep task: the run, then (main process) its HParams record. Module-level: it is pickled."""
    result = main(args)
    if comm.is_main_process():
        try:
            write_run_hparams(args.output_dir, values, domains)
        except Exception as exc:  # noqa: BLE001 - the run itself completed; say what is missing
            print(f"flexcore: could not record hyper-parameters for TensorBoard in {args.output_dir}: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
    return result


def _with_hparams(main, run: SweepRun, axes) -> Callable[[argparse.Namespace], Any]:
    return functools.partial(_run_and_write_hparams, main, dict(run.values), _hparam_domains(axes))


def _progress(row: Dict[str, Any], unit: str) -> Any:
    """How far a run got: the trainer's count when it finished, else the last logged one."""
    return row["summary"].get(f"{unit}s", row["final"].get(unit, ""))


def _table_columns(rows: Sequence[Dict[str, Any]]) -> List[Tuple[str, str]]:
    """(part, key) columns after the progress: the trainer's results, else metrics.json's."""
    columns: List[Tuple[str, str]] = []
    finished = [r for r in rows if r["summary"]]
    if finished:
        for row in finished:
            for key, value in row["summary"].items():
                if key in _SUMMARY_DETAILS or not isinstance(value, (int, float)) or ("summary", key) in columns:
                    continue
                if key in _MODEL_FIGURES and len({r["summary"].get(key) for r in finished}) == 1:
                    continue  # the same for every run: says nothing about the grid
                columns.append(("summary", key))
        return columns
    for row in rows:
        columns += [("final", k) for k in row["final"] if k == "loss" and ("final", k) not in columns]
        columns += [("best", k) for k in row["best"] if _metric_goal(k) == "max" and ("best", k) not in columns]
    return columns


def _slurm_status(sweep_dir: str, job_id: str, output_dir: str) -> str:
    """A SLURM run's outcome from files in plain text formats only (no scheduler call needed).

    Completed means the run wrote ``summary.json``; otherwise the job's stderr log says whether
    it raised. submitit's ``*_result.pkl`` files are never read here: unpickling a file from a
    folder someone else can write to would run whatever code they put in it.
    """
    if os.path.exists(os.path.join(output_dir, "summary.json")):
        return "completed"
    err = os.path.join(sweep_dir, "slurm", f"{job_id}_0_log.err")
    text = ""
    if os.path.exists(err):
        with open(err, errors="replace") as f:
            text = f.read()
    if "Traceback (most recent call last)" in text or "triggered an exception" in text:
        last = [line.strip() for line in text.splitlines() if line.strip()][-1:]
        return f"failed: {last[0] if last else 'error'} (see {err})"
    return "no result (running, cancelled or killed)"


def summarize_sweep(sweep_dir: str, print_table: bool = True) -> List[Dict[str, Any]]:
    """Write ``sweep_summary.md`` + ``.json`` (bindings -> status, final and best metrics)."""
    with open(os.path.join(sweep_dir, MANIFEST)) as f:
        manifest = json.load(f)
    keys = [k for k, _ in manifest["axes"]]
    rows = []
    for run in manifest["runs"]:
        status = run.get("status") or (
            _slurm_status(sweep_dir, run["job_id"], run["output_dir"]) if run.get("job_id") else "not run")
        rows.append({"run": run["name"], "job_id": run.get("job_id"), "bindings": run["values"], "status": status,
                     "output_dir": run["output_dir"], **read_run_results(run["output_dir"])})
    columns = _table_columns(rows)
    unit = "epoch" if any("epoch" in r["final"] for r in rows) else "iteration"
    headers = ["run"] + keys + ["status", f"{unit}s"] + [k if part == "summary" else f"{part} {k}" for part, k in columns]
    table = [
        [row["run"]] + [row["bindings"][k] for k in keys] + [row["status"][:40], _progress(row, unit)]
        + [row[part].get(key, "") for part, key in columns]
        for row in rows
    ]
    text = tabulate(table, headers=headers, tablefmt="github", floatfmt=".4g")
    _write_atomic(os.path.join(sweep_dir, "sweep_summary.md"), f"# Sweep {os.path.basename(os.path.normpath(sweep_dir))}\n\n{text}\n")
    _write_atomic(os.path.join(sweep_dir, "sweep_summary.json"), json.dumps(rows, indent=1))
    if print_table:
        print(f"Sweep summary ({sweep_dir}/sweep_summary.md):\n{text}", flush=True)
    return rows


def _run_args(args: argparse.Namespace, run: SweepRun) -> argparse.Namespace:
    out = copy.copy(args)
    out.bindings = list(args.bindings) + run.bindings
    out.output_dir, out.sweep = run.output_dir, []
    return out


def _launch_local_runs(main, args, axes, runs, sweep_dir) -> List[Dict[str, Any]]:
    for i, run in enumerate(runs):
        print(f"Sweep run {i + 1}/{len(runs)}: {run.name} ({', '.join(run.bindings)})", flush=True)
        gin.clear_config()  # each run parses its own config, as it would in its own process
        try:
            launch_local(_with_hparams(main, run, axes), _run_args(args, run))
            run.status = "completed"
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - one failed run must not stop the grid
            traceback.print_exc()
            run.status = f"failed: {type(exc).__name__}: {exc}".splitlines()[0]
        _write_manifest(sweep_dir, axes, runs, "local")
    gin.clear_config()
    return summarize_sweep(sweep_dir)


def _launch_slurm_array(main, args, axes, runs, sweep_dir):
    require_slurm()
    folder = os.path.join(sweep_dir, "slurm")
    name = os.path.basename(sweep_dir)
    executor = make_executor(args, folder, name=f"flexcore-sweep-{name}")
    with sbatch_errors():
        jobs = executor.submit_array([
            SlurmJob(_with_hparams(main, r, axes), portable_args(args, r.bindings, r.output_dir)) for r in runs
        ])
    for run, job in zip(runs, jobs):
        run.job_id = job.job_id
    _write_manifest(sweep_dir, axes, runs, "slurm")
    # One small job writes the summary once every run ended, whether or not anyone waits.
    summary_executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    array_id = jobs[0].job_id.split("_")[0]
    summary_executor.update_parameters(
        name=f"flexcore-sweep-summary-{name}", timeout_min=10, nodes=1, tasks_per_node=1,
        **{f"slurm_{k}": getattr(args, k) for k in ("partition", "account", "qos") if getattr(args, k)},
        slurm_dependency=f"afterany:{array_id}",
    )
    with sbatch_errors():
        summary_job = summary_executor.submit(summarize_sweep, sweep_dir)
    print(f"Submitted sweep of {len(runs)} runs as SLURM job array {array_id} "
          f"(at most {args.array_parallelism} at once) in {sweep_dir}", flush=True)
    for run, job in zip(runs, jobs):
        print(f"  {job.job_id}: {run.name}  log {job_log_paths(job)['out']}", flush=True)
    print_submission(summary_job, sweep_dir, what="summary job (runs when the array ends)")
    if not args.wait:
        return jobs

    def report(job):
        run = next(r for r in runs if r.job_id == job.job_id)
        print(f"Sweep run {run.name} (job {job.job_id}): {_slurm_status(sweep_dir, job.job_id, run.output_dir)}",
              flush=True)

    wait_for_jobs(jobs, on_done=report)
    return summarize_sweep(sweep_dir)  # the same table the summary job writes (atomically, both)


def launch_sweep(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace):
    """Run the ``--sweep`` grid: one SLURM job array, or one local run after another.

    Returns the summary rows (the submitted jobs for SLURM without ``--wait``).
    Raises:
        LaunchError: a malformed ``--sweep``, or runs that failed (after the summary).
        ConfigError: a binding gin rejects, before any run starts.
    """
    axes = parse_sweep(args.sweep)
    sweep_dir = os.path.abspath(run_output_dir(args))
    runs = sweep_runs(axes, sweep_dir)
    for run in runs:  # a typo fails before any run starts
        check_config(portable_args(args, run.bindings, run.output_dir))
    if args.launcher == "slurm":
        rows = _launch_slurm_array(main, args, axes, runs, sweep_dir)
        if not args.wait:
            return rows  # the jobs
    else:
        _write_manifest(sweep_dir, axes, runs, "local")
        rows = _launch_local_runs(main, args, axes, runs, sweep_dir)
    failed = [r["run"] for r in rows if r["status"] != "completed"]
    if failed:
        raise LaunchError(f"{len(failed)} of {len(rows)} sweep runs failed: {', '.join(failed)} "
                          f"(their logs tell why; summary in {sweep_dir}/sweep_summary.md)")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="Write a sweep's summary table again.")
    parser.add_argument("sweep_dir")
    summarize_sweep(parser.parse_args().sweep_dir)
    sys.exit(0)

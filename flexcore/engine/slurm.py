"""SLURM through submitit: submit the main job, run DDP inside it, requeue on preemption.

A job carries only what re-creates the experiment in a fresh process — absolute gin file
paths, bindings, plugin names and the output dir — never gin state: the worker parses the
config again (``main`` -> ``default_setup``). On preemption or time-out submitit calls
:meth:`SlurmJob.checkpoint`, which requeues the job with ``resume=True``; the new start
continues from the last complete checkpoint in the output dir. A job SLURM requeued by
itself (``scontrol requeue``, node failure: ``SLURM_RESTART_COUNT`` > 0) resumes too.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import os
import shutil
import subprocess
import sys
import time
from typing import Any, Callable, Dict, Optional, Sequence

import gin
import submitit
import torch

from flexcore.config import parse_config, resolve_config_file
from flexcore.engine.distributed import LaunchError, resolve_backend, run_in_process_group
from flexcore.engine.output_dir import DEFAULT_CONFIG, check_output_dir, run_output_dir
from flexcore.engine.trainer_config import check_bindings

__all__ = ["SlurmJob", "portable_args", "make_executor", "launch_slurm", "wait_for_jobs", "job_log_paths", "job_failure"]


NO_SLURM_MESSAGE = (
    "--launcher slurm needs SLURM's `sbatch`, and there is none on this machine's PATH. "
    "Run from a SLURM login node, or run here instead: drop --launcher slurm (add "
    "--num-processes N or --num-gpus N for DDP on this machine; sweeps then run one after another)."
)


class SlurmJob(submitit.helpers.Checkpointable):
    """What a SLURM job runs: ``main(args)``, as DDP when the job has several tasks.

    Args:
        main: the module-level main function (pickled by reference).
        args: flags made portable by :func:`portable_args` (paths, bindings, plugin names).
    """

    def __init__(self, main: Callable[[argparse.Namespace], Any], args: argparse.Namespace):
        self.main = main
        self.args = args

    def __call__(self, resume: bool = False) -> Any:
        args = copy.copy(self.args)
        # SLURM requeued this very job (`scontrol requeue`, a node failure, a preemption in
        # REQUEUE mode): submitit never saw a signal and reloads the original submission.
        requeued = int(os.environ.get("SLURM_RESTART_COUNT") or 0) > 0
        args.resume = bool(args.resume or resume or requeued)
        env = submitit.JobEnvironment()
        if env.num_tasks == 1:
            return self.main(args)
        dist_env = submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        return run_in_process_group(
            self.main, args,
            backend=resolve_backend(args.dist_backend, torch.cuda.is_available()),
            init_method="env://",
            world_size=dist_env.world_size,
            rank=dist_env.rank,
            local_rank=dist_env.local_rank,
            local_world_size=dist_env.local_world_size,
        )

    def checkpoint(self, resume: bool = False) -> submitit.helpers.DelayedSubmission:
        """Preempted or timed out: requeue a fresh copy that resumes from the output dir."""
        print(
            f"flexcore: preempted or timed out; requeued to resume from the last complete checkpoint "
            f"in {self.args.output_dir}",
            flush=True,
        )
        return submitit.helpers.DelayedSubmission(SlurmJob(self.main, self.args), resume=True)


def _absolute_plugin(plugin: str) -> str:
    """``.py`` paths become absolute (the job may start elsewhere); module names stay."""
    return os.path.abspath(plugin) if plugin.endswith(".py") or os.sep in plugin else plugin


def portable_args(args: argparse.Namespace, bindings: Sequence[str] = (), output_dir: Optional[str] = None) -> argparse.Namespace:
    """The flags a job needs to re-create the experiment anywhere: absolute paths, no launch.

    Args:
        args: the parsed command line.
        bindings: extra gin bindings (a sweep point), applied after ``args.bindings``.
        output_dir: overrides ``args.output_dir`` (a sweep run's own folder).
    """
    out = copy.copy(args)
    config_files = list(args.config_files) or [DEFAULT_CONFIG]
    out.config_files = [resolve_config_file(f) for f in config_files]
    out.bindings = list(args.bindings) + list(bindings)
    out.plugins = [_absolute_plugin(p) for p in args.plugins]
    out.output_dir = os.path.abspath(output_dir or run_output_dir(args))
    if args.weights and os.path.exists(args.weights):
        out.weights = os.path.abspath(args.weights)
    # Inside the job the launch is done: main() runs directly.
    out.launcher, out.sweep, out.wait = "local", [], False
    out.num_gpus, out.num_processes, out.num_machines, out.machine_rank = 0, 1, 1, 0
    return out


def check_config(args: argparse.Namespace) -> None:
    """Parse the job's config and check its output dir here first, so a typo or a dir that
    holds another run fails now rather than in the queue."""
    check_output_dir(args.output_dir, resume=args.resume, eval_only=getattr(args, "eval_only", False))

    bindings = list(args.bindings) + ([f"seed = {args.seed}"] if args.seed is not None else [])
    try:
        parse_config(args.config_files, bindings, plugins=args.plugins, finalize=False)
        check_bindings()
    finally:
        gin.clear_config()


def _additional_parameters(items: Sequence[str]) -> Dict[str, Any]:
    params: Dict[str, Any] = {}
    for item in items:
        key, _, value = item.partition("=")
        params[key.strip().lstrip("-")] = value.strip() if value.strip() else True
    return params


@contextlib.contextmanager
def sbatch_errors():
    """sbatch's refusal (bad partition, account, controller down) as a one-paragraph error."""
    try:
        yield
    except (submitit.core.utils.FailedJobError, submitit.core.utils.FailedSubmissionError) as exc:
        raise LaunchError(
            f"sbatch refused the job: {str(exc).strip()}\nCheck the SLURM flags (--partition, --account, "
            "--qos, --time, --gpus-per-node ...) against `sinfo` and your cluster's limits."
        ) from None


def require_slurm() -> None:
    if shutil.which("sbatch") is None:
        raise LaunchError(NO_SLURM_MESSAGE)


def make_executor(args: argparse.Namespace, folder: str, name: str) -> submitit.AutoExecutor:
    """A SLURM executor from the command line's SLURM flags (job files in ``folder``)."""
    require_slurm()
    gpus_per_node = args.gpus_per_node or args.num_gpus
    nodes = args.nodes if args.nodes is not None else args.num_machines
    tasks_per_node = args.tasks_per_node or gpus_per_node or args.num_processes
    # cluster= always: AutoExecutor would pick SLURM by itself whenever srun is on PATH.
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm", slurm_max_num_timeout=args.max_requeue)
    params = {
        "name": args.job_name or name,
        "timeout_min": args.timeout_min,
        "nodes": nodes,
        "tasks_per_node": tasks_per_node,
        "gpus_per_node": gpus_per_node or None,  # --gpus-per-node=0 upsets clusters without GRES
        "cpus_per_task": args.cpus_per_task,
        "mem_gb": args.mem_gb,
        "slurm_partition": args.partition,
        "slurm_account": args.account,
        "slurm_qos": args.qos,
        "slurm_constraint": args.constraint,
        "slurm_comment": args.comment,
        "slurm_setup": list(args.slurm_setup) or None,
        "slurm_additional_parameters": _additional_parameters(args.slurm_additional) or None,
        "slurm_array_parallelism": args.array_parallelism,
        # One failed task ends the job step: DDP peers would otherwise wait in a collective.
        "slurm_srun_args": ["--kill-on-bad-exit=1"],
    }
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return executor


def job_log_paths(job: submitit.Job) -> Dict[str, str]:
    """Rank 0's stdout and stderr files of a job."""
    return {"out": str(job.paths.stdout).replace("%t", "0"), "err": str(job.paths.stderr).replace("%t", "0")}


class _LogTail:
    """Prints what was appended to a file since the last call (a requeued job appends)."""

    def __init__(self, path: str, stream):
        self.path, self.stream, self.offset = path, stream, 0

    def flush(self) -> None:
        try:
            with open(self.path, "r", encoding="utf-8", errors="replace") as f:
                f.seek(self.offset)
                text = f.read()
                self.offset = f.tell()
        except FileNotFoundError:
            return
        if text:
            self.stream.write(text)
            self.stream.flush()


def wait_for_jobs(
    jobs: Sequence[submitit.Job],
    stream: Optional[submitit.Job] = None,
    poll_s: float = 2.0,
    state_poll_s: float = 15.0,
    timeout_s: Optional[float] = None,
    on_done: Optional[Callable[[submitit.Job], None]] = None,
) -> None:
    """Block until every job ended, printing ``stream``'s log as it grows.

    Args:
        poll_s: how often the logs and result files are looked at.
        state_poll_s: how often SLURM is asked (one sacct call for all jobs), for jobs
            that end without a result file (cancelled, killed).
        timeout_s: give up (TimeoutError) after this long; None waits as long as it takes.
        on_done: called once per job as it ends.
    """
    tails = []
    if stream is not None:
        paths = job_log_paths(stream)
        tails = [_LogTail(paths["out"], sys.stdout), _LogTail(paths["err"], sys.stderr)]
    start = last_state = time.time()
    pending = list(jobs)
    while True:
        for tail in tails:
            tail.flush()
        for job in list(pending):
            if job.done() and not _queued_again(job):
                pending.remove(job)
                if on_done is not None:
                    on_done(job)
        if not pending:
            break
        now = time.time()
        if timeout_s is not None and now - start > timeout_s:
            raise TimeoutError(f"jobs {[j.job_id for j in pending]} still running after {timeout_s:.0f} s")
        if now - last_state > state_poll_s:
            pending[0].get_info(mode="force")  # refreshes the shared watcher for every job
            last_state = now
        time.sleep(poll_s)
    for tail in tails:
        tail.flush()


_QUEUED_STATES = {"PENDING", "RUNNING", "CONFIGURING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED"}


def _queued_again(job: submitit.Job) -> bool:
    """True if a job that looks finished but left no result is in SLURM's queue again.

    Right after a requeue (preemption, time-out, ``scontrol requeue``), accounting (sacct,
    which submitit reads) can still report the ended attempt as FAILED or CANCELLED while
    the job already waits for its next start; the queue (squeue) knows better.
    """
    if any(task.paths.result_pickle.exists() for task in (getattr(job, "_sub_jobs", None) or [job])):
        return False
    try:
        out = subprocess.run(["squeue", "-h", "-j", str(job.job_id), "-o", "%T"], capture_output=True, text=True,
                             timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return False
    return any(state.strip() in _QUEUED_STATES for state in out.splitlines())


def job_failure(job: submitit.Job) -> Optional[str]:
    """None if the job succeeded, else the failing task's traceback and where its logs are."""
    tasks = [job.task(i) for i in range(job.num_tasks)] if job.num_tasks > 1 else [job]
    failures = [(task, task.exception()) for task in tasks]
    failures = [(task, error) for task, error in failures if error is not None]
    if not failures:
        return None
    # The task that raised first is the cause; its DDP peers then fail in a broken collective.
    raised = [(t, e) for t, e in failures if isinstance(e, submitit.core.utils.FailedJobError)]
    if raised:
        raised.sort(key=lambda item: os.path.getmtime(item[0].paths.result_pickle))
    task, error = (raised or failures)[0]
    return (f"SLURM job {job.job_id} failed (task {task.task_id}):\n{error}\n"
            f"Log: {task.paths.stdout}\nErrors: {task.paths.stderr}")


def print_submission(job: submitit.Job, output_dir: str, what: str = "job") -> None:
    paths = job_log_paths(job)
    print(
        f"Submitted SLURM {what} {job.job_id} ({job.num_tasks} task(s))\n"
        f"  output dir: {output_dir}\n"
        f"  log:        {paths['out']}\n"
        f"  errors:     {paths['err']}\n"
        f"  follow with `tail -f {paths['out']}`, cancel with `scancel {job.job_id}`",
        flush=True,
    )


def launch_slurm(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> Any:
    """Submit ``main(args)`` as one SLURM job; with ``--wait``, block and return its result.

    Raises:
        LaunchError: no SLURM here, or (with ``--wait``) the job failed.
    """
    require_slurm()
    job_args = portable_args(args)
    check_config(job_args)
    folder = os.path.join(job_args.output_dir, "slurm")
    executor = make_executor(args, folder, name=f"flexcore-{os.path.basename(job_args.output_dir)}")
    with sbatch_errors():
        job = executor.submit(SlurmJob(main, job_args))
    print_submission(job, job_args.output_dir)
    if not args.wait:
        return job
    wait_for_jobs([job], stream=job)
    failure = job_failure(job)
    if failure is not None:
        raise LaunchError(failure)
    result = job.results()[0]
    print(f"SLURM job {job.job_id} completed; results in {job_args.output_dir}", flush=True)
    return result

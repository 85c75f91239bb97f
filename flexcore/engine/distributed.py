"""DDP process groups: spawn one process per device, or join one torchrun/SLURM set up.

Every path ends in :func:`run_in_process_group`, which exports the ranks, initialises
torch.distributed and calls ``main(args)``, so the trainer sees the same world however it
was started.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import pickle
import socket
import tempfile
import time
import traceback
from typing import Any, Callable, Dict, Optional

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.multiprocessing.spawn import ProcessException

from flexcore.engine.output_dir import run_output_dir
from flexcore.engine.run_dir import RunDirLockedError, lock_holder, locked_message
from flexcore.utils import comm

__all__ = [
    "LaunchError",
    "DDPConfig",
    "find_free_port",
    "resolve_backend",
    "torchrun_env",
    "launch_ddp",
    "launch_local",
    "launch_torchrun",
    "run_in_process_group",
]

logger = logging.getLogger("flexcore")

# What torchrun (and torch.distributed.launch) export to each worker.
_TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")


class LaunchError(RuntimeError):
    """The job could not be launched, or a process/job of it failed (message says which)."""


def find_free_port() -> int:
    """A TCP port free on this machine right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def resolve_backend(backend: str, use_gpus: bool) -> str:
    """``auto`` -> nccl for GPU processes, gloo for CPU ones; checks nccl has GPUs."""
    if backend == "auto":
        return "nccl" if use_gpus else "gloo"
    if backend == "nccl" and not use_gpus:
        raise LaunchError("--dist-backend nccl needs GPU processes (--num-gpus N); CPU processes use gloo.")
    return backend


@dataclasses.dataclass(frozen=True)
class DDPConfig:
    """How many processes, where, and how they meet."""

    procs_per_machine: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    dist_url: str = "auto"
    backend: str = "gloo"
    use_gpus: bool = False

    @property
    def world_size(self) -> int:
        return self.procs_per_machine * self.num_machines

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> "DDPConfig":
        """Validate ``--num-gpus/--num-processes/--num-machines/...`` into a config."""
        if args.num_gpus < 0 or args.num_processes < 1:
            raise LaunchError("--num-gpus must be >= 0 and --num-processes >= 1.")
        if args.num_gpus > 0 and args.num_processes > 1:
            raise LaunchError(
                "Give either --num-gpus N (one process per GPU) or --num-processes N (CPU processes), not both."
            )
        use_gpus = args.num_gpus > 0
        if use_gpus and args.num_gpus > torch.cuda.device_count():
            raise LaunchError(
                f"--num-gpus {args.num_gpus} asked for more GPUs than this machine has "
                f"({torch.cuda.device_count()}). For DDP on CPU use --num-processes {args.num_gpus}."
            )
        if args.num_machines < 1 or not 0 <= args.machine_rank < args.num_machines:
            raise LaunchError(
                f"--machine-rank must be in [0, --num-machines - 1]; got {args.machine_rank} "
                f"with --num-machines {args.num_machines}."
            )
        if args.num_machines > 1 and args.dist_url == "auto":
            raise LaunchError(
                "Several machines need a shared rendezvous: pass --dist-url tcp://<machine 0 address>:<port> "
                "(the same on every machine) and --machine-rank on each."
            )
        return cls(
            procs_per_machine=args.num_gpus or args.num_processes,
            num_machines=args.num_machines,
            machine_rank=args.machine_rank,
            dist_url=args.dist_url,
            backend=resolve_backend(args.dist_backend, use_gpus),
            use_gpus=use_gpus,
        )


def torchrun_env() -> Optional[Dict[str, int]]:
    """Ranks exported by torchrun (or torch.distributed.launch) to this process, else None."""
    if not all(name in os.environ for name in _TORCHRUN_VARS):
        return None
    world_size = int(os.environ["WORLD_SIZE"])
    return {
        "rank": int(os.environ["RANK"]),
        "world_size": world_size,
        "local_rank": int(os.environ.get("LOCAL_RANK", 0)),
        "local_world_size": int(os.environ.get("LOCAL_WORLD_SIZE", world_size)),
    }


def run_in_process_group(
    main: Callable[[argparse.Namespace], Any],
    args: argparse.Namespace,
    *,
    backend: str,
    init_method: str,
    world_size: int,
    rank: int,
    local_rank: int,
    local_world_size: int,
) -> Any:
    """Join the process group, run ``main(args)``, leave the group (also on errors)."""
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world_size),
        LOCAL_RANK=str(local_rank),
        LOCAL_WORLD_SIZE=str(local_world_size),
    )
    if backend == "nccl":
        torch.cuda.set_device(local_rank)
    dist.init_process_group(backend=backend, init_method=init_method, world_size=world_size, rank=rank)
    try:
        comm.synchronize()  # every rank is in before anyone builds anything
        return main(args)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


def launch_torchrun(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace, env: Dict[str, int], backend: str = "auto") -> Any:
    """Run as one worker of a torchrun job: the world comes from its environment."""
    if args.num_gpus > 1 or args.num_processes > 1:
        logger.warning(
            "Under torchrun the world size comes from torchrun (%d); --num-gpus/--num-processes are ignored.",
            env["world_size"],
        )
    if env["world_size"] == 1:
        return main(args)
    use_gpus = torch.cuda.is_available()
    return run_in_process_group(
        main, args,
        backend=resolve_backend(backend, use_gpus),
        init_method="env://",
        world_size=env["world_size"],
        rank=env["rank"],
        local_rank=env["local_rank"],
        local_world_size=env["local_world_size"],
    )


def _ddp_worker(local_rank: int, main, args, config: DDPConfig, url: str, run_dir: str) -> None:
    rank = config.machine_rank * config.procs_per_machine + local_rank

    def recording_main(main_args):
        # Record the failure before leaving the process group: leaving breaks the peers'
        # collectives, and their echo of this failure must not be stamped earlier than it.
        try:
            return main(main_args)
        except SystemExit as exc:
            if exc.code not in (None, 0):
                _record_failure(run_dir, rank, f"SystemExit: {exc.code}\n")
            raise
        except BaseException:
            _record_failure(run_dir, rank, traceback.format_exc())
            raise

    try:
        result = run_in_process_group(
            recording_main, args,
            backend=config.backend,
            init_method=url,
            world_size=config.world_size,
            rank=rank,
            local_rank=local_rank,
            local_world_size=config.procs_per_machine,
        )
    except SystemExit as exc:
        if exc.code in (None, 0):
            return
        _record_failure(run_dir, rank, f"SystemExit: {exc.code}\n")
        raise RuntimeError(f"rank {rank} exited: {exc.code}") from exc
    except BaseException:
        _record_failure(run_dir, rank, traceback.format_exc())
        raise
    if rank == 0:
        try:
            with open(os.path.join(run_dir, "result.pkl"), "wb") as f:
                pickle.dump(result, f)
        except Exception as exc:  # noqa: BLE001 - an unpicklable result must not fail the run
            logger.warning("main()'s return value could not be passed back (%s); returning None.", exc)


def _record_failure(run_dir: str, rank: int, trace: str) -> None:
    """When and how a rank failed: the earliest failure is the cause, later ones its echo.

    Only a rank's first record counts (``main``'s own exception, not the teardown's)."""
    path = os.path.join(run_dir, f"failure.rank{rank}")
    if os.path.exists(path):
        return
    with open(path + ".tmp", "w") as f:
        json.dump({"rank": rank, "time": time.time(), "traceback": trace}, f)
    os.replace(path + ".tmp", path)  # a rank killed mid-write leaves no half file


def _failure_report(run_dir: str) -> Optional[str]:
    failures = []
    for name in os.listdir(run_dir):
        if name.startswith("failure.rank") and not name.endswith(".tmp"):
            with open(os.path.join(run_dir, name)) as f:
                failures.append(json.load(f))
    if not failures:
        return None
    failures.sort(key=lambda f: f["time"])
    first = failures[0]
    report = f"DDP process of rank {first['rank']} failed:\n{first['traceback'].rstrip()}"
    others = [str(f["rank"]) for f in failures[1:]]
    if others:
        report += f"\n(rank(s) {', '.join(others)} failed after it, in consequence)"
    return report


def launch_ddp(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace, config: DDPConfig) -> Any:
    """Spawn ``config.procs_per_machine`` processes on this machine, each running ``main(args)``.

    Returns rank 0's return value (None on machines other than 0).
    Raises:
        LaunchError: a process failed; the message holds its rank and traceback.
    """
    url = config.dist_url
    if url == "auto":
        url = f"tcp://127.0.0.1:{find_free_port()}"
    logger.info(
        "DDP: %d process(es) x %d machine(s) = world size %d (%s, %s)",
        config.procs_per_machine, config.num_machines, config.world_size, config.backend, url,
    )
    with tempfile.TemporaryDirectory(prefix="flexcore-ddp-") as run_dir:
        try:
            mp.start_processes(
                _ddp_worker,
                args=(main, args, config, url, run_dir),
                nprocs=config.procs_per_machine,
                join=True,
                start_method="spawn",
            )
        except ProcessException as exc:
            # The first failure torch notices may be a peer's broken collective: report the earliest.
            report = _failure_report(run_dir)
            if report is None:
                rank = config.machine_rank * config.procs_per_machine + exc.error_index
                report = (
                    f"DDP process of rank {rank} died ({exc}); the other processes were stopped. "
                    "A signal such as SIGKILL usually means the machine ran out of memory."
                )
            raise LaunchError(report) from None
        result_file = os.path.join(run_dir, "result.pkl")
        if not os.path.exists(result_file):
            return None
        with open(result_file, "rb") as f:
            return pickle.load(f)


def launch_local(main: Callable[[argparse.Namespace], Any], args: argparse.Namespace) -> Any:
    """Run on this machine: in-process, as DDP processes, or as one torchrun worker."""
    env = torchrun_env()
    if env is not None:
        return launch_torchrun(main, args, env, backend=args.dist_backend)
    config = DDPConfig.from_args(args)
    if config.world_size == 1:
        return main(args)
    _refuse_busy_output_dir(args)
    return launch_ddp(main, args, config)


def _refuse_busy_output_dir(args: argparse.Namespace) -> None:
    """Say here, before spawning processes, that another run holds the output dir (rank 0 would
    refuse it anyway, with the message inside a child's traceback)."""
    if (getattr(args, "machine_rank", 0) != 0 or getattr(args, "print_config", False)
            or getattr(args, "list", None) is not None):
        return
    output_dir = run_output_dir(args)
    holder = lock_holder(output_dir)
    if holder:
        raise RunDirLockedError(locked_message(output_dir, holder))

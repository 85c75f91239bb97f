"""Launchers: run the main job here, as DDP processes, under torchrun, or on SLURM.

    tools/train_net.py --num-processes 2                       # DDP on CPU (gloo)
    tools/train_net.py --num-gpus 8                            # DDP on GPUs (nccl)
    torchrun --nproc-per-node 4 tools/train_net.py ...         # torchrun spawns, we join
    tools/train_net.py --launcher slurm --nodes 2 --gpus-per-node 8 --partition gpu
    tools/train_net.py --sweep "MAGNet.hidden_channels=16,32" --sweep "seed=0,1,2"

``launch(main, args)`` wraps the one flow unchanged: ``main(args)`` runs in every process
with a process group already set up where there are several. See docs/launching.md.
"""
from __future__ import annotations

import argparse
import logging
import os
from typing import Any, Callable

from flexcore.engine.distributed import LaunchError, launch_local
from flexcore.engine.slurm import launch_slurm
from flexcore.engine.sweep import launch_sweep
from flexcore.utils.logger import setup_logger

__all__ = ["LaunchError", "add_launch_arguments", "launch", "launch_local"]

MainFn = Callable[[argparse.Namespace], Any]


def _sbatch_option(text: str) -> str:
    if not text.strip() or text.startswith("="):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE (or a bare flag KEY), got {text!r}")
    return text


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags choosing where, on how many processes and over which grid the job runs."""
    group = parser.add_argument_group("launch (local, DDP, torchrun)")
    group.add_argument(
        "--launcher", choices=["local", "ddp", "slurm"], default="local",
        help="local: this machine (DDP when --num-gpus/--num-processes > 1); "
        "ddp: the same, spelled out; slurm: submit through submitit",
    )
    group.add_argument("--num-gpus", type=int, default=0, metavar="N", help="processes per machine, one per GPU (nccl)")
    group.add_argument("--num-processes", type=int, default=1, metavar="N", help="CPU processes per machine (gloo)")
    group.add_argument("--num-machines", type=int, default=1, metavar="M", help="machines taking part in DDP")
    group.add_argument("--machine-rank", type=int, default=0, metavar="R", help="this machine's rank (0 .. M-1)")
    group.add_argument(
        "--dist-url", default="auto", metavar="URL",
        help="rendezvous, e.g. tcp://host0:29500; 'auto' picks a free local port (one machine only)",
    )
    group.add_argument(
        "--dist-backend", choices=["auto", "gloo", "nccl"], default="auto",
        help="auto: nccl for GPU processes, gloo for CPU processes",
    )

    slurm = parser.add_argument_group("SLURM (--launcher slurm, through submitit)")
    slurm.add_argument("--partition", default=None, help="SLURM partition")
    slurm.add_argument("--nodes", type=int, default=None, help="nodes per job (default: --num-machines)")
    slurm.add_argument(
        "--tasks-per-node", type=int, default=None, metavar="N",
        help="processes per node (default: --gpus-per-node, else --num-processes)",
    )
    slurm.add_argument("--gpus-per-node", type=int, default=0, metavar="N", help="GPUs per node")
    slurm.add_argument("--cpus-per-task", type=int, default=None, metavar="N", help="CPUs per process")
    slurm.add_argument("--mem-gb", type=float, default=None, metavar="GB", help="memory per node")
    slurm.add_argument("--time", dest="timeout_min", type=int, default=60, metavar="MIN", help="time limit in minutes")
    slurm.add_argument("--account", default=None)
    slurm.add_argument("--qos", default=None)
    slurm.add_argument("--constraint", default=None, help="node features, e.g. 'volta32gb'")
    slurm.add_argument("--comment", default=None)
    slurm.add_argument("--job-name", default=None, help="default: flexcore-<output dir name>")
    slurm.add_argument(
        "--slurm-additional", action="append", default=[], type=_sbatch_option, metavar="KEY=VALUE",
        help="any other sbatch option, e.g. mail-type=END or a bare flag like exclusive (repeatable)",
    )
    slurm.add_argument(
        "--slurm-setup", action="append", default=[], metavar="CMD",
        help="shell line run in the batch script before the job, e.g. 'module load cuda' (repeatable)",
    )
    slurm.add_argument(
        "--max-requeue", type=int, default=3, metavar="N",
        help="requeues allowed after time-outs (preemptions always requeue)",
    )
    slurm.add_argument("--wait", action="store_true", help="block until the job ends, streaming its log")

    sweep = parser.add_argument_group("sweeps")
    sweep.add_argument(
        "--sweep", action="append", default=[], metavar="BINDING=V1,V2",
        help="gin binding and the values to try (repeatable; the runs are the cartesian grid)",
    )
    sweep.add_argument(
        "--array-parallelism", type=int, default=64, metavar="N",
        help="at most N runs of a SLURM sweep at once",
    )


def launch(main: MainFn, args: argparse.Namespace) -> Any:
    """Run ``main(args)`` where ``args`` says: here, as DDP processes, or on SLURM.

    Returns what ``main`` returned on rank 0 (for SLURM: the submitted job(s), or the
    result when ``--wait`` is given).
    Raises:
        LaunchError: bad launch flags, a failed child process or job (with its traceback).
    """
    if not logging.getLogger("flexcore").handlers:  # launcher messages before default_setup runs
        setup_logger(rank=int(os.environ.get("RANK", 0)))
    if args.sweep:
        return launch_sweep(main, args)
    if args.launcher == "slurm":
        return launch_slurm(main, args)
    return launch_local(main, args)

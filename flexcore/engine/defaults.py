"""Command-line arguments, experiment setup and the main job (detectron2's ``defaults``).

    tools/train_net.py --config-file cifar10/flexnet7.gin --gin "Trainer.max_iter=100"
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any, List, Optional

import gin
from tabulate import tabulate

from flexcore.checkpoint import CheckpointError
from flexcore.config import ConfigError, list_config_files, parse_config, write_config_files
from flexcore.data.base import DatasetError
from flexcore.engine.cross_resolution import CrossResolution
from flexcore.engine.train_loop import NonFiniteLossError
from flexcore.engine.trainer import Trainer, experiment
from flexcore.utils.logger import setup_logger

__all__ = [
    "DEFAULT_CONFIG",
    "CrossResolution",
    "OutputDirError",
    "Trainer",
    "experiment",
    "check_output_dir",
    "default_argument_parser",
    "default_setup",
    "main",
    "print_config_list",
]

# What `python tools/train_net.py` with no arguments runs: the quick start.
DEFAULT_CONFIG = "quick/digits_flexnet.gin"

logger = logging.getLogger("flexcore")


def default_argument_parser(epilog: Optional[str] = None) -> argparse.ArgumentParser:
    """The flags every flexcore entry script shares."""
    parser = argparse.ArgumentParser(
        description="Train or evaluate one flexcore experiment composed from gin files.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--config-file", "--gin-file", dest="config_files", action="append", default=[], metavar="FILE",
        help=f"gin file (repeatable; path or name under gin_configs/). Default: {DEFAULT_CONFIG}",
    )
    parser.add_argument(
        "--gin", dest="bindings", action="append", default=[], metavar="BINDING",
        help="gin binding, e.g. \"Trainer.max_iter = 100\" (repeatable; applied after the files)",
    )
    parser.add_argument(
        "--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
        help="module or .py file registering extra components (repeatable)",
    )
    parser.add_argument("--output-dir", default=None, help="run directory (default: output/<config name>)")
    parser.add_argument(
        "--list", nargs="?", const="*", default=None, metavar="PATTERN",
        help="list shipped gin configs (optionally matching a wildcard) and exit",
    )
    parser.add_argument("--print-config", action="store_true", help="compose and print the config, then exit")
    parser.add_argument("--resume", action="store_true", help="continue from the output dir's last checkpoint")
    parser.add_argument("--eval-only", action="store_true", help="only evaluate (--weights or the last checkpoint)")
    parser.add_argument("--weights", default=None, help="checkpoint to evaluate or to initialise from")
    parser.add_argument(
        "--unsafe-load", action="store_true",
        help="load checkpoints with full pickle (torch.load weights_only=False): only for files you trust",
    )
    parser.add_argument("--fake-data", action="store_true", help="random data of the dataset's shape (no files)")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N",
        help="profile N training steps (after 2 warm-up steps) with torch.profiler, write "
        "<output>/profile/{trace.json,top_ops.txt} and stop",
    )
    parser.add_argument("--seed", type=int, default=None, help="override the config's seed")
    from flexcore.engine.launch import add_launch_arguments

    add_launch_arguments(parser)
    return parser


def print_config_list(pattern: str = "*") -> None:
    rows = [(name,) for name in list_config_files(pattern)]
    print(tabulate(rows, headers=["gin config"], tablefmt="github") if rows else f"No gin config matches {pattern!r}.")


def default_output_dir(config_files: List[str]) -> str:
    name = os.path.splitext(config_files[-1])[0] if config_files else "experiment"
    name = name.replace(os.sep, "_").lstrip("._") if not os.path.isabs(name) else os.path.basename(name)
    return os.path.join("output", name)


class OutputDirError(RuntimeError):
    """The output dir already holds a run that this command would overwrite."""


# Files that show a directory holds (part of) a training run's results.
_RUN_MARKERS = ("last_checkpoint", "metrics.json", "model_final.pth", "summary.json")


def check_output_dir(output_dir: str, resume: bool = False, eval_only: bool = False) -> None:
    """Refuse to start a fresh run in a directory that holds another run's results.

    Looks in the directory and its direct subfolders (the stages of a cross-resolution run).

    Raises:
        OutputDirError: naming what was found and the two ways out (``--resume``, a new dir).
    """
    if resume or eval_only or not os.path.isdir(output_dir):
        return
    folders = [""] + sorted(d for d in os.listdir(output_dir) if os.path.isdir(os.path.join(output_dir, d)))
    found = [os.path.join(folder, name) for folder in folders for name in _RUN_MARKERS
             if os.path.exists(os.path.join(output_dir, folder, name))]
    if found:
        raise OutputDirError(
            f"Output dir {output_dir} already holds a run ({', '.join(found)}). To continue that run, add "
            f"--resume; to start a new one, pass another --output-dir (or move the old one away). "
            "Nothing was changed."
        )


def default_setup(args: argparse.Namespace, rank: int = 0) -> str:
    """Load plugins, parse gin, check and make the output dir, write config.gin, set up logging.

    Returns the output directory.
    """
    if not args.config_files:
        args.config_files = [DEFAULT_CONFIG]
    bindings = list(args.bindings)
    if getattr(args, "seed", None) is not None:
        bindings.append(f"seed = {args.seed}")
    parse_config(args.config_files, bindings, plugins=args.plugins, finalize=False)
    output_dir = args.output_dir or default_output_dir(args.config_files)
    eval_only = getattr(args, "eval_only", False)
    check_output_dir(output_dir, resume=getattr(args, "resume", False), eval_only=eval_only)
    setup_logger(output_dir, rank=rank)
    if rank == 0:
        # --eval-only reuses a training dir: keep the config that trained it. --resume writes
        # it in main(), once the checkpoint it finds is known to fit.
        resume = getattr(args, "resume", False)
        if not resume and not (eval_only and os.path.exists(os.path.join(output_dir, "config.gin"))):
            write_config_files(output_dir, operative=False)
    logger.info("flexcore run in %s; configs: %s; bindings: %s", output_dir, args.config_files, bindings)
    return output_dir


def build_trainer(args: argparse.Namespace, output_dir: str) -> Any:
    """The gin-configured job (:func:`experiment`), with what the command line overrides."""
    overrides = {}
    if getattr(args, "fake_data", False):
        overrides["fake_data"] = True
    if getattr(args, "profile", 0):
        overrides["profile_steps"] = args.profile
    if getattr(args, "unsafe_load", False):
        overrides["weights_only"] = False
    if getattr(args, "seed", None) is not None:
        overrides["seed"] = args.seed
    return experiment()(output_dir, **overrides)


def main(args: argparse.Namespace):
    """The main job: train (or evaluate) the experiment the gin files describe.

    Runs in every process of a DDP/SLURM job: the launcher has set up the process group;
    everything here is rebuilt from ``args`` (plain data), and only rank 0 writes files.
    """
    from flexcore.utils import comm

    if args.list is not None:
        print_config_list(args.list)
        return None
    if args.print_config:
        parse_config(args.config_files or [DEFAULT_CONFIG], args.bindings, plugins=args.plugins, finalize=False)
        print(gin.config_str())
        return None
    output_dir = default_setup(args, rank=comm.get_rank())
    trainer = build_trainer(args, output_dir)
    if args.eval_only:
        return trainer.evaluate_only(args.weights)
    trainer.resume_or_load(resume=args.resume, weights=args.weights)  # a refused resume has written nothing
    if comm.is_main_process():
        write_config_files(output_dir, operative=True)  # what building the experiment used
    results = trainer.train()
    if comm.is_main_process() and not args.profile:
        write_config_files(output_dir, operative=True)  # now with everything training touched
    return results


# Errors whose message says all a user needs: printed without a traceback.
USER_ERRORS = (CheckpointError, NonFiniteLossError, OutputDirError, DatasetError)


def cli_entry(argv: Optional[List[str]] = None) -> int:
    """``flexcore-train`` / ``tools/train_net.py``: parse flags and launch :func:`main`."""
    from flexcore.engine.launch import LaunchError, launch
    from flexcore.registry import PluginError

    args = default_argument_parser().parse_args(argv)
    try:
        launch(main, args)
    except ConfigError as exc:
        print(f"Config error: {exc}", file=sys.stderr)
        return 2
    except PluginError as exc:  # the message already holds the plugin's own traceback
        print(f"Plugin error: {exc}", file=sys.stderr)
        return 2
    except USER_ERRORS as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except LaunchError as exc:
        print(f"Launch error: {exc}", file=sys.stderr)
        return 1
    return 0

"""Command-line arguments, experiment setup and the main job (detectron2's ``defaults``).

    tools/train_net.py --config-file cifar10/flexnet7.gin --gin "Trainer.max_iter=100"
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import List, Optional

import gin
from tabulate import tabulate

from flexcore.config import ConfigError, list_config_files, parse_config, write_config_files
from flexcore.utils.logger import setup_logger

__all__ = ["DEFAULT_CONFIG", "default_argument_parser", "default_setup", "main", "print_config_list"]

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
    parser.add_argument("--fake-data", action="store_true", help="random data of the dataset's shape (no files)")
    parser.add_argument("--profile", type=int, default=0, metavar="N", help="profile N training steps")
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


def default_setup(args: argparse.Namespace, rank: int = 0) -> str:
    """Load plugins, parse gin, make the output dir, write config.gin, set up logging.

    Returns the output directory.
    """
    if not args.config_files:
        args.config_files = [DEFAULT_CONFIG]
    bindings = list(args.bindings)
    if args.seed is not None:
        bindings.append(f"seed = {args.seed}")
    parse_config(args.config_files, bindings, plugins=args.plugins, finalize=False)
    output_dir = args.output_dir or default_output_dir(args.config_files)
    setup_logger(output_dir, rank=rank)
    if rank == 0:
        write_config_files(output_dir, operative=False)
    logger.info("flexcore run in %s; configs: %s; bindings: %s", output_dir, args.config_files, bindings)
    return output_dir


def main(args: argparse.Namespace):
    """The main job: train (or evaluate) the experiment the gin files describe."""
    if args.list is not None:
        print_config_list(args.list)
        return None
    if args.print_config:
        parse_config(args.config_files or [DEFAULT_CONFIG], args.bindings, plugins=args.plugins, finalize=False)
        print(gin.config_str())
        return None
    default_setup(args)
    raise SystemExit(
        "Training is not available yet: the trainer lands with the engine issue (#5). "
        "Use --print-config to check a composed config in the meantime."
    )


def cli_entry(argv: Optional[List[str]] = None) -> int:
    """``flexcore-train`` / ``tools/train_net.py``: parse flags and launch :func:`main`."""
    from flexcore.engine.launch import LaunchError, launch

    args = default_argument_parser().parse_args(argv)
    try:
        launch(main, args)
    except ConfigError as exc:
        print(f"Config error: {exc}", file=sys.stderr)
        return 2
    except LaunchError as exc:
        print(f"Launch error: {exc}", file=sys.stderr)
        return 1
    return 0

"""Command-line arguments, experiment setup and the main job (detectron2's ``defaults``).

    tools/train_net.py --config-file cifar10/flexnet7.gin --gin "Schedule.max_iter=100"
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
from typing import Any, List, Optional, Sequence

import gin
from tabulate import tabulate

from flexcore.checkpoint import CheckpointError
from flexcore.config import ConfigError, explain_build_error, list_config_files, parse_config, write_config_files
from flexcore.data.base import DatasetError
from flexcore.engine.cross_resolution import CrossResolution
from flexcore.engine.launch import add_launch_arguments
from flexcore.engine.output_dir import DEFAULT_CONFIG, OutputDirError, check_output_dir, run_output_dir
from flexcore.engine.run_dir import (RunDirError, RunDirLock, RunDirLockedError, lock_holder, locked_message,
                                     system_error_message)
from flexcore.engine.train_loop import NonFiniteLossError
from flexcore.engine.trainer import Trainer, experiment
from flexcore.engine.trainer_config import check_bindings
from flexcore.utils import comm
from flexcore.utils.cli_args import add_config_arguments
from flexcore.utils.logger import setup_logger

__all__ = [
    "DEFAULT_CONFIG",
    "CrossResolution",
    "OutputDirError",
    "RunDirError",
    "Trainer",
    "experiment",
    "check_output_dir",
    "default_argument_parser",
    "default_setup",
    "main",
    "run_output_dir",
    "open_run_files",
    "prepare_run",
    "print_config_list",
]

logger = logging.getLogger("flexcore")


TRAIN_EXAMPLES = """\
examples (each runs as written, from any folder):
  %(prog)s                                             # quick start: FlexNet on the bundled digits
  %(prog)s --list '*cifar*'                            # shipped configs matching a wildcard
  %(prog)s --config-file cifar10/flexnet7.gin --print-config
  %(prog)s --config-file quick/digits_flexnet.gin --gin "Schedule.max_iter = 50" --output-dir output/try
  %(prog)s --config-file quick/digits_flexnet.gin --output-dir output/try --resume
  %(prog)s --config-file quick/digits_flexnet.gin --output-dir output/try --eval-only
  %(prog)s --config-file quick/digits_flexnet.gin --num-processes 2 --output-dir output/ddp
  %(prog)s --config-file quick/digits_flexnet.gin --sweep "seed=0,1,2" --output-dir output/seeds

Runs write to --output-dir (default output/<config name>); docs/training.md, docs/launching.md.
"""


def default_argument_parser(epilog: Optional[str] = TRAIN_EXAMPLES) -> argparse.ArgumentParser:
    """The training command's flags: the shared config flags, the run's, then the launchers'."""
    parser = argparse.ArgumentParser(
        description="Train or evaluate one flexcore experiment composed from gin files.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_config_arguments(parser, default_config=DEFAULT_CONFIG, what="run's checkpoints, metrics and logs")
    run = parser.add_argument_group("run")
    run.add_argument(
        "--list", nargs="?", const="*", default=None, metavar="PATTERN",
        help="list shipped gin configs (optionally matching a wildcard) and exit",
    )
    run.add_argument("--print-config", action="store_true", help="compose and print the config, then exit")
    run.add_argument("--resume", action="store_true", help="continue from the output dir's last checkpoint")
    run.add_argument("--eval-only", action="store_true", help="only evaluate (--weights or the last checkpoint)")
    run.add_argument("--weights", default=None, help="checkpoint to evaluate or to initialise from")
    run.add_argument(
        "--unsafe-load", action="store_true",
        help="load checkpoints with full pickle (torch.load weights_only=False): only for files you trust",
    )
    run.add_argument("--fake-data", action="store_true", help="random data of the dataset's shape (no files)")
    run.add_argument(
        "--profile", type=int, default=0, metavar="N",
        help="profile N training steps (after 2 warm-up steps) with torch.profiler, write "
        "<output>/profile/{trace.json,top_ops.txt} and stop",
    )
    run.add_argument("--seed", type=int, default=None, help="override the config's seed")
    add_launch_arguments(parser)
    return parser


def print_config_list(pattern: str = "*") -> None:
    rows = [(name,) for name in list_config_files(pattern)]
    print(tabulate(rows, headers=["gin config"], tablefmt="github") if rows else f"No gin config matches {pattern!r}.")


def prepare_run(args: argparse.Namespace, rank: int = 0) -> str:
    """Load plugins, parse gin, check the output dir (not a file, no other run in it or running
    on it). Writes nothing. Returns the output directory."""
    if not args.config_files:
        args.config_files = [DEFAULT_CONFIG]
    parse_config(args.config_files, _bindings(args), plugins=args.plugins, finalize=False)
    check_bindings()
    output_dir = run_output_dir(args)
    holder = lock_holder(output_dir) if rank == 0 else None
    if holder:  # before the check below: "running now" says more than "holds a run"
        raise RunDirLockedError(locked_message(output_dir, holder))
    check_output_dir(output_dir, resume=getattr(args, "resume", False), eval_only=getattr(args, "eval_only", False))
    return output_dir


def _bindings(args: argparse.Namespace) -> List[str]:
    return list(args.bindings) + ([f"seed = {args.seed}"] if getattr(args, "seed", None) is not None else [])


def open_run_files(args: argparse.Namespace, output_dir: str, rank: int = 0,
                   early_records: Sequence[logging.LogRecord] = ()) -> None:
    """Log to the output dir's ``log.txt`` (with the records logged before it existed), write config.gin."""
    setup_logger(output_dir, rank=rank)
    files = [h for h in logging.getLogger("flexcore").handlers if isinstance(h, logging.FileHandler)]
    for handler in files:
        # A full or read-only disk: the console still shows every line, and the run's own
        # error says what happened (logging's default prints a traceback for each line).
        handler.handleError = lambda record: None
        for record in early_records:
            handler.handle(record)
    # --eval-only reuses a training dir: keep the config that trained it. --resume writes it
    # in _run(), once the checkpoint it finds is known to fit (a refused resume changes nothing).
    eval_only = getattr(args, "eval_only", False)
    reused = getattr(args, "resume", False) or (eval_only and os.path.exists(os.path.join(output_dir, "config.gin")))
    if rank == 0 and not reused:
        write_config_files(output_dir, operative=False)
    logger.info("flexcore run in %s; configs: %s; bindings: %s", output_dir, args.config_files, _bindings(args))


def default_setup(args: argparse.Namespace, rank: int = 0) -> str:
    """Load plugins, parse gin, check and make the output dir, write config.gin, set up logging.

    Returns the output directory. (:func:`main` splits this in two around building the
    experiment, so that a bad value fails before any file is written.)
    """
    output_dir = prepare_run(args, rank)
    open_run_files(args, output_dir, rank)
    return output_dir


class _EarlyRecords(logging.Handler):
    """Keeps what is logged before ``log.txt`` may be opened, to copy it there afterwards."""

    def __init__(self) -> None:
        super().__init__()
        self.records: List[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def _build(args: argparse.Namespace, output_dir: str) -> Any:
    """:func:`build_trainer`, with a value a configurable rejects reported as a ConfigError naming
    the binding's file and line (``FLEXCORE_TRACEBACK=1`` keeps the traceback instead)."""
    existed = os.path.isdir(output_dir)
    try:
        return build_trainer(args, output_dir)
    except BaseException as exc:
        if not existed and os.path.isdir(output_dir) and not os.listdir(output_dir):
            os.rmdir(output_dir)  # the trainer made it; leave no trace of a run that never started
        config_error = _as_config_error(exc)
        if config_error is None:
            raise
        raise config_error from None


def _as_config_error(exc: BaseException) -> Optional[ConfigError]:
    """A ConfigError for a bad value or missing binding a gin configurable raised, else None."""
    if isinstance(exc, USER_ERRORS) or not isinstance(exc, (ValueError, TypeError, RuntimeError)):
        return None
    message = None if os.environ.get("FLEXCORE_TRACEBACK") else explain_build_error(exc)
    if message is None or (isinstance(exc, RuntimeError) and "Required bindings" not in message):
        return None
    return ConfigError(message)


@contextlib.contextmanager
def _locked(output_dir: str, args: argparse.Namespace):
    """Hold the output dir's lock (the main process takes it; every rank learns if it failed).

    Under the lock the main process checks the dir again: a run that started or ended since
    :func:`prepare_run` is seen now (the other ranks must not look: rank 0 may be writing).
    """
    lock, failure = RunDirLock(output_dir), None
    if comm.is_main_process():
        try:
            lock.acquire()
            check_output_dir(output_dir, resume=args.resume, eval_only=args.eval_only)
        except Exception as exc:  # noqa: BLE001 - passed on to every rank below
            lock.release()
            failure = exc
    if comm.get_world_size() > 1:
        reason = comm.all_gather(None if failure is None else str(failure))[0]
        if reason and failure is None:
            raise RunDirError(f"The main process refused {output_dir}: {reason}")
    if failure is not None:
        raise failure
    try:
        yield lock
    finally:
        lock.release()


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
    The experiment is built (every value checked) before anything is written, and the
    output dir is locked for the run's whole length.
    """
    if args.list is not None:
        print_config_list(args.list)
        return None
    if args.print_config:
        parse_config(args.config_files or [DEFAULT_CONFIG], args.bindings, plugins=args.plugins, finalize=False)
        check_bindings()
        print(gin.config_str())
        return None
    rank = comm.get_rank()
    output_dir = prepare_run(args, rank=rank)
    setup_logger(rank=rank)  # the console only, until the lock is held
    early = _EarlyRecords()
    logging.getLogger("flexcore").addHandler(early)
    try:
        trainer = _build(args, output_dir)
        with _locked(output_dir, args):
            open_run_files(args, output_dir, rank, early.records)
            return _run(args, trainer, output_dir)
    except Exception as exc:
        if isinstance(exc, ConfigError):
            raise
        config_error = _as_config_error(exc)  # e.g. a stage a job builds while it runs
        if config_error is not None:
            raise config_error from None
        message = None if isinstance(exc, USER_ERRORS) else system_error_message(exc, output_dir)
        if message is None:
            raise
        raise RunDirError(message) from exc
    finally:
        logging.getLogger("flexcore").removeHandler(early)


def _run(args: argparse.Namespace, trainer: Any, output_dir: str):
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
USER_ERRORS = (CheckpointError, NonFiniteLossError, OutputDirError, DatasetError, RunDirError)

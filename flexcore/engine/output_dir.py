"""Where a training run writes, and the check that it overwrites no other run.

The launchers (local, DDP, SLURM, sweeps) and the main job all ask the same two questions
before anything starts: which folder (``--output-dir`` or ``output/<config name>``), and does
it already hold a run. Both answers live here, below every launcher.
"""
from __future__ import annotations

import argparse
import os

from flexcore.utils.cli_args import resolve_output_dir

__all__ = ["DEFAULT_CONFIG", "OutputDirError", "check_output_dir", "run_output_dir"]

# What `python tools/train_net.py` with no arguments runs: the quick start.
DEFAULT_CONFIG = "quick/digits_flexnet.gin"

# Files that show a directory holds (part of) a training run's results.
_RUN_MARKERS = ("last_checkpoint", "metrics.json", "model_final.pth", "summary.json")


class OutputDirError(RuntimeError):
    """The output dir already holds a run that this command would overwrite."""


def run_output_dir(args: argparse.Namespace) -> str:
    """``--output-dir``, else ``output/<name of the last config file>`` (the quick start's without any)."""
    return resolve_output_dir(args, default_config=DEFAULT_CONFIG)


def check_output_dir(output_dir: str, resume: bool = False, eval_only: bool = False) -> None:
    """Refuse a path that is a file, or a fresh run in a directory that holds another run's results.

    Looks in the directory and its direct subfolders (the stages of a cross-resolution run).

    Raises:
        OutputDirError: naming what was found and the two ways out (``--resume``, a new dir).
    """
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise OutputDirError(f"--output-dir {output_dir} is an existing file, not a folder. Nothing was written; "
                             "pass the path of a new folder (or of a run's folder, with --resume).")
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

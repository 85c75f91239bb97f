"""Run-directory rules the trainer applies when it resumes: what may continue, what is left over.

- :func:`check_resume` refuses a ``--resume`` that would not continue the run it finds
  (a finished run given another length, a checkpoint past the new end), before anything
  in the directory is written.
- :func:`remove_stale_temp_files` deletes the temporary files that a process killed in the
  middle of an atomic write leaves behind (``.<name>.<random>.tmp``, see
  :func:`flexcore.utils.file_io.atomic_open`).
"""
from __future__ import annotations

import fnmatch
import json
import logging
import os
import re
from typing import Any, Dict, List, Optional

from flexcore.checkpoint import CheckpointError
from flexcore.utils.file_io import path_manager

__all__ = ["ResumeError", "ResultsIncompleteError", "check_resume", "finished_summary", "raise_recorded_errors",
           "remove_stale_temp_files"]

logger = logging.getLogger("flexcore")

# Files a training run writes atomically; only their temporary files are removed.
_ATOMIC_FILES = ("*.pth", "last_checkpoint", "metrics.json", "summary.json", "eval_results.json")
_TEMP_FILE = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")  # tempfile.mkstemp's 8 random characters


class ResumeError(CheckpointError):
    """``--resume`` found a run it must not continue as asked; nothing in the run dir was changed."""


class ResultsIncompleteError(CheckpointError):
    """Training finished and its results are saved, but some could not be produced (they are listed)."""


def check_resume(checkpoint: str, iteration: int, saved_max_iter: Optional[int], max_iter: int) -> None:
    """Raise :class:`ResumeError` unless resuming ``checkpoint`` continues its run in a run of ``max_iter``.

    Args:
        checkpoint: the checkpoint ``last_checkpoint`` names.
        iteration: the last iteration it completed.
        saved_max_iter: the run length it was saved with (None: saved by an older flexcore).
        max_iter: the run length the current config gives.
    """
    finished = os.path.basename(checkpoint).endswith("_final.pth") or (
        saved_max_iter is not None and iteration + 1 >= saved_max_iter)
    length = saved_max_iter if saved_max_iter is not None else iteration + 1 if finished else None
    folder = os.path.dirname(checkpoint)
    if finished and length != max_iter:
        raise ResumeError(
            f"{folder} holds a finished run of {length} iterations ({checkpoint}); resuming it as a run of "
            f"{max_iter} iterations would {'train on past its end' if max_iter > length else 'cut it short'} and "
            f"overwrite its model_final.pth and summary.json. To train longer, start a new run from its weights "
            f"(a fresh optimizer and schedule): --output-dir NEW_DIR --weights {checkpoint}. To look at this run, "
            f"resume it with its own length (see {os.path.join(folder, 'config.gin')}) or use --eval-only. "
            "Nothing was changed."
        )
    if not finished and iteration + 1 >= max_iter:
        raise ResumeError(
            f"{checkpoint} has done {iteration + 1} iterations, as many as or more than the {max_iter} the run is "
            f"now configured for, so it would end without training; resume "
            f"with the length the run was started with (see {os.path.join(folder, 'config.gin')}), or start a new "
            f"run from it: --output-dir NEW_DIR --weights {checkpoint}. Nothing was changed."
        )
    if length is not None and length != max_iter:
        logger.warning("The run in %s was started with %d iterations and resumes with %d: the learning-rate "
                       "schedule follows the new length from iteration %d on.", folder, length, max_iter, iteration + 1)


def remove_stale_temp_files(folder: str) -> List[str]:
    """Delete the temporary files of interrupted atomic writes of run files in ``folder``; returns their names.

    Call it only while no other process writes to ``folder`` (the trainer does at its start).
    """
    if not os.path.isdir(folder):
        return []
    stale = []
    for name in sorted(os.listdir(folder)):
        match = _TEMP_FILE.fullmatch(name)
        if match and any(fnmatch.fnmatch(match.group("name"), pattern) for pattern in _ATOMIC_FILES):
            try:
                os.remove(os.path.join(folder, name))
            except FileNotFoundError:
                continue
            stale.append(name)
    if stale:
        logger.info("Removed %d stale temporary file%s of writes an earlier session did not finish: %s",
                    len(stale), "" if len(stale) == 1 else "s", ", ".join(stale))
    return stale


def finished_summary(output_dir: str) -> Optional[Dict[str, Any]]:
    """The ``summary.json`` of a finished run that ``--resume`` found (None if it has none yet)."""
    path = os.path.join(output_dir, "summary.json")
    if not path_manager.exists(path):
        return None
    with path_manager.open(path) as f:
        results = json.load(f)
    logger.info("%s already finished; nothing to train, its results stay as written in %s. Evaluate again with "
                "--eval-only; train longer with a new --output-dir and --weights.", output_dir, path)
    return results


def raise_recorded_errors(output_dir: str, results: Dict[str, Any]) -> None:
    """Raise :class:`ResultsIncompleteError` if a finished run's results list ``errors``."""
    if results.get("errors"):
        raise ResultsIncompleteError(
            f"Training finished; the final model ({os.path.join(output_dir, 'model_final.pth')}) and the summary "
            f"({os.path.join(output_dir, 'summary.json')}) are saved, but: " + " ".join(results["errors"])
        )

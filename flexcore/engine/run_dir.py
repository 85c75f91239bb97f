"""A run directory's rules: one run at a time, what a resume may continue, what a kill leaves.

- :class:`RunDirLock` (an ``flock``'d ``.flexcore.lock``) keeps a second run out of a directory
  in use; the kernel drops an ``flock`` when its holder exits however it exits (kill -9,
  preemption, a node's reboot), so a lock never outlives its run. The file keeps the holder's
  pid, host and start time for the refusal message, and is emptied on a clean exit, so a file
  still naming a holder we could lock says that run was killed.
- :func:`system_error_message` turns a full disk, a read-only file system or a missing
  permission into one line that says what the directory still holds.
- :func:`check_resume` refuses a ``--resume`` that would not continue the run it finds
  (a finished run given another length, a checkpoint past the new end), before anything
  in the directory is written.
- :func:`remove_stale_temp_files` deletes the temporary files that a process killed in the
  middle of an atomic write leaves behind (``.<name>.<random>.tmp``, see
  :func:`flexcore.utils.file_io.atomic_open`).
"""
from __future__ import annotations

import errno
import fcntl
import fnmatch
import json
import logging
import os
import re
import socket
import sys
import time
from typing import Any, Dict, List, Optional

from flexcore.checkpoint import CheckpointError
from flexcore.utils.file_io import path_manager

__all__ = ["LOCK_FILE", "RunDirError", "RunDirLockedError", "RunDirLock", "kept_files", "lock_holder", "locked_message",
           "system_error_message", "ResumeError", "ResultsIncompleteError", "check_resume", "finished_summary",
           "raise_recorded_errors", "remove_stale_temp_files"]

logger = logging.getLogger("flexcore")

# Files a training run writes atomically; only their temporary files are removed.
_ATOMIC_FILES = ("*.pth", "last_checkpoint", "metrics.json", "summary.json", "eval_results.json")
_TEMP_FILE = re.compile(r"\.(?P<name>.+)\.[a-z0-9_]{8}\.tmp")  # tempfile.mkstemp's 8 random characters

LOCK_FILE = ".flexcore.lock"


class RunDirError(RuntimeError):
    """The run directory cannot be used or written (locked, read-only, full, not a folder)."""


class RunDirLockedError(RunDirError):
    """Another live process holds the run directory's lock."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process
        return True
    return True


def _describe(holder: dict, held: bool = True) -> str:
    started = holder.get("started")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started)) if started else "an unknown time"
    text = f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {when}"
    text += f" ({holder['command']})" if holder.get("command") else ""
    pid = holder.get("pid")
    if held and holder.get("host") == socket.gethostname() and isinstance(pid, int) and not _pid_alive(pid):
        # flock belongs to the open file, which forked children (data-loader workers) share.
        text += ("; that process is gone, but a process it forked (a data-loader worker?) still holds the "
                 "lock: it exits by itself within seconds, or stop it")
    return text


def _read_holder(fd: int) -> dict:
    try:
        data = os.pread(fd, 65536, 0)
        return json.loads(data) if data.strip() else {}
    except (OSError, ValueError):
        return {}


def lock_holder(output_dir: str) -> Optional[str]:
    """Who holds ``output_dir``'s lock right now (None if nobody); writes nothing."""
    path = os.path.join(output_dir, LOCK_FILE)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read_holder(fd)
        return _describe(holder) if holder else "another process"
    except OSError:  # no locking on this file system: nothing to report
        return None
    finally:
        os.close(fd)  # also releases the probe's lock
    return None


def locked_message(output_dir: str, holder: str) -> str:
    return (f"Output dir {output_dir} is in use by another run: {holder}. Wait for it to end (or stop it), or "
            "pass another --output-dir. Nothing was changed.")


class RunDirLock:
    """Exclusive lock on a run directory for this process (the main process of a DDP job)."""

    def __init__(self, output_dir: str):
        self.output_dir = output_dir
        self.path = os.path.join(output_dir, LOCK_FILE)
        self._fd: Optional[int] = None

    def acquire(self) -> "RunDirLock":
        os.makedirs(self.output_dir, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunDirLockedError(locked_message(self.output_dir, _describe(holder) if holder else "another process"))
        except OSError as exc:
            os.close(fd)
            if exc.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                raise
            logger.warning("The file system of %s does not support locks (%s): nothing stops a second run from "
                           "writing into it at the same time.", self.output_dir, exc.strerror)
            return self
        previous = _read_holder(fd)
        if previous:
            logger.warning("Output dir %s: the run that held it (%s) ended without releasing it (killed, preempted "
                           "or its machine went down); this run takes it over.", self.output_dir,
                           _describe(previous, held=False))
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time(),
              "command": " ".join(sys.argv)[:500]}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        try:
            os.ftruncate(fd, 0)  # empty: released cleanly (a full disk or read-only remount may refuse)
        except OSError:
            pass
        finally:
            os.close(fd)  # drops the flock

    def __enter__(self) -> "RunDirLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# -- system errors -------------------------------------------------------------------------

_SYSTEM_ERRNOS = {
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a part of the path is a file, not a folder",
    errno.EEXIST: "a file is in the way",
    errno.EIO: "an input/output error (failing disk or lost network mount)",
    errno.EFBIG: "the file is too large for the file system",
}
_FIXES = {
    errno.ENOSPC: "Free some space, then rerun the same command with --resume.",
    errno.EDQUOT: "Free some space, then rerun the same command with --resume.",
    errno.EROFS: "Remount it writable, or copy the run elsewhere and pass that --output-dir.",
}


def _system_cause(exc: BaseException) -> Optional[OSError]:
    """The OSError with a known errno in ``exc``'s chain (torch wraps a full disk in RuntimeErrors)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _SYSTEM_ERRNOS:
            return exc
        exc = exc.__cause__ or exc.__context__
    return None


def _metrics_tail(path: str) -> Optional[int]:
    last = None
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                try:
                    last = json.loads(line).get("iteration", last)
                except (ValueError, AttributeError):
                    continue
    except OSError:
        return None
    return last


def kept_files(output_dir: str) -> str:
    """What the run directory holds now, in words (for the message after a failure)."""
    if not os.path.isdir(output_dir):
        return f"{output_dir} was not created"
    parts = []
    try:
        with open(os.path.join(output_dir, "last_checkpoint")) as f:
            name = f.read().strip()
        if name and os.path.isfile(os.path.join(output_dir, name)):
            parts.append(f"the last complete checkpoint {name}")
    except OSError:
        pass
    for name in ("model_final.pth", "summary.json"):
        if os.path.isfile(os.path.join(output_dir, name)) and not parts[:1] == [f"the last complete checkpoint {name}"]:
            parts.append(name)
    last = _metrics_tail(os.path.join(output_dir, "metrics.json"))
    if last is not None:
        parts.append(f"metrics.json up to iteration {last}")
    return f"{output_dir} keeps " + (", ".join(parts) if parts else "no checkpoint or metrics yet")


def system_error_message(exc: BaseException, output_dir: str) -> Optional[str]:
    """One line for a disk-full, read-only, permission or path error in ``exc``'s chain (else None)."""
    cause = _system_cause(exc)
    if cause is None:
        return None
    what = _SYSTEM_ERRNOS[cause.errno]
    where = f" (at {cause.filename})" if cause.filename else f" (in {output_dir})"
    fix = _FIXES.get(cause.errno, "Fix the path or its permissions, or pass another --output-dir.")
    return f"Cannot write the run: {what}{where}. {kept_files(output_dir)}; nothing there was lost. {fix}"


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

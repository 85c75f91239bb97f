"""Event storage and writers: how the loop, hooks and layers report scalars.

Anything running inside training calls :func:`get_event_storage` and puts named scalars;
writers (driven by the ``PeriodicWriter`` hook, main process only) persist them:

    storage = get_event_storage()
    with storage.name_scope("kernel"):
        storage.put_scalar("stem/size", 5, smoothing_hint=False)   # -> "kernel/stem/size"
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import time
from collections import defaultdict
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from fvcore.common.history_buffer import HistoryBuffer
from iopath.common.file_io import g_pathmgr

from flexcore.utils.faults import cut_write, kill_point
from flexcore.utils.file_io import atomic_open

__all__ = [
    "EventStorage",
    "get_event_storage",
    "has_event_storage",
    "EventWriter",
    "JSONWriter",
    "TensorboardWriter",
    "CommonMetricPrinter",
]

_STORAGE_STACK: List["EventStorage"] = []

logger = logging.getLogger("flexcore")


def get_event_storage() -> "EventStorage":
    """The innermost active :class:`EventStorage`; raises outside ``with EventStorage()``."""
    if not _STORAGE_STACK:
        raise RuntimeError(
            "get_event_storage() needs an active EventStorage: call it inside the training loop "
            "or within `with EventStorage():`."
        )
    return _STORAGE_STACK[-1]


def has_event_storage() -> bool:
    """Whether an :class:`EventStorage` is active (layers may log only then)."""
    return bool(_STORAGE_STACK)


class EventStorage:
    """Named scalar histories keyed by iteration, with smoothing hints for writers.

    Args:
        start_iter: iteration the storage starts at (the resumed iteration).
        max_length: values kept per scalar (older ones are dropped, global averages stay exact).
    """

    def __init__(self, start_iter: int = 0, max_length: int = 100_000):
        self._history: Dict[str, HistoryBuffer] = defaultdict(lambda: HistoryBuffer(max_length))
        self._smoothing_hints: Dict[str, bool] = {}
        self._latest: Dict[str, Tuple[float, int]] = {}
        self._iter = start_iter
        self._prefix = ""

    @property
    def iter(self) -> int:
        """The current iteration (set by the trainer before each step)."""
        return self._iter

    @iter.setter
    def iter(self, value: int) -> None:
        self._iter = int(value)

    def step(self) -> None:
        self._iter += 1

    def put_scalar(self, name: str, value: Any, smoothing_hint: bool = True, cur_iter: Optional[int] = None) -> None:
        """Record ``value`` (number or 0-d tensor) for ``name`` at ``cur_iter`` (default: now).

        Args:
            smoothing_hint: writers may report a windowed median instead of the raw value
                (losses: yes; an accuracy measured once per epoch: no). Must not change
                between calls for one name.
        """
        name = self._prefix + name
        if isinstance(value, torch.Tensor):
            value = value.detach().item()
        value = float(value)
        cur_iter = self._iter if cur_iter is None else int(cur_iter)
        self._history[name].update(value, cur_iter)
        self._latest[name] = (value, cur_iter)
        known = self._smoothing_hints.get(name)
        if known is not None and known != smoothing_hint:
            raise ValueError(f"Scalar {name!r} was put with smoothing_hint={known} before, now {smoothing_hint}.")
        self._smoothing_hints[name] = smoothing_hint

    def put_scalars(self, *, smoothing_hint: bool = True, cur_iter: Optional[int] = None, **values: Any) -> None:
        for name, value in values.items():
            self.put_scalar(name, value, smoothing_hint=smoothing_hint, cur_iter=cur_iter)

    def history(self, name: str) -> HistoryBuffer:
        if name not in self._history:
            raise KeyError(f"No scalar named {name!r} in the event storage; known: {sorted(self._history)}")
        return self._history[name]

    def histories(self) -> Dict[str, HistoryBuffer]:
        return dict(self._history)

    def latest(self) -> Dict[str, Tuple[float, int]]:
        """name -> (latest value, iteration it was put at)."""
        return dict(self._latest)

    def latest_with_smoothing_hint(self, window_size: int = 20) -> Dict[str, Tuple[float, int]]:
        """Like :meth:`latest`, but smoothable scalars give the median of their last ``window_size`` values."""
        result = {}
        for name, (value, itr) in self._latest.items():
            if self._smoothing_hints[name]:
                value = float(self._history[name].median(window_size))
            result[name] = (value, itr)
        return result

    def values_since(self, last_iter: int, window_size: int = 20) -> Dict[int, Dict[str, float]]:
        """What writers persist: iteration -> {name: value} for everything put after ``last_iter``.

        Smoothable scalars contribute their latest windowed median; the others every value
        (an evaluation put between two writes is not lost).
        """
        out: Dict[int, Dict[str, float]] = defaultdict(dict)
        for name, (value, itr) in self._latest.items():
            if itr <= last_iter:
                continue
            if self._smoothing_hints[name]:
                out[itr][name] = float(self._history[name].median(window_size))
                continue
            for old_value, old_itr in reversed(self._history[name].values()):
                if old_itr <= last_iter:
                    break
                out.setdefault(int(old_itr), {}).setdefault(name, old_value)
        return dict(out)

    def smoothing_hints(self) -> Dict[str, bool]:
        return dict(self._smoothing_hints)

    @contextmanager
    def name_scope(self, name: str) -> Iterator[None]:
        """Prefix every name put inside the block with ``name/`` (nestable)."""
        old = self._prefix
        self._prefix = f"{old}{name.rstrip('/')}/"
        try:
            yield
        finally:
            self._prefix = old

    def __enter__(self) -> "EventStorage":
        _STORAGE_STACK.append(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        assert _STORAGE_STACK and _STORAGE_STACK[-1] is self, "EventStorage contexts exited out of order"
        _STORAGE_STACK.pop()


class EventWriter:
    """Persists what the active :class:`EventStorage` holds; called periodically."""

    def write(self) -> None:
        raise NotImplementedError

    def close(self) -> None:
        pass


class JSONWriter(EventWriter):
    """``metrics.json``: one JSON object per line and logged iteration.

    Each line has ``iteration`` and every scalar put at that iteration since the last
    write (smoothable ones as windowed medians). Starting at ``start_iter`` drops lines of
    iterations ``>= start_iter`` first (all of them for a restart from scratch), so a
    resumed run's file reads as one clean run. A last line cut short by an interrupted
    write (a kill, a full disk) is dropped with a warning.

    Args:
        json_file: path (any iopath URI) of the file, appended to.
        window_size: smoothing window for scalars with a smoothing hint.
        start_iter: iteration the run starts at (0, or the resumed iteration).
        iters_per_epoch: if given, each line also has ``epoch`` (fractional progress).
    """

    def __init__(self, json_file: str, window_size: int = 20, start_iter: int = 0,
                 iters_per_epoch: Optional[int] = None):
        self._path = json_file
        self._window_size = window_size
        self._iters_per_epoch = iters_per_epoch
        self._last_write = start_iter - 1
        self._drop_after(start_iter)
        self._file = cut_write(json_file, g_pathmgr.open(json_file, "a"))

    def _drop_after(self, start_iter: int) -> None:
        """Rewrite the file without lines of iterations >= ``start_iter`` and without unreadable lines."""
        if not g_pathmgr.exists(self._path):
            return
        with g_pathmgr.open(self._path, "r") as f:
            lines = f.readlines()
        keep, unreadable = [], 0
        for number, line in enumerate(lines, 1):
            if not line.strip():
                unreadable += 1
                continue
            try:
                record = json.loads(line)
                iteration = record.get("iteration", -1)
            except (ValueError, AttributeError):  # not JSON, or JSON but not an object
                if number == len(lines):
                    logger.warning("%s: dropped its last line, cut short by an interrupted write (%d characters: %r)",
                                   self._path, len(line), line[:60])
                else:
                    logger.warning("%s: dropped line %d, which is not a JSON object (%r)", self._path, number,
                                   line[:60])
                unreadable += 1
                continue
            if iteration < start_iter:
                keep.append(line)
        if len(keep) == len(lines):
            return
        dropped = len(lines) - len(keep) - unreadable
        if dropped and start_iter > 0:
            logger.info("%s: dropped %d lines logged after iteration %d (redone by the resume)",
                        self._path, dropped, start_iter - 1)
        elif dropped:
            logger.info("%s: dropped the %d lines of an earlier start that left no checkpoint (the run "
                        "starts from scratch)", self._path, dropped)
        with atomic_open(self._path, "w") as f:
            cut_write(self._path, f).writelines(keep)

    def write(self) -> None:
        by_iter = get_event_storage().values_since(self._last_write, self._window_size)
        for itr in sorted(by_iter):
            line: Dict[str, Any] = {"iteration": itr}
            if self._iters_per_epoch:
                line["epoch"] = round((itr + 1) / self._iters_per_epoch, 4)
            line.update(by_iter[itr])
            self._file.write(json.dumps(line) + "\n")
        if by_iter:
            self._file.flush()
            try:
                os.fsync(self._file.fileno())
            except (AttributeError, OSError):  # non-local iopath files have no descriptor
                pass
            self._last_write = max(by_iter)

    def close(self) -> None:
        self._file.close()


class TensorboardWriter(EventWriter):
    """TensorBoard event files (``torch.utils.tensorboard``) in ``log_dir``.

    Args:
        log_dir: folder for ``events.out.tfevents.*``.
        window_size: smoothing window for scalars with a smoothing hint.
        start_iter: events at or after it from an earlier, interrupted session are purged
            (TensorBoard drops them when it reads the new file); at 0, a restart from
            scratch, the earlier event files are deleted.
    """

    def __init__(self, log_dir: str, window_size: int = 20, start_iter: int = 0):
        from torch.utils.tensorboard import SummaryWriter  # imports tensorboard: slow, so lazy

        if start_iter == 0:
            self._remove_earlier_events(log_dir)
        self._window_size = window_size
        self._last_write = start_iter - 1
        self._events_name = os.path.join(log_dir, "events.out.tfevents")  # what fault injection matches
        self._writer = SummaryWriter(log_dir, purge_step=start_iter if start_iter > 0 else None)

    @staticmethod
    def _remove_earlier_events(log_dir: str) -> None:
        if not os.path.isdir(log_dir):
            return
        old = sorted(name for name in os.listdir(log_dir) if name.startswith("events.out.tfevents."))
        for name in old:
            os.remove(os.path.join(log_dir, name))
        if old:
            logger.info("%s: removed %d TensorBoard event files of an earlier start that left no checkpoint "
                        "(the run starts from scratch)", log_dir, len(old))

    def write(self) -> None:
        by_iter = get_event_storage().values_since(self._last_write, self._window_size)
        for itr in sorted(by_iter):
            for name, value in by_iter[itr].items():
                self._writer.add_scalar(name, value, itr)
        if by_iter:
            self._last_write = max(by_iter)
        kill_point(self._events_name)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def _format_seconds(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(round(seconds))))


class CommonMetricPrinter(EventWriter):
    """The console line: iteration, ETA, losses, lr, step and data time.

    Args:
        max_iter: iterations of the whole run (for the ETA).
        window_size: smoothing window for losses and times.
        iters_per_epoch: if given, the line also shows the epoch.
        keys: extra scalars to print when present (besides ``loss*``, ``lr``, ``time``).
    """

    def __init__(self, max_iter: int, window_size: int = 20, iters_per_epoch: Optional[int] = None,
                 keys: Sequence[str] = ()):
        self._max_iter = max_iter
        self._window_size = window_size
        self._iters_per_epoch = iters_per_epoch
        self._keys = tuple(keys)
        self._last_write: Optional[Tuple[int, float]] = None

    def _eta(self, storage: EventStorage, itr: int) -> Optional[str]:
        remaining = self._max_iter - itr - 1
        if "time" in storage.histories():
            return _format_seconds(storage.history("time").median(1000) * remaining)
        if self._last_write is not None and itr > self._last_write[0]:  # no timer hook: estimate
            per_iter = (time.perf_counter() - self._last_write[1]) / (itr - self._last_write[0])
            return _format_seconds(per_iter * remaining)
        return None

    def write(self) -> None:
        storage = get_event_storage()
        itr = storage.iter
        if itr == self._max_iter:  # after training (final eval): nothing new to report
            return
        hist = storage.histories()
        parts = [f"iter: {itr + 1}/{self._max_iter}"]
        if self._iters_per_epoch:
            parts.append(f"epoch: {itr // self._iters_per_epoch + 1}")
        eta = self._eta(storage, itr)
        if eta is not None:
            parts.append(f"eta: {eta}")
        for name in sorted(hist):
            if name.startswith("loss") or name == "total_loss":
                parts.append(f"{name}: {hist[name].median(self._window_size):.4g}")
        for name in self._keys:
            if name in hist:
                parts.append(f"{name}: {hist[name].latest():.4g}")
        for name, fmt in (("time", "{:.4f}"), ("data_time", "{:.4f}")):
            if name in hist:
                parts.append(f"{name}: " + fmt.format(hist[name].avg(self._window_size)))
        if "lr" in hist:
            parts.append(f"lr: {hist['lr'].latest():.3g}")
        logger.info("  ".join(parts))
        self._last_write = (itr, time.perf_counter())

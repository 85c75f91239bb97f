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
    "peak_gpu_memory_mib",
    "write_hparams",
]

_STORAGE_STACK: List["EventStorage"] = []
_MAX_PENDING = 256  # images / histograms held for a writer; older ones go first when nobody writes them

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
        self._images: List[Tuple[str, Any, int]] = []
        self._histograms: List[Dict[str, Any]] = []

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

    def put_image(self, name: str, image: torch.Tensor, cur_iter: Optional[int] = None) -> None:
        """Queue an image ``(C, H, W)`` (C = 1 or 3, floats in [0, 1] or uint8) for image writers.

        Held as uint8 on the host until a writer takes it (:meth:`pop_images`); the oldest
        are dropped past a few hundred, so a run without TensorBoard does not accumulate them.
        """
        if image.dim() != 3 or image.shape[0] not in (1, 3):
            raise ValueError(f"put_image({name!r}): expected (C, H, W) with C = 1 or 3, got {tuple(image.shape)}")
        if image.dtype != torch.uint8:
            image = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
        cur_iter = self._iter if cur_iter is None else int(cur_iter)
        self._images.append((self._prefix + name, image.cpu().numpy(), cur_iter))
        del self._images[:-_MAX_PENDING]

    def put_histogram(self, name: str, values: torch.Tensor, bins: int = 64, cur_iter: Optional[int] = None) -> None:
        """Queue a histogram of ``values`` (any shape, any device) for histogram writers.

        Only the summary (range, moments, ``bins`` counts) is kept, fetched in one host copy.
        """
        flat = values.detach().flatten().float()
        if flat.numel() == 0:
            return
        lo, hi = flat.min(), flat.max()
        span = (hi - lo).clamp_min(torch.finfo(torch.float32).tiny)  # all equal: everything in bucket 0
        # Bucket index on the device (scatter_add: no host read for the output size).
        index = ((flat - lo) / span * bins).floor().clamp(0, bins - 1).long()
        counts = torch.zeros(bins, device=flat.device).scatter_add_(0, index, torch.ones_like(flat))
        head = torch.stack([lo, hi, flat.sum(), flat.square().sum()])
        host = torch.cat([head, counts]).cpu().double()
        lo_, hi_ = float(host[0]), float(host[1])
        hi_ = hi_ if hi_ > lo_ else lo_ + max(abs(lo_) * 1e-6, 1e-12)  # increasing bucket limits
        limits = torch.linspace(lo_, hi_, bins + 1, dtype=torch.float64)[1:]
        self._histograms.append({
            "tag": self._prefix + name, "min": lo_, "max": hi_, "num": flat.numel(), "sum": float(host[2]),
            "sum_squares": float(host[3]), "bucket_limits": limits.tolist(), "bucket_counts": host[4:].tolist(),
            "global_step": self._iter if cur_iter is None else int(cur_iter),
        })
        del self._histograms[:-_MAX_PENDING]

    def pop_images(self) -> List[Tuple[str, Any, int]]:
        """The queued ``(name, uint8 CHW array, iteration)`` images, emptying the queue."""
        images, self._images = self._images, []
        return images

    def pop_histograms(self) -> List[Dict[str, Any]]:
        """The queued histograms (``SummaryWriter.add_histogram_raw`` arguments), emptying the queue."""
        histograms, self._histograms = self._histograms, []
        return histograms

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
    """Persists what the active :class:`EventStorage` holds; called periodically.

    ``writes_images``: the writer takes the queued images and histograms (producers skip
    drawing them when no writer does).
    """

    writes_images = False

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
    """TensorBoard event files (``torch.utils.tensorboard``) in ``log_dir``: the scalars, and
    the images and histograms queued with ``put_image`` / ``put_histogram``.

    Args:
        log_dir: folder for ``events.out.tfevents.*``.
        window_size: smoothing window for scalars with a smoothing hint.
        start_iter: events at or after it from an earlier, interrupted session are purged
            (TensorBoard drops them when it reads the new file); at 0, a restart from
            scratch, the earlier event files are deleted.
    """

    writes_images = True

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
        storage = get_event_storage()
        by_iter = storage.values_since(self._last_write, self._window_size)
        for itr in sorted(by_iter):
            for name, value in by_iter[itr].items():
                self._writer.add_scalar(name, value, itr)
        if by_iter:
            self._last_write = max(by_iter)
        for name, image, itr in storage.pop_images():
            self._writer.add_image(name, image, itr, dataformats="CHW")
        for histogram in storage.pop_histograms():
            self._writer.add_histogram_raw(**histogram)
        kill_point(self._events_name)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()


def write_hparams(log_dir: str, hparams: Dict[str, Any], metrics: Dict[str, float],
                  domains: Optional[Dict[str, List[Any]]] = None, step: int = 0) -> None:
    """Record one run's hyper-parameters and results for TensorBoard's HParams tab.

    Writes a new event file in ``log_dir`` (the run's own folder, next to its scalars), so
    that a folder of runs (a sweep) shows as one table. Each metric is also written as a
    scalar under its name at ``step``, where the HParams tab reads its value.

    Args:
        hparams: name -> int, float, str or bool.
        metrics: tag -> value (e.g. ``{"hparams/test_accuracy": 98.9}``).
        domains: name -> every value that hyper-parameter takes in the experiment (same
            type as in ``hparams``), for the tab's filters.
    """
    from torch.utils.tensorboard import SummaryWriter
    from torch.utils.tensorboard.summary import hparams as hparams_summaries

    summaries = hparams_summaries(dict(hparams), dict(metrics), dict(domains or {}))
    writer = SummaryWriter(log_dir)
    try:
        for summary in summaries:  # experiment, session start, session end (success)
            writer.file_writer.add_summary(summary)
        for tag, value in metrics.items():
            writer.add_scalar(tag, value, step)
    finally:
        writer.close()


def peak_gpu_memory_mib() -> Optional[float]:
    """Peak memory held by tensors on this process's current GPU since it started, in MiB;
    None where CUDA is not in use (no GPU, or training on the CPU)."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None
    return torch.cuda.max_memory_allocated() / 2**20


def _format_seconds(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(round(seconds))))


class CommonMetricPrinter(EventWriter):
    """The console line: iteration, ETA, losses, lr, step and data time, peak GPU memory.

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
        if "peak_memory_mib" in hist:
            parts.append(f"max_mem: {hist['peak_memory_mib'].latest():.0f}M")
        logger.info("  ".join(parts))
        self._last_write = (itr, time.perf_counter())

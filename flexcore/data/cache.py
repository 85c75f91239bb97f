"""On-disk cache of precomputed dataset tensors, keyed by the parameters that made them.

A cache file holds a dict of tensors (and plain lists/numbers) plus a ``__cache__``
record: the format version, the key (the parameters) and a fingerprint of the source
files. A file whose record does not match (stale: other parameters or changed sources)
or that cannot be read (truncated, corrupt) is rebuilt, never trusted. Files are written
to a temporary name and renamed into place, so concurrent builders (DDP ranks) and
interrupted runs never leave a half-written cache behind.

Long builds go through :func:`build_in_chunks`: each finished chunk is saved next to the
cache (``<cache>.chunks/``, atomically) with a progress bar, so an interrupted build
resumes at the first missing chunk; the folder is removed once the cache is written.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import uuid
from typing import Any, Callable, Dict, List, Tuple

import torch
from tqdm.auto import tqdm

from flexcore.utils import comm

__all__ = ["CACHE_FORMAT", "cache_key_hash", "fingerprint_files", "load_or_build", "build_in_chunks", "chunk_dir"]

logger = logging.getLogger(__name__)

CACHE_FORMAT = 1


def cache_key_hash(key: Dict[str, Any]) -> str:
    """Short stable hash of a JSON-able parameter dict (file-name part)."""
    blob = json.dumps(key, sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode()).hexdigest()[:16]


def fingerprint_files(entries) -> str:
    """Hash of ``(relative path, size)`` pairs: changes when files are added, removed or resized."""
    digest = hashlib.sha1()
    for rel, size in entries:
        digest.update(f"{rel}\t{size}\n".encode())
    return digest.hexdigest()


def _read(path: str, mmap: bool) -> Dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)


def load_or_build(
    path: str,
    key: Dict[str, Any],
    fingerprint: str,
    build: Callable[[], Dict[str, Any]],
    mmap: bool = False,
    what: str = "cache",
) -> Tuple[Dict[str, Any], bool]:
    """The payload cached at ``path`` if it matches ``key`` and ``fingerprint``, else ``build()``.

    Under DDP the main process checks (and if needed builds) the cache first; the other
    ranks wait, then read its file instead of computing the same features again.

    Args:
        path: cache file.
        key: parameters the payload depends on (JSON-able).
        fingerprint: hash of the source files (see :func:`fingerprint_files`).
        build: computes the payload, a dict of tensors / lists / numbers.
        mmap: memory-map the tensors of a cache hit instead of reading them (large arrays).
        what: name used in log messages.

    Returns:
        ``(payload, built)``; ``built`` tells whether it was (re)computed.
    """
    args = (path, key, fingerprint, build, mmap, what)
    if comm.get_world_size() == 1:
        return _load_or_build(*args)
    first = comm.on_main_process(_load_or_build, *args)
    return first if comm.is_main_process() else _load_or_build(*args)


def _load_or_build(path, key, fingerprint, build, mmap, what) -> Tuple[Dict[str, Any], bool]:
    record = {"format": CACHE_FORMAT, "key": json.loads(json.dumps(key)), "fingerprint": fingerprint}
    if os.path.exists(path):
        try:
            payload = _read(path, mmap)
        except Exception as exc:  # truncated zip, bad pickle, wrong type: all mean "rebuild"
            logger.warning("%s: unreadable cache %s (%s: %s); rebuilding it.", what, path, type(exc).__name__, exc)
        else:
            if isinstance(payload, dict) and payload.get("__cache__") == record:
                logger.info("%s: using cache %s", what, path)
                shutil.rmtree(chunk_dir(path), ignore_errors=True)  # left if killed right after the write
                return payload, False
            logger.info("%s: cache %s is stale (other parameters or changed sources); rebuilding it.", what, path)
    payload = build()
    payload["__cache__"] = record
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        torch.save(payload, tmp)
        os.replace(tmp, path)
        logger.info("%s: wrote cache %s", what, path)
        shutil.rmtree(chunk_dir(path), ignore_errors=True)
    except OSError as exc:  # read-only dataset folder: work from memory, say how to cache
        logger.warning("%s: could not write cache %s (%s); continuing without it. Pass cache_dir= "
                       "pointing to a writable folder to keep it.", what, path, exc)
        if os.path.exists(tmp):
            os.remove(tmp)
    return payload, True


def chunk_dir(path: str) -> str:
    """Folder of the finished chunks of the cache file ``path`` while it is being built."""
    return path + ".chunks"


def _save_atomic(value: Any, path: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        torch.save(value, tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def _start_chunks(folder: str, record: Dict[str, Any]) -> bool:
    """Keep ``folder``'s chunks if they were made for ``record``, else empty it; False if it cannot be written."""
    stamp = os.path.join(folder, "record.pt")
    try:
        os.makedirs(folder, exist_ok=True)
        try:
            if torch.load(stamp, weights_only=True) == record:
                return True
        except Exception:  # noqa: BLE001 - absent, unreadable or stale: start afresh
            pass
        for name in os.listdir(folder):
            os.remove(os.path.join(folder, name))
        _save_atomic(record, stamp)
        return True
    except OSError as exc:
        logger.warning("cannot keep partial results in %s (%s); an interrupted build will start over.", folder, exc)
        return False


def build_in_chunks(
    folder: str,
    record: Dict[str, Any],
    count: int,
    chunk_size: int,
    compute: Callable[[int, int], Dict[str, Any]],
    what: str = "cache",
    unit: str = "items",
) -> Dict[str, Any]:
    """``compute(start, stop)`` over ``range(count)`` in chunks, each saved in ``folder`` as it finishes.

    A later call with the same ``record`` loads the chunks already there and computes only
    the rest, so an interrupted build (Ctrl-C, a killed job) resumes; another ``record``
    (other parameters or sources) discards them.

    Args:
        folder: where chunks live (see :func:`chunk_dir`); removed by :func:`load_or_build`
            once the cache is written.
        record: what the chunks depend on (parameters, source fingerprint); saved with them.
        count, chunk_size: items to compute and items per chunk.
        compute: returns a dict of tensors (first dim = items) and/or lists for ``[start, stop)``.
        what, unit: progress-bar label and unit.

    Returns:
        The chunks joined: tensors concatenated along dim 0, lists chained.
    """
    if count == 0:
        return compute(0, 0)
    # Chunk files are named by their first item: another chunking must not reuse them.
    persist = _start_chunks(folder, {"record": record, "count": count, "chunk_size": chunk_size})
    starts = list(range(0, count, chunk_size))
    parts: Dict[int, Dict[str, Any]] = {}
    for start in starts if persist else ():
        path = os.path.join(folder, f"{start:012d}.pt")
        if os.path.exists(path):
            try:
                parts[start] = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
            except Exception as exc:  # noqa: BLE001 - a chunk cut short by a crash: compute it again
                logger.warning("%s: unreadable chunk %s (%s); computing it again.", what, path, exc)
    done = sum(min(chunk_size, count - s) for s in parts)
    if done:
        logger.info("%s: resuming, %d of %d %s already computed in %s", what, done, count, unit, folder)
    with tqdm(total=count, initial=done, unit=unit, desc=what, dynamic_ncols=True) as bar:
        for start in starts:
            if start in parts:
                continue
            stop = min(start + chunk_size, count)
            parts[start] = compute(start, stop)
            if persist:
                _save_atomic(parts[start], os.path.join(folder, f"{start:012d}.pt"))
            bar.update(stop - start)
    return _join([parts[s] for s in starts])


def _join(chunks: List[Dict[str, Any]]) -> Dict[str, Any]:
    joined: Dict[str, Any] = {}
    for key, first in chunks[0].items():
        values = [chunk[key] for chunk in chunks]
        joined[key] = torch.cat(values) if isinstance(first, torch.Tensor) else [v for part in values for v in part]
    return joined

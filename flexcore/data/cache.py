"""On-disk cache of precomputed dataset tensors, keyed by the parameters that made them.

A cache file holds a dict of tensors (and plain lists/numbers) plus a ``__cache__``
record: the format version, the key (the parameters) and a fingerprint of the source
files. A file whose record does not match (stale: other parameters or changed sources)
or that cannot be read (truncated, corrupt) is rebuilt, never trusted. Files are written
to a temporary name and renamed into place, so concurrent builders (DDP ranks) and
interrupted runs never leave a half-written cache behind.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from typing import Any, Callable, Dict, Tuple

import torch

from flexcore.utils import comm

__all__ = ["CACHE_FORMAT", "cache_key_hash", "fingerprint_files", "load_or_build"]

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
    except OSError as exc:  # read-only dataset folder: work from memory, say how to cache
        logger.warning("%s: could not write cache %s (%s); continuing without it. Pass cache_dir= "
                       "pointing to a writable folder to keep it.", what, path, exc)
        if os.path.exists(tmp):
            os.remove(tmp)
    return payload, True

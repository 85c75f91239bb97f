"""File helpers over iopath: one path manager, atomic writes for local files."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from typing import IO, Iterator, Optional

from iopath.common.file_io import HTTPURLHandler, PathManager

__all__ = ["PathManager", "path_manager", "is_local_path", "atomic_open"]

path_manager = PathManager()
path_manager.register_handler(HTTPURLHandler())


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once: os.umask can only be read by setting it, which would race with other threads.
_UMASK = _read_umask()


def is_local_path(path: str) -> bool:
    """True for plain filesystem paths, False for URIs handled by an iopath handler (``scheme://``)."""
    return "://" not in path


@contextmanager
def atomic_open(path: str, mode: str = "wb", manager: Optional[PathManager] = None) -> Iterator[IO]:
    """Open ``path`` for writing so readers only ever see the old or the complete new file.

    Local files are written to a temporary file in the same folder, flushed to disk and
    renamed over ``path`` (``os.replace`` is atomic on POSIX); a crash or kill mid-write
    leaves the old file untouched and at most a stray ``.tmp`` file. Other iopath URIs
    are written through the path manager, whose object-store handlers publish on close.
    """
    if "w" not in mode:
        raise ValueError(f"atomic_open writes files; mode {mode!r} has no 'w'")
    manager = manager or path_manager
    if not is_local_path(path):
        with manager.open(path, mode) as f:
            yield f
        return
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    try:
        # mkstemp makes the file private (0600); give it the mode open() would (0666 & ~umask).
        os.chmod(tmp, 0o666 & ~_UMASK)
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    try:  # persist the rename itself
        dir_fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    except OSError:
        pass

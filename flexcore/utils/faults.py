"""Test-only fault injection: a process kills itself (SIGKILL) in the middle of writing a file.

Fault-injection tests need a kill that lands inside one chosen write, which a signal sent
from outside can hit only by luck. With the environment variable

    FLEXCORE_TEST_KILL_DURING_WRITE="<file name pattern>@<n>"      e.g. "model_0*.pth@40"

the ``n``-th write call (counted from 1 over this process's life) into any file whose name
matches the ``fnmatch`` pattern writes only the first half of its bytes, flushes them to
disk and then sends this process SIGKILL: what is left on disk is what a ``kill -9`` at that
moment leaves. Writers that are not plain file objects (TensorBoard's event writer) call
:func:`kill_point` instead. Unset (always, outside such tests) both cost one dict lookup.
"""
from __future__ import annotations

import fnmatch
import os
import signal
from typing import IO, Any, Dict, Optional, Tuple

__all__ = ["ENV_VAR", "cut_write", "kill_point"]

ENV_VAR = "FLEXCORE_TEST_KILL_DURING_WRITE"

# Write calls seen per pattern; keyed by pid so that a forked child counts from zero.
_counts: Dict[Tuple[int, str], int] = {}


def _armed_for(path: str) -> Optional[Tuple[str, int]]:
    spec = os.environ.get(ENV_VAR)
    if not spec:
        return None
    pattern, _, nth = spec.rpartition("@")
    if not pattern or not nth.isdigit():
        raise ValueError(f"{ENV_VAR}={spec!r}: expected '<file name pattern>@<n>', e.g. 'metrics.json@3'")
    return (pattern, int(nth)) if fnmatch.fnmatch(os.path.basename(path), pattern) else None


def _due(pattern: str, nth: int) -> bool:
    key = (os.getpid(), pattern)
    _counts[key] = _counts.get(key, 0) + 1
    return _counts[key] == nth


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def kill_point(path: str) -> None:
    """Die here if this is the armed write into ``path`` (for writers without a file object)."""
    armed = _armed_for(path)
    if armed is not None and _due(*armed):
        _die()


class _CuttingFile:
    """A file object whose armed write call stops halfway and kills the process."""

    def __init__(self, file: IO, pattern: str, nth: int):
        self._file = file
        self._pattern = pattern
        self._nth = nth

    def write(self, data: Any) -> int:
        if _due(self._pattern, self._nth):
            self._file.write(data[: len(data) // 2])
            self._file.flush()
            os.fsync(self._file.fileno())
            _die()
        return self._file.write(data)

    def writelines(self, lines: Any) -> None:
        for line in lines:
            self.write(line)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


def cut_write(path: str, file: IO) -> IO:
    """``file`` (open for writing ``path``), cut by the armed fault if its name matches."""
    armed = _armed_for(path)
    return file if armed is None else _CuttingFile(file, *armed)

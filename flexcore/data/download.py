"""Opt-in downloads of published dataset files: fetch (resumable, verified, atomic), unpack, main process only.

Nothing here runs unless a dataset is built with ``download=True``. Every dataset with
public URLs goes through :func:`download_files`, so all share one behaviour: the file
arrives through ``<name>.part`` (an interrupted download is never mistaken for a file) with
a progress bar; a ``.part`` left by an interrupted run is resumed with an HTTP ``Range``
request (a server that ignores it answers 200 and the download restarts from zero); the
finished file's checksum (MD5 or SHA-256) is checked; archives are unpacked without letting
members escape the folder; and any failure becomes a :class:`MissingDatasetError` naming the
URL and folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import re
import shutil
import sys
import tarfile
import urllib.error
import urllib.request
import zipfile
from typing import Optional, Sequence, Tuple

from torchvision.datasets.utils import USER_AGENT, calculate_md5
from tqdm.auto import tqdm

from flexcore.utils import comm

from .base import CorruptDatasetError, MissingDatasetError

__all__ = ["Download", "download_files", "fetch_url", "extract_archive", "file_checksum", "IncompleteDownloadError"]

logger = logging.getLogger(__name__)

# (url, file name in the folder, checksum: MD5 (32 hex digits) or SHA-256 (64), or None)
Download = Tuple[str, str, Optional[str]]

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
_BLOCK = 1 << 20
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class IncompleteDownloadError(OSError):
    """The connection ended before the whole file arrived; the ``.part`` file is kept for a resume."""


def _algorithm(checksum: str) -> str:
    algorithms = {32: "md5", 64: "sha256"}
    if len(checksum) not in algorithms or not re.fullmatch(r"[0-9a-fA-F]+", checksum):
        raise ValueError(f"checksum {checksum!r} is neither an MD5 (32 hex digits) nor a SHA-256 (64)")
    return algorithms[len(checksum)]


def file_checksum(path: str, algorithm: str) -> str:
    """Hex digest of a file, ``algorithm`` ``"md5"`` or ``"sha256"``."""
    if algorithm == "md5":
        return calculate_md5(path)
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_BLOCK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _mismatch(path: str, checksum: Optional[str]) -> Optional[str]:
    """None if ``path`` has ``checksum`` (or none is known), else a sentence saying what differs."""
    if checksum is None:
        return None
    algorithm = _algorithm(checksum)
    actual = file_checksum(path, algorithm)
    if actual == checksum.lower():
        return None
    return f"{algorithm.upper()} of the download is {actual}, expected {checksum.lower()}"


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


def _resume_point(response, offset: int) -> int:
    """Where the response's body starts in the file: ``offset`` for a matching 206, else 0 (restart)."""
    status = getattr(response, "status", None)
    if offset and status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if match and int(match.group(1)) == offset:
            return offset
        logger.warning("%s: the server answered another range (%s); restarting the download.",
                       response.geturl(), response.headers.get("Content-Range"))
    elif offset:
        logger.info("%s: the server ignores Range requests; restarting the download from zero.", response.geturl())
    return 0


def _expected_size(response, start: int) -> Optional[int]:
    length = response.headers.get("Content-Length")
    return start + int(length) if length is not None and length.isdigit() else None


def _range_past_end(error: urllib.error.HTTPError, offset: int) -> bool:
    """A 416 answer to ``Range: bytes=offset-`` whose ``Content-Range: bytes */size`` says the file has ``offset`` bytes."""
    match = re.fullmatch(r"bytes \*/(\d+)", (error.headers or {}).get("Content-Range", "") or "")
    return error.code == 416 and match is not None and int(match.group(1)) == offset


def _fetch_part(url: str, part: str, progress: bool, timeout: float) -> None:
    """Bring ``part`` to the full file, continuing from its current size when the server allows."""
    offset = os.path.getsize(part) if os.path.exists(part) else 0
    try:
        response = _open(url, offset, timeout)
    except urllib.error.HTTPError as exc:
        if not (offset and exc.code == 416):
            raise
        if _range_past_end(exc, offset):
            return  # the previous run had fetched every byte; only the rename was missing
        logger.warning("%s: %s is longer than the file on the server; downloading it afresh.", url, part)
        offset = 0
        response = _open(url, offset, timeout)
    with response:
        start = _resume_point(response, offset)
        total = _expected_size(response, start)
        if start:
            logger.info("%s: resuming at byte %d of %s", url, start, total if total is not None else "?")
        name = os.path.basename(part)[: -len(".part")]
        written = start
        with open(part, "ab" if start else "wb") as out, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024, desc=name,
            disable=not progress, dynamic_ncols=True, mininterval=_bar_interval(),
        ) as bar:
            for chunk in iter(lambda: response.read(_BLOCK), b""):
                out.write(chunk)
                bar.update(len(chunk))
                written += len(chunk)
    if total is not None and written < total:
        raise IncompleteDownloadError(f"the connection ended after {written} of {total} bytes")


def _bar_interval() -> float:
    """Seconds between bar updates: live on a terminal, every 30 s in a log file (SLURM output)."""
    return 0.1 if sys.stderr.isatty() else 30.0


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, urllib.error.HTTPError):
        return exc.code >= 500  # a 404 or 403 will not change on a second try
    return isinstance(exc, (OSError, http.client.HTTPException))


def fetch_url(
    url: str, path: str, checksum: Optional[str] = None, progress: bool = True, retries: int = 2,
    timeout: float = 60.0,
) -> str:
    """Download ``url`` to ``path`` via ``path.part``, renamed only when complete and its checksum checks out.

    An existing ``path`` with the right checksum (or any, if none is given) is kept as is. A
    ``.part`` file from an interrupted run is continued with an HTTP ``Range`` request; a
    dropped connection is resumed the same way up to ``retries`` times, after which the
    ``.part`` file stays for the next call. A file whose checksum differs is deleted (a
    resume could not repair it) and a ValueError names both checksums.

    Args:
        url: ``http(s)://`` (resumable) or ``file://`` URL.
        path: destination file.
        checksum: MD5 (32 hex digits) or SHA-256 (64) of the published file, or None.
        progress: show a tqdm bar (bytes, rate, time left).
        retries: immediate resumes after a dropped connection or a server error (5xx).
        timeout: seconds without data before the connection counts as dropped.
    """
    if checksum is not None:
        _algorithm(checksum)  # a malformed checksum is a bug in the caller: say so before downloading
    if os.path.exists(path):
        problem = _mismatch(path, checksum)
        if problem is None:
            return path
        logger.warning("%s: %s; downloading it again.", path, problem)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    part = path + ".part"
    for attempt in range(retries + 1):
        try:
            _fetch_part(url, part, progress, timeout)
            break
        except Exception as exc:  # noqa: BLE001 - network failures come in many types
            if not _retryable(exc):
                raise
            have = os.path.getsize(part) if os.path.exists(part) else 0
            if attempt == retries:
                raise IncompleteDownloadError(
                    f"{type(exc).__name__}: {exc}; {have} bytes are kept in {part}: run again to resume"
                ) from exc
            logger.warning("%s: %s (%s); resuming from byte %d.", url, type(exc).__name__, exc, have)
    problem = _mismatch(part, checksum)
    if problem is not None:
        os.remove(part)  # resuming a corrupt file cannot fix it; the next run starts afresh
        raise ValueError(f"{problem}; removed {part}, run again to download it afresh")
    os.replace(part, path)
    return path


def _extract_flat(path: str, folder: str, members: Sequence[str]) -> None:
    """Copy the archive members whose base names are ``members`` (at any depth) flat into ``folder``."""
    with contextlib.ExitStack() as stack:
        if path.endswith(".zip"):
            archive = stack.enter_context(zipfile.ZipFile(path))
            entries = {os.path.basename(m): m for m in archive.namelist() if not m.endswith("/")}
            open_member = archive.open
        else:
            archive = stack.enter_context(tarfile.open(path))
            entries = {os.path.basename(m.name): m for m in archive.getmembers() if m.isfile()}
            open_member = archive.extractfile
        missing = [n for n in members if n not in entries]
        if missing:
            raise CorruptDatasetError(f"{path}: the archive lacks {', '.join(missing)}.")
        for name in members:
            with open_member(entries[name]) as src, open(os.path.join(folder, name), "wb") as out:
                shutil.copyfileobj(src, out)


def extract_archive(path: str, folder: str, members: Optional[Sequence[str]] = None) -> None:
    """Unpack a ``.tar.gz``/``.tgz``/``.tar``/``.zip`` archive into ``folder``; other files are left alone.

    Args:
        path: the archive.
        folder: destination; no member may land outside it.
        members: if given, only these base names are taken (found at any depth) and written flat
            into ``folder`` (e.g. the two ``.ts`` files of a UEA problem's zip).
    """
    if not path.endswith(_ARCHIVE_SUFFIXES):
        return
    logger.info("Extracting %s into %s", path, folder)
    os.makedirs(folder, exist_ok=True)
    try:
        if members is not None:
            _extract_flat(path, folder, members)
        elif path.endswith(".zip"):
            with zipfile.ZipFile(path) as archive:
                root = os.path.realpath(folder)
                for name in archive.namelist():
                    target = os.path.realpath(os.path.join(folder, name))
                    if os.path.commonpath([root, target]) != root:
                        raise CorruptDatasetError(f"{path}: member {name!r} would land outside {folder!r}.")
                archive.extractall(folder)
        else:
            with tarfile.open(path) as archive:
                archive.extractall(folder, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as exc:
        raise CorruptDatasetError(
            f"{path}: cannot unpack the archive ({type(exc).__name__}: {exc}); delete it and download it again."
        ) from exc


def download_files(
    dataset: str,
    downloads: Sequence[Download],
    folder: str,
    members: Optional[Sequence[str]] = None,
    progress: bool = True,
) -> None:
    """Download (and unpack archives) into ``folder`` on the main process; the other ranks wait.

    Args:
        dataset: dataset name for messages.
        downloads: ``(url, file name, checksum or None)`` each (MD5 or SHA-256 hex digest);
            ``.tar.gz``/``.tgz``/``.tar``/``.zip`` files are extracted into ``folder`` after
            the download and kept.
        folder: destination folder (created).
        members: extract only these base names, flat (see :func:`extract_archive`).
        progress: show a progress bar per file.

    Raises:
        MissingDatasetError: a download or an unpack failed; names the URL and the folder, and
            says whether the next run resumes.
    """

    def fetch_all() -> None:
        os.makedirs(folder, exist_ok=True)
        for url, filename, checksum in downloads:
            logger.info("%s: downloading %s to %s", dataset, url, folder)
            try:
                path = fetch_url(url, os.path.join(folder, filename), checksum, progress=progress)
                extract_archive(path, folder, members)
            except Exception as exc:  # network errors come in many types; report them all the same way
                resume = " (the next run resumes it)" if isinstance(exc, IncompleteDownloadError) else ""
                raise MissingDatasetError(
                    f"{dataset}: download of {url} failed ({type(exc).__name__}: {exc}){resume}; "
                    f"run again, or download it by hand into {os.path.abspath(folder)!r}."
                ) from exc

    comm.on_main_process(fetch_all)

"""Opt-in downloads of published dataset files: fetch (checked, atomic), unpack, on the main process only.

Nothing here runs unless a dataset is built with ``download=True``. Every dataset with
public URLs goes through :func:`download_files`, so all share one behaviour: the file
arrives through ``<name>.part`` (an interrupted download is never mistaken for a file),
its MD5 is checked where known, archives are unpacked without letting members escape the
folder, and any failure becomes a :class:`MissingDatasetError` naming the URL and folder.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import shutil
import tarfile
import urllib.request
import zipfile
from typing import Optional, Sequence, Tuple

from flexcore.utils import comm

from .base import CorruptDatasetError, MissingDatasetError

__all__ = ["Download", "download_files", "fetch_url", "extract_archive"]

logger = logging.getLogger(__name__)

# (url, file name in the folder, md5 or None)
Download = Tuple[str, str, Optional[str]]

_ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")


def _md5(path: str) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_url(url: str, path: str, md5: Optional[str] = None) -> str:
    """Download ``url`` to ``path`` via ``path.part``, renamed only when complete and its MD5 checks out.

    An existing ``path`` (with the right MD5, if one is given) is kept as is.
    """
    if os.path.exists(path) and (md5 is None or _md5(path) == md5):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    part = path + ".part"
    try:
        with urllib.request.urlopen(url, timeout=60) as response, open(part, "wb") as out:
            shutil.copyfileobj(response, out, 1 << 20)
        if md5 is not None and _md5(part) != md5:
            raise ValueError(f"MD5 of the download is {_md5(part)}, expected {md5}")
        os.replace(part, path)
    finally:
        if os.path.exists(part):
            os.remove(part)
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
    dataset: str, downloads: Sequence[Download], folder: str, members: Optional[Sequence[str]] = None
) -> None:
    """Download (and unpack archives) into ``folder`` on the main process; the other ranks wait.

    Args:
        dataset: dataset name for messages.
        downloads: ``(url, file name, md5 or None)`` each; ``.tar.gz``/``.tgz``/``.tar``/``.zip``
            files are extracted into ``folder`` after the download and kept.
        folder: destination folder (created).
        members: extract only these base names, flat (see :func:`extract_archive`).

    Raises:
        MissingDatasetError: a download or an unpack failed; names the URL and the folder.
    """

    def fetch_all() -> None:
        os.makedirs(folder, exist_ok=True)
        for url, filename, md5 in downloads:
            logger.info("%s: downloading %s to %s", dataset, url, folder)
            try:
                path = fetch_url(url, os.path.join(folder, filename), md5)
                extract_archive(path, folder, members)
            except Exception as exc:  # network errors come in many types; report them all the same way
                raise MissingDatasetError(
                    f"{dataset}: download of {url} failed ({type(exc).__name__}: {exc}); "
                    f"download it by hand into {os.path.abspath(folder)!r}."
                ) from exc

    comm.on_main_process(fetch_all)

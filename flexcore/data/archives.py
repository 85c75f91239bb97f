"""Download a published archive (only when a dataset is built with ``download=True``) and unpack it."""
from __future__ import annotations

import logging
import os
import shutil
import tarfile
import urllib.request
import zipfile
from typing import Dict, Sequence

from .base import CorruptDatasetError

__all__ = ["download_url", "extract_tar", "extract_zip_members"]

logger = logging.getLogger(__name__)


def download_url(url: str, path: str) -> str:
    """Fetch ``url`` to ``path`` (through ``path.part``, so an interrupted download is not mistaken for a file)."""
    if os.path.exists(path):
        return path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    part = path + ".part"
    logger.info("Downloading %s to %s", url, path)
    with urllib.request.urlopen(url) as response, open(part, "wb") as out:
        shutil.copyfileobj(response, out, length=1 << 20)
    os.replace(part, path)
    return path


def extract_tar(path: str, dest: str) -> None:
    """Unpack a (gzipped) tarball into ``dest``, refusing members that would land outside it."""
    logger.info("Extracting %s into %s", path, dest)
    try:
        with tarfile.open(path) as tar:
            tar.extractall(dest, filter="data")
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise CorruptDatasetError(
            f"{path}: cannot unpack the archive ({exc}); delete it and download it again."
        ) from exc


def extract_zip_members(path: str, dest: str, names: Sequence[str]) -> Dict[str, str]:
    """Copy the members whose base names are ``names`` (found at any depth) flat into ``dest``."""
    found: Dict[str, str] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            by_base = {os.path.basename(m): m for m in archive.namelist() if not m.endswith("/")}
            missing = [n for n in names if n not in by_base]
            if missing:
                raise CorruptDatasetError(f"{path}: the archive lacks {', '.join(missing)}.")
            os.makedirs(dest, exist_ok=True)
            for name in names:
                target = os.path.join(dest, name)
                with archive.open(by_base[name]) as src, open(target, "wb") as out:
                    shutil.copyfileobj(src, out)
                found[name] = target
    except (zipfile.BadZipFile, EOFError) as exc:
        raise CorruptDatasetError(
            f"{path}: not a readable zip archive ({exc}); delete it and download it again."
        ) from exc
    return found

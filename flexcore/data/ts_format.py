"""Reader for the sktime / aeon ``.ts`` time-series format (UEA & UCR archives).

A file is ``#`` comment lines, a header of ``@key value`` lines, then ``@data`` and one
case per line: the dimensions separated by ``:``, values within a dimension by ``,``,
``?`` for a missing value, and (with ``@classLabel true``) the class label after the
last ``:``. Header example (CharacterTrajectories)::

    @problemName CharacterTrajectories
    @timeStamps false
    @missing false
    @univariate false
    @dimensions 3
    @equalLength false
    @classLabel true 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20
    @data
    -0.13,-0.19,...:0.03,0.11,...:0.89,1.02,...:1
"""
from __future__ import annotations

import dataclasses
import logging
import math
from typing import Dict, List, Optional, Tuple

import numpy as np

from .base import CorruptDatasetError

__all__ = ["TsFile", "read_ts"]

logger = logging.getLogger(__name__)

_BOOL = {"true": True, "false": False}
_KNOWN = {
    "problemname", "timestamps", "missing", "univariate", "dimension", "dimensions", "equallength",
    "serieslength", "classlabel", "targetlabel",
}


@dataclasses.dataclass
class TsFile:
    """A parsed ``.ts`` file.

    Attributes:
        problem: ``@problemName``.
        series: one ``(channels, length_i)`` float64 array per case (NaN = missing).
        labels: class label strings per case (empty without ``@classLabel true``).
        class_labels: the labels declared in the header, in header order.
        header: every header key (lower case) with its raw value.
    """

    problem: str
    series: List[np.ndarray]
    labels: List[str]
    class_labels: List[str]
    header: Dict[str, str]

    @property
    def channels(self) -> int:
        return self.series[0].shape[0] if self.series else 0

    @property
    def max_length(self) -> int:
        return max((s.shape[1] for s in self.series), default=0)


def _bool(path: str, number: int, key: str, value: str) -> bool:
    if value.lower() not in _BOOL:
        raise CorruptDatasetError(f"{path}, line {number}: @{key} must be true or false, found {value!r}.")
    return _BOOL[value.lower()]


def _int(path: str, number: int, key: str, value: str) -> int:
    try:
        parsed = int(value)
    except ValueError:
        parsed = -1
    if parsed < 1:
        raise CorruptDatasetError(f"{path}, line {number}: @{key} must be a positive integer, found {value!r}.")
    return parsed


def _values(path: str, number: int, dim: int, text: str) -> np.ndarray:
    try:
        return np.array([math.nan if v.strip() == "?" else float(v) for v in text.split(",")], dtype=np.float64)
    except ValueError as exc:
        raise CorruptDatasetError(
            f"{path}, line {number}, dimension {dim + 1}: not a comma-separated list of numbers ({exc})."
        ) from exc


def read_ts(path: str) -> TsFile:
    """Parse a ``.ts`` file, validating the header against the data.

    Raises:
        CorruptDatasetError: naming the file and line, for a missing or malformed header,
            a case whose dimension count, length or label disagrees with the header, or a
            non-numeric value. Timestamped data (``@timeStamps true``) is not supported.
    """
    header: Dict[str, str] = {}
    series: List[np.ndarray] = []
    labels: List[str] = []
    in_data, with_labels, class_labels, equal_length = False, False, [], False
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except UnicodeDecodeError as exc:
        raise CorruptDatasetError(f"{path}: not a text .ts file ({exc}).") from exc

    dims: Optional[int] = None
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not in_data:
            if not line.startswith("@"):
                raise CorruptDatasetError(
                    f"{path}, line {number}: expected an @key header line before @data, found {line[:60]!r}."
                )
            key, _, value = line[1:].partition(" ")
            key = key.lower()
            if key == "data":
                in_data = True
                dims, with_labels, class_labels, equal_length = _check_header(path, number, header)
                continue
            if key not in _KNOWN:  # newer writers add keys; what matters is validated below
                logger.warning("%s, line %d: ignoring unknown header key @%s", path, number, key)
            header[key] = value.strip()
            continue
        parts = line.split(":")
        if with_labels:
            *parts, label = parts
            label = label.strip()
            if class_labels and label not in class_labels:
                raise CorruptDatasetError(
                    f"{path}, line {number}: label {label!r} is not among the @classLabel values "
                    f"{' '.join(class_labels)}."
                )
            labels.append(label)
        if dims is None:
            dims = len(parts)
        if len(parts) != dims:
            raise CorruptDatasetError(f"{path}, line {number}: {len(parts)} dimensions, expected {dims}.")
        values = [_values(path, number, d, p) for d, p in enumerate(parts)]
        length = max(len(v) for v in values)
        if "serieslength" in header and length != int(header["serieslength"]):
            raise CorruptDatasetError(
                f"{path}, line {number}: length {length}, but @seriesLength is {header['serieslength']}."
            )
        # dimensions of unequal length within a case: pad each with its last value (the original's rule)
        series.append(np.stack([np.pad(v, (0, length - len(v)), mode="edge") for v in values]))
    if not in_data:
        raise CorruptDatasetError(f"{path}: no @data line; not a complete .ts file.")
    if not series:
        raise CorruptDatasetError(f"{path}: no cases after @data (truncated?).")
    if equal_length and len({s.shape[1] for s in series}) > 1:
        raise CorruptDatasetError(f"{path}: @equalLength true but the cases have different lengths.")
    return TsFile(header["problemname"], series, labels, class_labels if with_labels else [], header)


def _check_header(path: str, number: int, header: Dict[str, str]) -> Tuple[Optional[int], bool, List[str], bool]:
    """Validate the header at ``@data``.

    Returns:
        (dimensions or None, labelled?, declared labels, equal length?)
    """
    missing = [k for k in ("problemname", "timestamps") if k not in header]
    if "classlabel" not in header and "targetlabel" not in header:
        missing.append("classlabel")
    if missing:
        raise CorruptDatasetError(
            f"{path}, line {number}: @data before the required header keys {', '.join('@' + m for m in missing)}."
        )
    if _bool(path, number, "timestamps", header["timestamps"]):
        raise CorruptDatasetError(f"{path}: timestamped .ts data (@timeStamps true) is not supported.")
    dims = None
    for key in ("dimension", "dimensions"):
        if key in header:
            dims = _int(path, number, key, header[key])
    if "univariate" in header and _bool(path, number, "univariate", header["univariate"]):
        if dims not in (None, 1):
            raise CorruptDatasetError(f"{path}: @univariate true but @dimensions {dims}.")
        dims = 1
    if "serieslength" in header:
        _int(path, number, "seriesLength", header["serieslength"])
    if "targetlabel" in header:
        raise CorruptDatasetError(
            f"{path}: a regression .ts file (@targetLabel); a classification file is expected."
        )
    flag, _, rest = header["classlabel"].partition(" ")
    with_labels = _bool(path, number, "classLabel", flag)
    class_labels = rest.split()
    if with_labels and not class_labels:
        raise CorruptDatasetError(f"{path}, line {number}: @classLabel true without the list of labels.")
    equal_length = _bool(path, number, "equalLength", header.get("equallength", "false"))
    return dims, with_labels, class_labels, equal_length

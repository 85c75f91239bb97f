"""Per-machine FFT cost calibration: ``tools/benchmark.py fft-calibrate`` saves, 'auto' loads.

The shipped cost constants were fitted on one CPU; another CPU (or torch build) can move the
crossover by a factor of 3. ``fft-calibrate`` therefore saves its fit to
``<cache>/fft_calibration/<device>-<model>-torch<version>.json``, where ``<cache>`` is
``$FLEXCORE_CACHE``, else ``$XDG_CACHE_HOME/flexcore``, else ``~/.cache/flexcore``; the
cost model uses that file on the machine (same CPU model, same torch) and logs which
constants it uses. ``FLEXCORE_FFT_CALIBRATION`` overrides: ``off`` (the shipped constants)
or the path of a calibration file.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import re
from pathlib import Path
from typing import Dict, Optional, Tuple

import torch

from flexcore.layers.fft_cost_model import COST_MODELS, CostModel

logger = logging.getLogger(__name__)

__all__ = ["cache_dir", "device_name", "calibration_path", "save_calibration", "load_calibration",
           "machine_cost_models", "reset_machine_calibration"]

FORMAT = "flexcore-fft-calibration"
_loaded: Dict[str, Dict] = {}  # device type -> {key: CostModel} (empty: shipped constants)


def cache_dir() -> Path:
    if os.environ.get("FLEXCORE_CACHE"):
        return Path(os.environ["FLEXCORE_CACHE"]).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".cache") / "flexcore"


def device_name(device_type: str = "cpu") -> str:
    """The processor model ('Intel(R) Xeon(R) ...', 'AMD EPYC ...') or the GPU's name."""
    if device_type == "cuda" and torch.cuda.is_available():
        return torch.cuda.get_device_name()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def calibration_path(device_type: str = "cpu") -> Path:
    """Where this machine's calibration for ``device_type`` lives."""
    slug = re.sub(r"[^A-Za-z0-9.]+", "-", device_name(device_type)).strip("-")
    version = torch.__version__.split("+")[0]
    return cache_dir() / "fft_calibration" / f"{device_type}-{slug}-torch{version}.json"


def save_calibration(models: Dict[Tuple[str, int, str], "CostModel"], device_type: str = "cpu",
                     path: Optional[Path] = None) -> Path:
    """Write fitted ``{(device, dims, mode): CostModel}`` for this machine; returns the path."""
    path = Path(path) if path is not None else calibration_path(device_type)
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "format": FORMAT,
        "version": 1,
        "device_type": device_type,
        "device_name": device_name(device_type),
        "torch": torch.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "models": {f"{d}/{dims}/{mode}": {"direct": list(m.direct), "fft": list(m.fft)}
                   for (d, dims, mode), m in models.items() if d == device_type},
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(payload, indent=1))
    os.replace(tmp, path)  # a reader never sees half a file
    reset_machine_calibration()
    return path


def load_calibration(path: Path, device_type: str = "cpu") -> Dict:
    """``{(device, dims, mode): CostModel}`` from a calibration file; ValueError names the file."""
    try:
        payload = json.loads(Path(path).read_text())
        if payload.get("format") != FORMAT:
            raise ValueError(f"format is {payload.get('format')!r}, expected {FORMAT!r}")
        models = {}
        for name, entry in payload["models"].items():
            device, dims, mode = name.split("/")
            key = (device, int(dims), mode)
            shipped = COST_MODELS.get(key)
            model = CostModel(tuple(float(v) for v in entry["direct"]), tuple(float(v) for v in entry["fft"]))
            if shipped is None or len(model.direct) != len(shipped.direct) or len(model.fft) != len(shipped.fft):
                raise ValueError(f"entry {name!r} does not match this flexcore's cost model")
            if device == device_type:
                models[key] = model
    except (OSError, KeyError, TypeError, ValueError, AttributeError) as exc:
        raise ValueError(f"FFT calibration {path}: {exc}; rerun `tools/benchmark.py fft-calibrate` "
                         f"or delete the file") from None
    return models


def machine_cost_models(device_type: str = "cpu") -> Dict:
    """This machine's calibrated constants (empty: use the shipped ones); read once, logged."""
    if device_type in _loaded:
        return _loaded[device_type]
    setting = os.environ.get("FLEXCORE_FFT_CALIBRATION", "").strip()
    models: Dict = {}
    if setting.lower() in ("off", "0", "shipped", "none"):
        logger.info("FFT 'auto' on %s: shipped cost constants (FLEXCORE_FFT_CALIBRATION=%s)", device_type, setting)
    else:
        path = Path(setting).expanduser() if setting else calibration_path(device_type)
        if path.is_file():
            try:
                models = load_calibration(path, device_type)
                logger.info("FFT 'auto' on %s: cost constants calibrated on this machine, %s", device_type, path)
            except ValueError as exc:
                logger.warning("%s; using the shipped cost constants", exc)
        elif setting:
            logger.warning("FLEXCORE_FFT_CALIBRATION=%s: no such file; using the shipped cost constants", setting)
        else:
            logger.info("FFT 'auto' on %s: shipped cost constants (no calibration at %s; "
                        "`tools/benchmark.py fft-calibrate` makes one)", device_type, path)
    _loaded[device_type] = models
    return models


def reset_machine_calibration() -> None:
    """Forget loaded calibrations (the next choice reads the file and the environment again)."""
    _loaded.clear()

"""Test helpers that need no test framework: the original system's seed fixtures, SLURM probe.

The pytest hooks and fixtures built on them live in the checkout's ``conftest.py``; this
module is importable without pytest (the benchmarks use it too).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

_REPO = Path(__file__).resolve().parents[2]


# Where the original code's fixtures live: $FLEXCORE_SEED_FIXTURES when set, else the checkout's.
SEED_FIXTURES_DEFAULT = _REPO / "tests" / "fixtures" / "seed"


def seed_fixtures_dir() -> Optional[Path]:
    """Folder with the original FlexConv code's outputs (``*.pt`` + ``*.json``), if present."""
    folder = Path(os.environ.get("FLEXCORE_SEED_FIXTURES") or SEED_FIXTURES_DEFAULT)
    return folder if folder.is_dir() and any(folder.glob("*.pt")) else None


# The single-layer fixtures of the original code (see tests/fixtures/seed/README.md).
SEED_LAYER_CASES = (
    "flexconv2d_magnet",
    "flexconv2d_magnet_asym_mask",
    "ckconv2d_mlp",
    "ckconv2d_siren",
    "ckconv2d_gabor",
    "ckconv2d_fourier",
    "flexconv1d_causal_fft",
    "ckconv1d_causal_gabor_spatial",
)


def load_seed_case(folder: Path, case: str) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """One fixture: its ``.json`` metadata and its ``.pt`` tensors (safe loading)."""
    import torch

    meta = json.loads((folder / f"{case}.json").read_text())
    return meta, torch.load(folder / f"{case}.pt", weights_only=True)


def slurm_available() -> bool:
    """A SLURM controller answers (``.ci/run`` starts one with the shared script)."""
    if shutil.which("sbatch") is None or shutil.which("scontrol") is None:
        return False
    try:
        return subprocess.run(["scontrol", "ping"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False

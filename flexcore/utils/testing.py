"""pytest plugin shared by flexcore's and projects' tests (``-p flexcore.utils.testing``).

Gives every test a clean gin config, skips ``gpu``/``slurm`` tests where the hardware or
cluster is missing, and locates the original system's seed fixtures.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any, Dict, Optional, Tuple

import pytest

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


def pytest_configure(config):
    config.addinivalue_line("markers", "gpu: needs a CUDA device (skipped without one)")
    config.addinivalue_line(
        "markers", "slurm: needs a running SLURM cluster (.ci/run starts one; skipped without)"
    )
    config.addinivalue_line("markers", "slow: longer than a few seconds")


def pytest_collection_modifyitems(config, items):
    import torch

    has_cuda = torch.cuda.is_available()
    has_slurm = None
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(pytest.mark.skip(reason="no CUDA device on this machine"))
        if "slurm" in item.keywords:
            if has_slurm is None:
                has_slurm = slurm_available()
            if not has_slurm:
                item.add_marker(
                    pytest.mark.skip(
                        reason="no SLURM cluster answers `scontrol ping`; start one with "
                        ".ci/start-local-slurm.sh (as root)"
                    )
                )


@pytest.fixture(autouse=True)
def _clean_gin():
    """Every test starts and ends with an empty, unlocked gin config."""
    import gin

    gin.clear_config(clear_constants=False)
    yield
    gin.clear_config(clear_constants=False)


@pytest.fixture
def seed_fixtures() -> Path:
    path = seed_fixtures_dir()
    if path is None:
        pytest.skip(f"seed fixtures not found in {os.environ.get('FLEXCORE_SEED_FIXTURES') or SEED_FIXTURES_DEFAULT} "
                    "(set FLEXCORE_SEED_FIXTURES to the folder of *.pt/*.json fixtures)")
    return path


@pytest.fixture
def single_thread():
    """Run a test with one torch thread: tiny models trace and run fastest that way on a shared machine.

    Use with ``pytestmark = pytest.mark.usefixtures("single_thread")``.
    """
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

"""pytest hooks and fixtures shared by flexcore's and the projects' tests.

Kept out of the installed library (a library module never imports pytest): pytest loads this
file for every test under the checkout. Gives every test a clean gin config, skips
``gpu``/``slurm`` tests where the hardware or cluster is missing, and locates the original
system's seed fixtures (helpers in ``flexcore.utils.testing``).
"""
import os
from pathlib import Path

import pytest

# Tests see the shipped FFT cost constants, not a calibration a developer saved for this
# machine (~/.cache/flexcore): 'auto' picks then do not depend on who runs the suite.
os.environ.setdefault("FLEXCORE_FFT_CALIBRATION", "off")

from flexcore.utils.testing import SEED_FIXTURES_DEFAULT, seed_fixtures_dir, slurm_available


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


@pytest.fixture(autouse=True)
def _reset_flexcore_logger():
    """Undo ``setup_logger`` after each test: it stops propagation (so a run does not print
    twice), which would otherwise hide later tests' flexcore messages from ``caplog``."""
    import logging

    yield
    logger = logging.getLogger("flexcore")
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.propagate = True
    logger.setLevel(logging.NOTSET)


@pytest.fixture
def seed_fixtures() -> Path:
    path = seed_fixtures_dir()
    if path is None:
        where = os.environ.get("FLEXCORE_SEED_FIXTURES") or SEED_FIXTURES_DEFAULT
        pytest.skip(f"seed fixtures not found in {where} "
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

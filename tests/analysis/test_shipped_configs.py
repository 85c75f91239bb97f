"""Every shipped experiment config can be analysed without its dataset, with zero uncounted ops.

Picks up every gin file under gin_configs/ and projects/*/gin_configs/ (``base/`` and any
file binding neither a dataset nor a model are building blocks, not experiments). Inputs larger than 32 px per side (1024 steps for
sequences) are analysed at that reduced size: it changes counts, not which ops run.
"""
import json

import gin
import pytest

import flexcore.engine.trainer  # noqa: F401  (registers Trainer, which experiment configs bind)
from flexcore.analysis.cli import load_analysis_setup, main
from flexcore.config import list_config_files, parse_config

pytestmark = pytest.mark.usefixtures("single_thread")

EXPERIMENTS = [name for name in list_config_files() if not name.replace("\\", "/").startswith("base/")]
CAP = {1: 1024, 2: 32, 3: 16}


def _bound(name):
    try:
        return gin.query_parameter(name)
    except ValueError:
        return None


def _reduced_size(config):
    """None for full size, else capped spatial sizes; skips building blocks (no dataset, no model)."""
    gin.clear_config()
    parse_config([config], finalize=False)
    dataset, backbone = _bound("Data.dataset"), _bound("build_model.backbone")
    if dataset is None and backbone is None:
        gin.clear_config()
        pytest.skip(f"{config} is a building block (binds neither Data.dataset nor build_model.backbone)")
    shape = load_analysis_setup(fake_data=True).metadata.shape
    gin.clear_config()
    cap = CAP[len(shape)]
    return None if max(shape) <= cap else [min(n, cap) for n in shape]


@pytest.mark.parametrize("config", EXPERIMENTS or [pytest.param("none", marks=pytest.mark.skip("no experiment configs"))])
def test_config_is_analysable_without_its_data(config, tmp_path):
    size = _reduced_size(config)
    args = ["--config-file", config, "--fake-data", "--tasks", "flops", "params", "--strict", "--output", str(tmp_path)]
    if size:
        args += ["--input-size", *map(str, size)]
    assert main(args) == 0
    report = json.loads((tmp_path / "flops.json").read_text())
    assert report["inference"]["total"] > 0 and report["train"]["params"] > 0

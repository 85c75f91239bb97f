"""Every shipped gin file parses; every experiment builds at full size and trains two steps tiny.

Picks up each ``.gin`` file under ``gin_configs/`` and ``projects/*/gin_configs/`` by itself:

- building blocks (``base/`` and files binding neither ``Data.dataset`` nor
  ``build_model.backbone``) must parse on their own (macros they reference excepted);
- experiments build their model at full size from the dataset's metadata (no files, no
  forward), with the original model's parameter count where known; then train two steps
  at reduced width on ``--fake-data`` of the dataset's real shape, and the run's
  ``operative_config.gin`` rebuilds a model that loads the run's final checkpoint strictly;
- kernel-fitting configs (``kernel_fitting/``) fit their nets for two iterations;
- the README's config table lists every experiment, and only existing ones.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import gin
import pytest
import torch

from flexcore.config import list_config_files, parse_config, resolve_config_file
from flexcore.data.base import describe_dataset
from flexcore.engine.defaults import default_argument_parser, main
from flexcore.modeling.build import build_model
from flexcore.utils.parameters import count_parameters

REPO = Path(__file__).resolve().parents[1]
_INCLUDE = re.compile(r"""^\s*include\s+(['"])(.+?)\1""", re.M)
_EXPERIMENT = re.compile(r"^\s*(Trainer\.dataset|build_model\.backbone)\s*=", re.M)


def _sources(name: str, seen=None):
    """Text of a gin file and, recursively, of every file it includes."""
    seen = set() if seen is None else seen
    path = resolve_config_file(name)
    if path in seen:
        return []
    seen.add(path)
    text = Path(path).read_text(encoding="utf-8")
    return [text] + [t for inc in _INCLUDE.findall(text) for t in _sources(inc[1], seen)]


def _is_experiment(name: str) -> bool:
    if name.replace(os.sep, "/").startswith(("base/", "kernel_fitting/")):
        return False
    return any(_EXPERIMENT.search(text) for text in _sources(name))


ALL = list_config_files()
EXPERIMENTS = [n for n in ALL if _is_experiment(n)]
KERNEL_FITTING = [n for n in ALL if n.replace(os.sep, "/").startswith("kernel_fitting/")]
BLOCKS = [n for n in ALL if n not in EXPERIMENTS and n not in KERNEL_FITTING]

# Parameter counts of the original code's models (FlexNets and CIFAR ResNets; the sCIFAR-10
# FlexTCN-2 from the seed fixtures). Every key must be a shipped config.
EXPECTED_PARAMETERS = {
    "cifar10/flexnet7.gin": 671_650,
    "cifar10/flexnet7_wd1e-5.gin": 671_650,
    "cifar10/flexnet5.gin": 454_046,
    "cifar10/flexnet5_wd1e-5.gin": 454_046,
    "cifar10/flexnet3.gin": 277_090,
    "cifar10/flexnet3_wd1e-5.gin": 277_090,
    "cifar10/flexnet7_ckconv_magnet.gin": 671_590,
    "cifar10/flexnet7_siren.gin": 627_970,
    "cifar10/flexnet7_ckconv_siren.gin": 627_910,
    "cifar10/flexnet7_gabor.gin": 669_730,
    "cifar10/flexnet7_fourier.gin": 663_970,
    "cifar10/flexnet7_conv3.gin": 169_990,
    "cifar10/flexnet7_conv33.gin": 19_998_790,
    "cifar10/resnet32.gin": 464_154,
    "cifar10/resnet44.gin": 658_586,
    "mnist/flexnet7.gin": 670_066,
    "stl10/flexnet7.gin": 671_650,
    "imagenet32/flexnet5.gin": 498_596,
    "crossres/cifar10_flexnet7.gin": 671_650,
    "crossres/cifar10_flexnet7_gabor.gin": 671_650,
    "crossres/cifar10_flexnet7_gabor_mask.gin": 671_650,
    "crossres/cifar10_flexnet7_conv3.gin": 169_990,
    "crossres/cifar10_flexnet7_conv33.gin": 19_998_790,
    "crossres/cifar10_flexnet7_siren.gin": 627_970,
    "crossres/cifar10_flexnet7_ckconv_siren.gin": 627_910,
    "crossres/cifar10_resnet32.gin": 464_154,
    "crossres/cifar10_resnet44.gin": 658_586,
    "crossres/imagenet_flexnet5_gabor.gin": 498_596,
    "crossres/imagenet_resnet32.gin": 528_504,
    "scifar10/flextcn.gin": 107_588,
}

# Reduced size for the training runs: two steps of batch 2, tiny widths, 4 fake samples per
# split. Sizes that make the task (image resolution, sequence length, horizon) stay.
_WIDTH = {"hidden_channels": 4, "num_blocks": 1, "block_width_factors": None}
_TINY = [
    "Data.batch_size = 2", "Data.eval_batch_size = 4", "Schedule.epochs = 1", "Schedule.max_iter = 0",
    "Data.num_workers = 0", "Outputs.tensorboard = False", "Schedule.log_period = 1",
    "Runtime.num_threads = 1", "build_dataset.fake_length = 4", "CrossResolution.finetune_epochs = 1",
    *[f"{net}.{k} = {v}" for net in ("FlexNet", "CKCNN", "TCN", "FlexTCN", "CKTCN") for k, v in _WIDTH.items()],
    *[f"{net}.hidden_channels = 8" for net in ("MAGNet", "GaborNet", "FourierNet", "SIREN", "nSIREN", "MLP")],
    *[f"CIFARResNet{d}.base_width = 4" for d in ("", 20, 32, 44, 56, 110)],
]


def _query(name, default=None):
    try:
        return gin.query_parameter(name)
    except ValueError:
        return default


def _build_from_gin() -> torch.nn.Module:
    """The model the parsed config's Trainer would build: from the training split's metadata
    (no dataset files), whose options an operative config records under the ``train/`` scope."""
    with gin.config_scope("train"):
        metadata = describe_dataset(_query("Data.dataset"), **(_query("Data.dataset_options") or {}))
    return build_model(metadata)


@pytest.fixture(autouse=True)
def _keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def test_configs_are_found():
    assert {"base/train.gin", "quick/digits_flexnet.gin", "cifar10/flexnet7.gin"} <= set(ALL)
    assert len(EXPERIMENTS) >= 50
    assert set(EXPECTED_PARAMETERS) <= set(EXPERIMENTS), set(EXPECTED_PARAMETERS) - set(EXPERIMENTS)


@pytest.mark.parametrize("name", BLOCKS)
def test_building_block_parses(name):
    parse_config([name], finalize=False)
    assert gin.config_str().strip(), f"{name} binds nothing"


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_builds_at_full_size(name):
    parse_config([name], finalize=False)
    assert _query("Data.dataset"), f"{name}: Data.dataset is not bound"
    model = _build_from_gin()
    params = count_parameters(model)
    if name in EXPECTED_PARAMETERS:
        assert params == EXPECTED_PARAMETERS[name], f"{name}: {params:,} parameters"
    assert params > 0


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_experiment_trains_two_steps_and_operative_config_rebuilds_it(name, tmp_path):
    args = default_argument_parser().parse_args(
        ["--config-file", name, "--fake-data", "--output-dir", str(tmp_path), "--gin", "\n".join(_TINY)]
    )
    results = main(args)
    assert results, f"{name}: no results"
    cross_res = (tmp_path / "target").is_dir()
    final = tmp_path / ("target" if cross_res else "") / "model_final.pth"
    summary = results["target"] if cross_res else results
    assert summary["iterations"] == 2
    state = torch.load(final, map_location="cpu", weights_only=True)["model"]
    report = final.parent / "kernels"  # the end-of-training hook logs, not raises, its errors: check its files
    layers = json.loads((report / "kernel_sizes.json").read_text())
    plots = ["kernel_sizes.png", "kernels.png"] if any(layers.values()) else []
    assert all((report / p).is_file() for p in plots), f"{name}: kernel report incomplete: {sorted(os.listdir(report))}"
    assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), f"{name}: non-finite weights"

    gin.clear_config()
    parse_config([str(tmp_path / "operative_config.gin")], finalize=False)
    rebuilt = _build_from_gin()
    assert {k: tuple(v.shape) for k, v in rebuilt.state_dict().items()} == {k: tuple(v.shape) for k, v in state.items()}
    rebuilt.load_state_dict(state, strict=True)


@pytest.mark.parametrize("name", KERNEL_FITTING)
def test_kernel_fitting_config_runs_tiny(name, tmp_path):
    from PIL import Image

    from flexcore.fitting import main as fit_main

    image = tmp_path / "image.png"
    Image.new("RGB", (12, 12), (200, 40, 90)).save(image)
    tiny = ["fit_kernels.iterations = 2", "fit_kernels.size = 9", "fit_kernels.freqs = [4.0]",
            "fit_kernels.save_images = False", f"make_target.image = '{image}'"]
    out = tmp_path / "out"
    assert fit_main(["--config-file", name, "--output-dir", str(out), *[a for b in tiny for a in ("--gin", b)]]) == 0
    rows = json.loads((out / "results.json").read_text())
    assert rows and all(r["iterations"] == 2 for r in rows)


def test_readme_lists_every_experiment():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    listed = set(re.findall(r"--config-file ([\w./-]+\.gin)", readme))
    shipped = {n.replace(os.sep, "/") for n in list_config_files()}
    in_repo = {n for n in EXPERIMENTS if (REPO / "gin_configs" / n).is_file()}
    assert not in_repo - listed, f"experiments missing from the README's config table: {sorted(in_repo - listed)}"
    assert not listed - shipped, f"README names configs that do not exist: {sorted(listed - shipped)}"

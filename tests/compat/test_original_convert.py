"""tools/convert_checkpoint.py: original FlexConv checkpoints -> flexcore weights + gin."""
import json
import subprocess
import sys
from pathlib import Path

import gin
import pytest
import torch
import yaml

from flexcore.compat.original.convert import main, read_original_config
from flexcore.data.base import DatasetMetadata
from flexcore.engine.defaults import build_trainer, default_argument_parser, default_setup
from flexcore.modeling import build_model

REPO = Path(__file__).resolve().parents[2]


pytestmark = pytest.mark.usefixtures("single_thread")


def original_checkpoint(folder, case, tmp_path, prefix="module."):
    """The fixture's weights saved as the original trainer did (DataParallel prefix, optimiser, epoch)."""
    ref = torch.load(folder / f"{case}.pt", weights_only=True)
    path = tmp_path / f"{case}_original.pt"
    torch.save({
        "model": {prefix + k: v for k, v in ref["state_dict"].items()},
        "optimizer": {"state": {}, "param_groups": [{"lr": 0.01, "params": [0, 1, 2]}]},
        "lr_scheduler": {"last_epoch": 12, "base_lrs": [0.01]},
        "epoch": 12,
    }, path)
    return path, ref


def build_from_outputs(out_dir, in_channels, classes, shape):
    gin.clear_config()
    gin.parse_config_file(str(out_dir / "model.gin"))
    model = build_model(DatasetMetadata("converted", in_channels, classes, shape))
    ckpt = torch.load(out_dir / "model_final.pth", weights_only=True)
    model.load_state_dict(ckpt["model"])
    return model.eval(), ckpt


@pytest.mark.parametrize(
    "case,args,experiment",
    [
        ("flexnet7_cifar10", ["--horizon", "33", "--dataset", "CIFAR10"], "cifar10/flexnet7.gin"),
        ("flexnet7_cifar10_perturbed", ["--horizon", "33", "--dataset", "CIFAR10"], "cifar10/flexnet7.gin"),
        ("flextcn_scifar10", ["--dataset", "SCIFAR10"], "scifar10/flextcn.gin"),
    ],
)
def test_round_trip_reproduces_original_outputs(seed_fixtures, tmp_path, case, args, experiment):
    """The documented use end to end: the shipped experiment + the emitted model.gin, built by
    the Trainer, the converted weights loaded by ``--eval-only --weights``."""
    path, ref = original_checkpoint(seed_fixtures, case, tmp_path)
    out_dir = tmp_path / "out"
    assert main([str(path), "--output-dir", str(out_dir), *args]) == 0
    ckpt = torch.load(out_dir / "model_final.pth", weights_only=True)
    assert ckpt["epoch"] == 12 and "optimizer" not in ckpt

    gin.clear_config()
    cli = default_argument_parser().parse_args([
        "--config-file", experiment, "--config-file", str(out_dir / "model.gin"), "--fake-data",
        "--output-dir", str(tmp_path / "eval"), "--eval-only", "--weights", str(out_dir / "model_final.pth"),
        "--gin", "build_dataset.fake_length = 4", "--gin", "Outputs.tensorboard = False",
    ])
    trainer = build_trainer(cli, default_setup(cli))
    results = trainer.evaluate_only(cli.weights)  # loads strictly
    assert results["test"]["samples"] == 4
    model = trainer.model.eval()
    with torch.no_grad():
        out = model(ref["input"])
    assert ((out - ref["output"]).abs().max() / ref["output"].abs().max()).item() <= 1e-5


def test_config_file_gives_exact_architecture(seed_fixtures, tmp_path):
    meta = json.loads((seed_fixtures / "flexnet7_cifar10.json").read_text())
    path, ref = original_checkpoint(seed_fixtures, "flexnet7_cifar10", tmp_path, prefix="")
    # A W&B-style config.yaml: flat dotted keys, each {desc, value}.
    flat = {}
    for group, values in meta["config"].items():
        for key, value in values.items():
            flat[f"{group}.{key}"] = {"desc": None, "value": value}
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump(flat))
    assert read_original_config(str(config))["net"]["no_hidden"] == 24
    out_dir = tmp_path / "out"
    assert main([str(path), "--output-dir", str(out_dir), "--original-config", str(config)]) == 0
    text = (out_dir / "model.gin").read_text()
    assert "FlexNet.dropout = 0.2" in text and "FlexConv.horizon = 33" in text
    model, _ = build_from_outputs(out_dir, 3, 10, (32, 32))
    with torch.no_grad():
        out = model(ref["input"])
    assert ((out - ref["output"]).abs().max() / ref["output"].abs().max()).item() <= 1e-5


def synthetic_ckcnn(folder, layer_case, tmp_path):
    """An original-format CKCNN (4 channels, 1 block) whose three convs are a fixture layer."""
    from flexcore.modeling.backbones import FlexNet

    layer = torch.load(folder / f"{layer_case}.pt", weights_only=True)
    shell = FlexNet(4, 10, 2, conv=lambda i, o, d: torch.nn.Conv2d(i, o, 3, padding=1),
                    hidden_channels=4, num_blocks=1, block_width_factors=None)
    sd = {k: v for k, v in shell.state_dict().items() if "cconv" not in k}
    for prefix in ("cconv1.", "blocks.0.cconv1.", "blocks.0.cconv2."):
        sd.update({prefix + k: v for k, v in layer["state_dict"].items()})
    path = tmp_path / f"{layer_case}_ckcnn.pt"
    torch.save({"model": sd, "epoch": 1}, path)
    return path, layer


@pytest.mark.parametrize(
    "layer_case,kernel_net,expect_in_gin",
    [
        ("ckconv2d_siren", "SIREN", ["SIREN.omega_0 = 30.0", "SIREN.num_layers = 3"]),
        ("ckconv2d_gabor", "GaborNet", ["GaborNet.hidden_channels = 32"]),
        ("ckconv2d_fourier", "FourierNet", ["FourierNet.num_layers = 3"]),
        ("ckconv2d_mlp", "MLP", ["MLP.norm = None"]),
    ],
)
def test_kernel_families_are_inferred(seed_fixtures, tmp_path, layer_case, kernel_net, expect_in_gin):
    path, layer = synthetic_ckcnn(seed_fixtures, layer_case, tmp_path)
    out_dir = tmp_path / "out"
    assert main([str(path), "--output-dir", str(out_dir), "--horizon", "33"]) == 0
    text = (out_dir / "model.gin").read_text()
    assert "FlexNet.conv = @CKConv" in text and f"CKConv.kernel_net = @{kernel_net}" in text
    for line in expect_in_gin:
        assert line in text
    model, _ = build_from_outputs(out_dir, 4, 10, (32, 32))
    with torch.no_grad():
        model(torch.randn(1, 4, 32, 32))
    for conv in (model.cconv1, model.blocks[0].cconv1, model.blocks[0].cconv2):
        kernel = conv.conv_kernel
        expected = layer["kernel"]
        assert ((kernel - expected).abs().max() / expected.abs().max()).item() <= 1e-5


def test_cli_script_and_errors(seed_fixtures, tmp_path, capsys):
    path, _ = original_checkpoint(seed_fixtures, "flextcn_scifar10", tmp_path)
    out_dir = tmp_path / "tcn"
    script = [sys.executable, str(REPO / "tools" / "convert_checkpoint.py")]
    run = subprocess.run(script + [str(path), "--output-dir", str(out_dir)], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "TCN (FlexConv, MAGNet, GaussianMask), in 3, out 10, dim 1, 107,588 parameters" in run.stdout
    assert "not converted: lr_scheduler, optimizer" in run.stdout
    # refuses to overwrite
    assert main([str(path), "--output-dir", str(out_dir)]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main([str(path), "--output-dir", str(out_dir), "--overwrite"]) == 0
    # 2D file saved before any forward: the horizon is needed
    fn7, _ = original_checkpoint(seed_fixtures, "flexnet7_cifar10", tmp_path)
    assert main([str(fn7), "--output-dir", str(tmp_path / "x")]) == 2
    # corrupt and foreign files name themselves
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    assert main([str(bad), "--output-dir", str(tmp_path / "y")]) == 2
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": [1, 2, 3]}, foreign)
    assert main([str(foreign), "--output-dir", str(tmp_path / "z")]) == 2
    assert main([str(tmp_path / "missing.pt")]) == 2


class Marker:
    pass


def test_safe_loading_refuses_pickled_objects(seed_fixtures, tmp_path, capsys):
    ref = torch.load(seed_fixtures / "flextcn_scifar10.pt", weights_only=True)
    path = tmp_path / "with_object.pt"
    torch.save({"model": ref["state_dict"], "extra": Marker()}, path)
    assert main([str(path), "--output-dir", str(tmp_path / "o")]) == 2
    assert "--unsafe-load" in capsys.readouterr().err

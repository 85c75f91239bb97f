"""Kernel reports on real FlexConv models: tables match the layers, PNGs are written and readable."""
import json

import gin
import matplotlib.image as mpimg
import pytest
import torch

import flexcore.engine.trainer  # noqa: F401  (registers Trainer for the gin configs)
from flexcore.analysis.cli import main
from flexcore.analysis.kernels import kernel_size_table, kernel_stats, write_kernel_report
from flexcore.config import parse_config
from flexcore.layers import FlexConv, continuous_convs
from flexcore.modeling.backbones import CIFARResNet, FlexNet, FlexTCN

pytestmark = pytest.mark.usefixtures("single_thread")


def tiny_flexnet():
    torch.manual_seed(0)
    return FlexNet(3, 10, 2, conv=FlexConv, hidden_channels=4, num_blocks=2, block_width_factors=(1.0, 1, 2.0, 1))


def _png(path):
    image = mpimg.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.01  # not blank
    return image


def test_stats_and_table_describe_each_layer():
    model = tiny_flexnet().eval()
    model(torch.randn(1, 3, 17, 17))
    with torch.no_grad():
        model.blocks[1].cconv2.mask.sigma.copy_(torch.tensor([0.3, 0.2]))
    stats = kernel_stats(model)
    convs = list(continuous_convs(model))
    assert [s["layer"] for s in stats] == [name for name, _ in convs]
    for s, (_, conv) in zip(stats, convs):
        assert s["kernel_size"] == list(conv.kernel_size())
        assert s["grid_size"] == [17, 17]
        bounds = conv.mask.bounds()
        assert s["mask_lower"] == pytest.approx(bounds[:, 0].tolist())
        assert s["mask_width"] == pytest.approx(conv.mask.sigma.abs().tolist())
    assert stats[-1]["kernel_size"][0] > stats[-1]["kernel_size"][1] > stats[0]["kernel_size"][0]
    table = kernel_size_table(stats)
    assert "blocks.1.cconv2" in table and "0.300 x 0.200" in table and "Dims in order y/x" in table


def test_report_files_2d_with_two_checkpoints(tmp_path):
    model = tiny_flexnet().eval()
    model(torch.randn(1, 3, 17, 17))
    start = kernel_stats(model)
    with torch.no_grad():
        for _, conv in continuous_convs(model):
            conv.mask.sigma.mul_(3)
    written = write_kernel_report(model, str(tmp_path), label="final", extra_stats={"start": start})
    assert set(written) == {"table", "json", "sizes_plot", "kernels_plot", "masks_plot"}
    for key in ("sizes_plot", "kernels_plot", "masks_plot"):
        _png(written[key])
    data = json.loads((tmp_path / "kernels" / "kernel_sizes.json").read_text())
    assert list(data) == ["start", "final"]
    assert data["final"][0]["kernel_size"][0] > data["start"][0]["kernel_size"][0]
    assert model.training is False


def test_report_1d_causal_and_model_without_continuous_convs(tmp_path):
    model = FlexTCN(2, 3, 1, conv=FlexConv, hidden_channels=4, num_blocks=1)
    model(torch.randn(1, 2, 40))
    written = write_kernel_report(model, str(tmp_path / "seq"))
    _png(written["kernels_plot"])
    _png(written["masks_plot"])
    stats = kernel_stats(model)
    assert stats[0]["mask_mean"] == [1.0]  # causal masks start on the most recent step
    plain = write_kernel_report(CIFARResNet(3, 10, 2, depth=8, base_width=4), str(tmp_path / "plain"))
    assert set(plain) == {"table", "json"}
    assert "No continuous convs" in (tmp_path / "plain" / "kernels" / "kernel_sizes.txt").read_text()


def test_cli_kernels_from_checkpoints(tmp_path):
    config = tmp_path / "exp.gin"
    config.write_text(
        "build_model.backbone = @FlexTCN\nFlexTCN.hidden_channels = 4\nFlexTCN.num_blocks = 1\n"
        "FlexTCN.conv = @FlexConv\nData.dataset = 'AddingProblem'\nAddingProblem.seq_length = 24\n"
    )
    gin.clear_config()
    parse_config([str(config)], finalize=False)
    from flexcore.analysis.cli import load_analysis_setup

    setup = load_analysis_setup(fake_data=True)
    paths = []
    for i, sigma in enumerate([0.05, 0.4]):
        model = setup.build_model()
        for _, conv in continuous_convs(model):
            with torch.no_grad():
                conv.mask.sigma.fill_(sigma)
        paths.append(tmp_path / f"run{i}" / "model_final.pth")
        paths[-1].parent.mkdir()
        torch.save({"model": model.state_dict()}, paths[-1])
    gin.clear_config()
    out = tmp_path / "out"
    args = ["--config-file", str(config), "--fake-data", "--tasks", "kernels", "--output", str(out)]
    assert main(args + ["--weights", str(paths[0]), "--weights", str(paths[1])]) == 0
    data = json.loads((out / "kernels" / "kernel_sizes.json").read_text())
    assert list(data) == ["run0/model_final.pth", "run1/model_final.pth"]  # same file names: run folders shown
    assert data["run1/model_final.pth"][0]["kernel_size"][0] > data["run0/model_final.pth"][0]["kernel_size"][0]
    _png(out / "kernels" / "kernel_sizes.png")


def test_trainer_writes_kernel_report_and_profile(tmp_path):
    from flexcore.engine.trainer import Trainer

    gin.clear_config()
    parse_config([], [
        "Data.dataset = 'AddingProblem'", "AddingProblem.seq_length = 24", "build_model.backbone = @FlexTCN",
        "FlexTCN.conv = @FlexConv", "FlexConv.horizon = 25", "FlexTCN.hidden_channels = 4", "FlexTCN.num_blocks = 1",
        "Data.batch_size = 8", "Schedule.max_iter = 2", "Data.val_split = None", "Data.test_split = None",
        "Outputs.tensorboard = False", "Data.fake_data = True",
    ], finalize=False)
    (tmp_path / "run").mkdir()
    (tmp_path / "prof").mkdir()
    trainer = Trainer(str(tmp_path / "run"))
    trainer.resume_or_load(resume=False)
    trainer.train()
    data = json.loads((tmp_path / "run" / "kernels" / "kernel_sizes.json").read_text())
    assert list(data) == ["iter 1", "iter 2"]
    _png(tmp_path / "run" / "kernels" / "kernel_sizes.png")
    gin.clear_config()
    parse_config([], [
        "Data.dataset = 'AddingProblem'", "AddingProblem.seq_length = 24", "build_model.backbone = @FlexTCN",
        "FlexTCN.conv = @FlexConv", "FlexConv.horizon = 25", "FlexTCN.hidden_channels = 4", "FlexTCN.num_blocks = 1",
        "Data.batch_size = 8", "Schedule.max_iter = 10", "Data.fake_data = True", "Outputs.tensorboard = False",
    ], finalize=False)
    profiled = Trainer(str(tmp_path / "prof"), profile_steps=2).train()
    assert "aten::" in profiled["profile"]
    regions = (tmp_path / "prof" / "profile" / "regions.txt").read_text()
    assert "backbone.0.cconv1.kernel_net" in regions  # the trainer's profile labels layers too

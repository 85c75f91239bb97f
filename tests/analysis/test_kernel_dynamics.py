"""Kernel dynamics for TensorBoard: layer statistics, images, histograms, and a real run's event file."""
import io
import logging
import math
from contextlib import contextmanager

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from flexcore.analysis.kernel_dynamics import kernel_image, mask_image, put_kernel_scalars
from flexcore.analysis.hooks import KernelSizeLogger
from flexcore.engine.hooks import PeriodicWriter
from flexcore.engine.train_loop import TrainerBase
from flexcore.layers import FlexConv, GaussianMask, HannMask, NoMask, SigmoidMask, continuous_convs, refresh_crops
from flexcore.modeling.backbones import FlexNet
from flexcore.utils.events import CommonMetricPrinter, EventStorage, TensorboardWriter, peak_gpu_memory_mib
from flexcore.utils.host_sync import count_host_reads

pytestmark = pytest.mark.usefixtures("single_thread")

GREY = np.array([209, 209, 209])  # positions the crop leaves out, as drawn (0.82 * 255)


def tiny_flexnet():
    torch.manual_seed(0)
    model = FlexNet(3, 10, 2, conv=FlexConv, hidden_channels=4, num_blocks=2, block_width_factors=(1.0, 1, 2.0, 1))
    model(torch.randn(2, 3, 17, 17))  # fixes the grids
    return model


@pytest.mark.parametrize("mask, width", [(GaussianMask, "sigma"), (SigmoidMask, "width"), (HannMask, "width")])
def test_mask_describe_gives_parameters_and_support_per_dim(mask, width):
    m = mask(2)
    with torch.no_grad():
        getattr(m, width).copy_(torch.tensor([-0.3, 0.2]))  # the sign of a width is irrelevant
        m.mean.copy_(torch.tensor([0.1, -0.1]))
    described = m.describe()
    assert set(described) == {"mean", width, "lower", "upper"}
    assert described[width].tolist() == pytest.approx([0.3, 0.2])
    assert described["mean"].tolist() == pytest.approx([0.1, -0.1])
    assert torch.equal(torch.stack([described["lower"], described["upper"]], 1), m.bounds())
    assert NoMask(1).describe() == {}


def test_energy_outside_crop_matches_the_uncropped_kernel():
    torch.manual_seed(0)
    conv = FlexConv(2, 3, 2, horizon=17, fft=False)
    conv(torch.randn(1, 2, 16, 16))
    with torch.no_grad():
        conv.mask.sigma.copy_(torch.tensor([0.15, 0.3]))
    crop = conv.crop()
    assert conv.kernel_size() != (17, 17)
    conv.dynamic_cropping = False
    with torch.no_grad():
        full = conv.eval().generate_kernel().square()
    conv.dynamic_cropping = True
    expected = 1 - float(full[(slice(None), slice(None), *crop)].sum() / full.sum())
    stats = conv.train().kernel_stats()
    assert stats["energy_outside_crop"] == pytest.approx(expected, rel=1e-4)
    assert 0 < expected < 0.05  # the threshold 0.1 drops little energy
    assert stats["kernel_size"] == [c.stop - c.start for c in crop] and stats["grid_size"] == [17, 17]
    assert stats["mask"]["sigma"] == pytest.approx([0.15, 0.3])
    assert conv.training and conv.kernel_net.training  # modes restored
    conv.dynamic_cropping = False
    assert float(conv.energy_outside_crop()) == 0.0


def test_last_path_follows_the_convolution_path():
    x = torch.randn(1, 2, 12, 12)
    for fft, path in ((True, "fft"), (False, "direct")):
        conv = FlexConv(2, 2, 2, horizon=13, fft=fft)
        assert conv.last_path is None
        conv(x)
        assert conv.last_path == path


def test_scalars_read_the_device_once_and_match_the_layers():
    model = tiny_flexnet()
    refresh_crops(model)  # the kernel-size logger does this first
    with EventStorage() as storage:
        with count_host_reads(model) as reads:
            assert put_kernel_scalars(model, storage, timing=False) == 5
        assert reads.count == 1, reads.report()  # every layer's values in one copy
        latest = storage.latest()
        for name, conv in continuous_convs(model):
            for d in range(2):
                assert latest[f"mask_sigma/{name}/{d}"][0] == pytest.approx(float(conv.mask.sigma[d].detach().abs()))
                assert latest[f"mask_mean/{name}/{d}"][0] == pytest.approx(float(conv.mask.mean[d].detach()))
            assert latest[f"energy_outside_crop/{name}"][0] == pytest.approx(float(conv.energy_outside_crop()))
        assert latest["conv_path/fft"][0] + latest["conv_path/direct"][0] == 5
        storage.put_scalar("time", 0.5)
        put_kernel_scalars(model, storage)
        latest = storage.latest()
        assert latest["kernel_generation/ms"][0] > 0
        assert latest["kernel_generation/share"][0] == pytest.approx(latest["kernel_generation/ms"][0] / 500, rel=1e-6)
    assert all(p.grad is None for p in model.parameters())  # timing took gradients without touching .grad


def _tile(image, count):
    """First of ``count`` equal tiles laid side by side with 3-pixel gaps, as HWC uint8."""
    hwc = (image.permute(1, 2, 0).numpy() * 255).round().astype(int)
    width = (hwc.shape[1] - 3 * (count - 1)) // count
    return hwc[:, :width]


def test_images_show_the_crop_grow():
    torch.manual_seed(0)
    conv = FlexConv(2, 2, 2, horizon=9, fft=False)
    conv(torch.randn(1, 2, 8, 8))
    kept = []
    for sigma in (0.1, 0.3):
        with torch.no_grad():
            conv.mask.sigma.fill_(sigma)
        image = kernel_image(conv, num_pairs=2)
        tile = _tile(image, 2)
        grey = (np.abs(tile - GREY) <= 1).all(-1)
        h, w = conv.kernel_size()
        scale = tile.shape[0] // 9
        assert scale * 9 == tile.shape[0] >= 128  # small grids scaled up, one block per grid point
        assert (~grey).sum() == h * w * scale * scale  # the kept positions, in colour
        kept.append(h * w)
        masked = mask_image(conv).permute(1, 2, 0).numpy()
        red = (masked[..., 0] > 0.85) & (masked[..., 1] < 0.15)
        side = h * scale  # a square crop: its border is red
        assert red.sum() == 4 * side - 4
    assert kept[1] > kept[0]


def test_histograms_and_images_in_the_storage():
    values = torch.tensor([0.0, 1.0, 1.0, 3.0])
    with EventStorage() as storage:
        storage.put_histogram("h", values, bins=3)
        storage.put_image("img", torch.rand(3, 4, 5))
        with pytest.raises(ValueError, match=r"expected \(C, H, W\)"):
            storage.put_image("bad", torch.rand(4, 5))
        (hist,) = storage.pop_histograms()
        assert hist["bucket_counts"] == [1.0, 2.0, 1.0] and hist["num"] == 4
        assert (hist["min"], hist["max"], hist["sum"], hist["sum_squares"]) == (0.0, 3.0, 5.0, 11.0)
        assert hist["bucket_limits"] == pytest.approx([1.0, 2.0, 3.0])
        storage.put_histogram("same", torch.full((5,), 1e6), bins=4)  # one value, large: no NaN, limits increase
        (same,) = storage.pop_histograms()
        assert same["bucket_counts"] == [5.0, 0.0, 0.0, 0.0] and same["min"] == 1e6 < same["bucket_limits"][0]
        (name, array, step), = storage.pop_images()
        assert name == "img" and array.dtype == np.uint8 and array.shape == (3, 4, 5) and step == 0
        assert storage.pop_images() == [] and storage.pop_histograms() == []
        for i in range(600):  # nobody writes them: only the latest are kept
            storage.put_histogram("h", values)
        assert len(storage.pop_histograms()) == 256


class _Loop(TrainerBase):
    def __init__(self, model):
        super().__init__()
        self.model = model
        self.opt = torch.optim.SGD(model.parameters(), lr=0.05)

    def run_step(self):
        self.opt.zero_grad()
        self.model(torch.randn(2, 3, 17, 17)).square().mean().backward()
        self.opt.step()


def test_logger_reads_nothing_between_its_periods_and_keeps_a_size_history(tmp_path):
    model = tiny_flexnet()
    loop = _Loop(model)
    hook = KernelSizeLogger(period=4)
    loop.register_hooks([hook, PeriodicWriter([TensorboardWriter(str(tmp_path))], period=100)])  # keeps images
    reads_per_step = []
    with EventStorage() as storage:
        loop.storage, loop.max_iter, loop.start_iter = storage, 8, 0
        for it in range(8):
            loop.iter = storage.iter = it
            loop.run_step()
            refresh_crops(model)  # what the trainer's step does first
            with count_host_reads(model) as reads:
                hook.after_step()
            reads_per_step.append(reads.count)
        assert [n > 0 for n in reads_per_step] == [True, False, False, True, False, False, False, True]
        assert sorted({n for n, _, _ in storage.pop_images()}) == sorted(
            f"{kind}/{name}" for name, _ in continuous_convs(model) for kind in ("kernels", "masks"))
        without_writer, bare = KernelSizeLogger(period=4), _Loop(model)
        bare.register_hooks([without_writer])
        bare.storage, bare.iter, bare.max_iter = storage, 0, 8
        without_writer.after_step()
        assert storage.pop_images() == []  # nobody would write them: not drawn
    assert set(hook.history) == {name for name, _ in continuous_convs(model)}
    assert all(points[0][0] == 0 and len(points[0]) == 3 for points in hook.history.values())
    restored = KernelSizeLogger()
    restored.load_state_dict(hook.state_dict())
    assert restored.history == hook.history


@contextmanager
def flexcore_messages():
    """The flexcore logger's messages (a handler on it: the run's setup may stop propagation)."""
    messages = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: messages.append(record.getMessage())
    log = logging.getLogger("flexcore")
    old_level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield messages
    finally:
        log.removeHandler(handler)
        log.setLevel(old_level)


def test_peak_gpu_memory_is_absent_on_the_cpu():
    assert not torch.cuda.is_available() or not torch.cuda.is_initialized() or peak_gpu_memory_mib() is not None
    loop = TrainerBase()
    loop.register_hooks([PeriodicWriter([], period=1)])
    with EventStorage() as storage:
        loop.storage, loop.max_iter, loop.iter = storage, 2, 0
        loop.after_step()
        if peak_gpu_memory_mib() is None:
            assert "peak_memory_mib" not in storage.histories()
        printer = CommonMetricPrinter(max_iter=2)
        storage.put_scalar("loss", 1.0)
        with flexcore_messages() as messages:
            printer.write()
            storage.put_scalar("peak_memory_mib", 1234.4, smoothing_hint=False)
            printer.write()
    lines = [m for m in messages if "iter:" in m]
    assert "max_mem" not in lines[0] and lines[1].endswith("max_mem: 1234M")


def _decode(event):
    return mpimg.imread(io.BytesIO(event.encoded_image_string), format="png")


def test_quick_start_event_file_holds_kernel_dynamics(tmp_path):
    from flexcore.engine.defaults import default_argument_parser, main

    args = default_argument_parser().parse_args([
        "--output-dir", str(tmp_path),
        "--gin", "Schedule.epochs = 0", "--gin", "Schedule.max_iter = 6", "--gin", "Schedule.period_unit = 'iter'",
        "--gin", "Schedule.eval_period = 3", "--gin", "Schedule.log_period = 2", "--gin", "Schedule.checkpoint_period = 0",
    ])
    main(args)
    events = EventAccumulator(str(tmp_path), size_guidance={"images": 0, "histograms": 0, "scalars": 0})
    events.Reload()
    tags = events.Tags()
    layers = ["cconv1", "blocks.0.cconv1", "blocks.0.cconv2", "blocks.1.cconv1", "blocks.1.cconv2"]
    final = torch.load(tmp_path / "model_final.pth", weights_only=True)["model"]
    for layer in layers:
        # The first step, after each validation (iterations 3 and 6): the slider's three positions.
        for kind in ("kernels", "masks"):
            images = events.Images(f"{kind}/{layer}")
            assert [e.step for e in images] == [0, 2, 5]
            picture = _decode(images[-1])
            assert picture.shape[0] >= 128 and picture[..., :3].std() > 0.01
        sigma = final[f"{layer}.mask.sigma"].abs()
        for d in range(2):
            series = events.Scalars(f"mask_sigma/{layer}/{d}")
            assert [e.step for e in series] == [1, 3, 5]
            assert series[-1].value == pytest.approx(float(sigma[d]), rel=1e-6)
            assert f"mask_mean/{layer}/{d}" in tags["scalars"]
        energy = events.Scalars(f"energy_outside_crop/{layer}")[-1].value
        assert 0 <= energy < 0.05
        histogram = events.Histograms(f"kernel_values/{layer}")[-1].histogram_value
        size = [events.Scalars(f"kernel_size/{layer}/{d}")[-1].value for d in range(2)]
        assert histogram.num == (1 if layer == "cconv1" else 16) * 16 * size[0] * size[1]
    sigmas = events.Histograms("mask_sigma")
    assert [e.step for e in sigmas] == [0, 2, 5] and sigmas[-1].histogram_value.num == 2 * len(layers)
    paths = events.Scalars("conv_path/fft")[-1].value + events.Scalars("conv_path/direct")[-1].value
    assert paths == len(layers)
    share = events.Scalars("kernel_generation/share")[-1].value
    assert 0 < share <= 1
    assert "peak_memory_mib" not in tags["scalars"]  # CPU run: no GPU memory to report
    console = [line for line in (tmp_path / "log.txt").read_text().splitlines() if " iter: " in line]
    assert len(console) == 3 and not any("max_mem" in line for line in console)
    kernels = tmp_path / "kernels"
    assert (kernels / "kernel_size_history.json").exists() and (kernels / "kernel_sizes.png").exists()
    assert math.isfinite(share)


def test_trainer_builds_the_logger_from_its_gin_bindings(tmp_path):
    import gin

    from flexcore.config import parse_config
    from flexcore.engine.trainer import Trainer

    gin.clear_config()
    parse_config(["quick/digits_flexnet.gin"], ["Schedule.max_iter = 1", "Schedule.epochs = 0",
                                                "KernelSizeLogger.images = False", "KernelSizeLogger.num_pairs = 2"],
                 finalize=False)
    try:
        trainer = Trainer(str(tmp_path))
    finally:
        gin.clear_config()
    (hook,) = [h for h in trainer.hooks if isinstance(h, KernelSizeLogger)]
    assert (hook.images, hook.num_pairs, hook.dynamics, hook.period) == (False, 2, True, 50)


def test_images_of_1d_and_3d_layers():
    torch.manual_seed(0)
    volume = FlexConv(2, 2, 3, horizon=5, fft=False)
    volume(torch.randn(1, 2, 4, 4, 4))
    image = kernel_image(volume, num_pairs=2)  # the central plane of each slice, side by side
    assert image.shape[0] == 3 and image.shape[1] == 5 * math.ceil(128 / 5)
    assert mask_image(volume).shape == (3, image.shape[1], image.shape[1])
    sequence = FlexConv(2, 3, 1, causal=True, horizon=401, fft=False)
    sequence(torch.randn(1, 2, 400))
    strips = kernel_image(sequence, num_pairs=3)  # one strip per slice, long grids averaged down
    assert strips.shape[2] == 256 and strips.shape[1] > strips.shape[2] / 20
    assert mask_image(sequence).shape[2] == 256

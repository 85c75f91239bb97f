"""Trainer accelerators (amp, channels-last, torch.compile) and host-device syncs per step.

Real short trainings of a small FlexNet on the embedded digits data (CPU).
"""
import functools
import math

import gin
import pytest
import torch

from flexcore.config import parse_config
from flexcore.engine.accelerate import amp_dtype, is_compile_error
from flexcore.engine.trainer import Trainer
from flexcore.layers import FlexConv, GaussianMask, refresh_crops
from flexcore.layers import functional as FC
from flexcore.modeling.backbones.flexnet import FlexNet
from flexcore.registry import KERNEL_NETS
from flexcore.utils.events import EventStorage
from flexcore.utils.host_sync import count_host_reads

QUICK = [
    "Schedule.epochs = 0",
    "Schedule.max_iter = 3",
    "Data.batch_size = 16",
    "Data.val_split = None",
    "Data.test_split = None",
    "Outputs.tensorboard = False",
    "Schedule.log_period = 1",
    "FlexNet.hidden_channels = 8",
    "MAGNet.hidden_channels = 8",
    "FlexNet.dropout = 0.0",
]


def _trainer(tmp_path, bindings=(), **kwargs):
    gin.clear_config()
    parse_config(["quick/digits_flexnet.gin"], QUICK + list(bindings), finalize=False)
    return Trainer(str(tmp_path), **kwargs)


def _steps(trainer, n=3):
    """Run ``n`` training steps; return the logged losses."""
    losses = []
    with EventStorage() as storage:
        trainer._trainer.storage = storage
        for i in range(n):
            trainer._trainer.iter = storage.iter = i
            trainer._trainer.run_step()
            losses.append(storage.history("loss").latest())
    return losses


def _loader(trainer):
    from flexcore.data.samplers import build_train_loader

    trainer._trainer.data_loader = build_train_loader(trainer.train_set, trainer.cfg.data.batch_size, seed=0)
    trainer._trainer.reset_data_iter()


def _run(tmp_path, bindings=(), **kwargs):
    trainer = _trainer(tmp_path, bindings, **kwargs)
    _loader(trainer)
    return trainer, _steps(trainer)


def test_bf16_and_channels_last_train_close_to_fp32(tmp_path):
    _, ref = _run(tmp_path / "fp32")
    _, bf16 = _run(tmp_path / "bf16", amp="bf16")
    trainer, cl = _run(tmp_path / "cl", channels_last=True)
    assert all(math.isfinite(v) for v in ref + bf16 + cl)
    # Same data and init: bf16 rounding moves the loss by well under 1 %; channels-last not at all.
    assert bf16 == pytest.approx(ref, rel=2e-2)
    assert cl == pytest.approx(ref, rel=1e-4)
    conv_weights = [p for p in trainer.model.parameters() if p.dim() == 4]
    assert conv_weights and all(p.is_contiguous(memory_format=torch.channels_last) for p in conv_weights)


def test_fp16_amp_scales_the_loss(tmp_path):
    trainer, losses = _run(tmp_path, amp="fp16")
    assert trainer._trainer.grad_scaler is not None
    assert all(math.isfinite(v) for v in losses)


def test_fp16_gradient_scale_survives_a_checkpoint(tmp_path):
    trainer, _ = _run(tmp_path, amp="fp16")
    scaler = trainer._trainer.grad_scaler
    scaler.update(1024.0)  # a scale the default (65536) would not reach by itself
    state = trainer.state_dict()
    assert state["grad_scaler"]["scale"] == 1024.0
    path = trainer.checkpointer.save("model_scaler")
    fresh = _trainer(tmp_path / "resumed", amp="fp16")
    assert fresh._trainer.grad_scaler.get_scale() != 1024.0
    fresh.checkpointer.load(path)  # safe loading (weights_only) reads the scaler state
    assert fresh._trainer.grad_scaler.get_scale() == 1024.0


def test_process_settings_hold_during_the_run_and_are_restored_after(tmp_path):
    """Threads, FFT autotune and cuDNN switches are the run's while it trains, the caller's after."""
    from flexcore.engine.train_loop import HookBase
    from flexcore.layers import fft_cost

    seen = {}

    class Record(HookBase):
        def after_step(self):
            seen.update(threads=torch.get_num_threads(), autotune=fft_cost.fft_autotune_enabled(),
                        benchmark=torch.backends.cudnn.benchmark)

    threads, benchmark = torch.get_num_threads(), torch.backends.cudnn.benchmark
    autotune = fft_cost.fft_autotune_enabled()
    run_threads = 1 if threads > 1 else 2
    trainer = _trainer(tmp_path, ["Runtime.fft_autotune = True", f"Runtime.num_threads = {run_threads}"],
                       extra_hooks=[Record])
    assert (torch.get_num_threads(), fft_cost.fft_autotune_enabled()) == (threads, autotune)
    trainer.train()
    assert seen == {"threads": run_threads, "autotune": True, "benchmark": True}
    assert torch.get_num_threads() == threads
    assert fft_cost.fft_autotune_enabled() == autotune
    assert torch.backends.cudnn.benchmark == benchmark
    assert not torch.are_deterministic_algorithms_enabled()
    trainer.evaluate_loaded()
    assert torch.get_num_threads() == threads and fft_cost.fft_autotune_enabled() == autotune


def test_a_run_evaluates_with_the_cost_models_picks_unless_autotune_is_asked(tmp_path):
    """Timed inference picks stay out of a default run (its metrics repeat to the bit, resumed
    or not) and come back after it."""
    from flexcore.engine.train_loop import HookBase
    from flexcore.layers import fft_cost

    seen = []

    class Record(HookBase):
        def after_step(self):
            seen.append(fft_cost.fft_autotune_enabled(training=False))

    measured_outside = fft_cost.fft_autotune_enabled(training=False)
    trainer = _trainer(tmp_path, [], extra_hooks=[Record])
    trainer.train()
    assert seen and not any(seen)
    assert fft_cost.fft_autotune_enabled(training=False) == measured_outside


def test_deterministic_run_is_restored_after_and_excludes_fft_autotune(tmp_path):
    from flexcore.layers import fft_cost

    trainer = _trainer(tmp_path, ["Runtime.deterministic = True"])
    trainer.train()
    assert not torch.are_deterministic_algorithms_enabled()
    with pytest.raises(ValueError, match="fft_autotune = True .*Runtime.deterministic = True"):
        _trainer(tmp_path / "det", ["Runtime.fft_autotune = True", "Runtime.deterministic = True"])
    assert not fft_cost.fft_autotune_enabled()


def test_amp_is_gin_configurable_and_checked(tmp_path):
    trainer, _ = _run(tmp_path, ["Runtime.amp = 'bf16'"])
    assert trainer._trainer.amp_dtype == torch.bfloat16
    with pytest.raises(ValueError, match="Runtime.amp must be None, 'bf16' or 'fp16'"):
        amp_dtype("int8", torch.device("cpu"))


@pytest.mark.slow
def test_compile_trains_and_keeps_checkpoint_keys(tmp_path):
    # The eager backend runs dynamo's tracing without the minutes of C++ codegen of inductor.
    small = ["FlexNet.num_blocks = 1"]
    _, ref = _run(tmp_path / "eager", small)
    trainer, compiled = _run(tmp_path / "compiled", small + ["Runtime.compile = True", "Runtime.compile_backend = 'eager'"])
    assert trainer.model._compiled_call_impl is not None
    assert compiled == pytest.approx(ref, rel=1e-4)
    assert not any(k.startswith("_orig_mod") for k in trainer.model.state_dict())


@pytest.mark.slow
def test_compile_failure_falls_back_to_eager_with_a_warning(tmp_path, caplog):
    def broken_backend(gm, example_inputs):
        raise RuntimeError("simulated compiler crash")

    small = ["FlexNet.num_blocks = 1"]
    _, ref = _run(tmp_path / "eager", small)
    trainer = _trainer(tmp_path / "broken", small, compile=True)
    trainer.model.compile(backend=broken_backend)
    _loader(trainer)
    with caplog.at_level("WARNING", logger="flexcore"):
        losses = _steps(trainer)
    assert "torch.compile failed on the first step" in caplog.text
    assert trainer.model._compiled_call_impl is None
    assert losses == pytest.approx(ref, rel=1e-4)

    strict = _trainer(tmp_path / "strict", small, compile=True, compile_fallback=False)
    strict.model.compile(backend=broken_backend)
    _loader(strict)
    with pytest.raises(RuntimeError, match="Runtime.compile = False"):
        _steps(strict, 1)


def test_model_errors_are_not_taken_for_compile_errors():
    assert not is_compile_error(ValueError("bad shape"))


# -- FFT convolution under autocast ------------------------------------------------------
def test_fft_conv_runs_in_float32_under_autocast():
    torch.manual_seed(0)
    x = torch.randn(2, 4, 12, 12)
    w = torch.randn(5, 4, 9, 9) / 18
    ref = FC.conv(x, w, None, 1, "same", fft=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        same = FC.conv(x, w, None, 1, "same", fft=True)
        half_in = FC.conv(x.bfloat16(), w, None, 1, "same", fft=True)
    assert same.dtype == torch.float32
    torch.testing.assert_close(same, ref, rtol=1e-5, atol=1e-5)  # no bf16 anywhere inside
    # A bf16 input is transformed in float32: only the input's and the output's rounding remain.
    expected = FC.conv(x.bfloat16().float(), w, None, 1, "same", fft=True)
    assert half_in.dtype == torch.bfloat16
    torch.testing.assert_close(half_in.float(), expected, rtol=1e-2, atol=1e-2)


# -- host-device synchronisation ---------------------------------------------------------
def _flexnet(num_blocks):
    net = functools.partial(KERNEL_NETS.get("MAGNet"), hidden_channels=8)
    conv = functools.partial(FlexConv, kernel_net=net, mask=GaussianMask, horizon=9)
    return FlexNet(1, 10, 2, conv=conv, hidden_channels=8, num_blocks=num_blocks, block_width_factors=None)


@pytest.mark.parametrize("num_blocks", [1, 3])
def test_flexnet_training_forward_reads_the_device_once_per_step(num_blocks):
    torch.manual_seed(0)
    model = _flexnet(num_blocks)
    x = torch.randn(4, 1, 8, 8)
    model(x)  # the first forward fixes the grids
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    model(x).sum().backward()
    for _ in range(2):
        opt.step()  # masks move: every crop is stale
        with count_host_reads(model, x) as unbatched:
            model(x).sum().backward()
        opt.step()
        # Without the batched read each FlexConv reads its own bounds back: one sync per layer.
        assert unbatched.count == 2 * num_blocks + 1, unbatched.report()
        with count_host_reads(model, x) as reads:
            refresh_crops(model)
            model(x).sum().backward()
        assert reads.count == 1, reads.report()
        assert reads.reads[0][1].split(":")[0].endswith("traversal.py")  # the one batched copy
        assert model.cconv1.mask.sigma.grad is not None


def test_trainer_step_syncs_twice_whatever_the_depth(tmp_path):
    counts = {}
    for blocks in (1, 3):
        trainer = _trainer(tmp_path / str(blocks), [f"FlexNet.num_blocks = {blocks}"])
        _loader(trainer)
        _steps(trainer, 1)  # fixes the grids
        with EventStorage() as storage:
            trainer.storage = trainer._trainer.storage = storage
            with count_host_reads(trainer.model) as reads:
                trainer.before_step()  # the hooks' part of the step: RefreshCrops
                trainer.run_step()
        counts[blocks] = reads.count
        # crops (all layers at once, RefreshCrops) + the logged scalars (loss, accuracy, NaN check)
        assert reads.count == 2, reads.report()
        assert reads.reads[0][1].split(":")[0].endswith("traversal.py"), reads.report()
        # The kernel-size logger reads all crops at once too, and the next step then reads none.
        size_logger = next(h for h in trainer.hooks if type(h).__name__ == "KernelSizeLogger")
        with count_host_reads(trainer.model) as reads:
            assert len(size_logger._sizes()) == 2 * blocks + 1
            refresh_crops(trainer.model)
        assert reads.count == 1, reads.report()
    assert counts[1] == counts[3]


def test_host_read_counter_counts_real_reads():
    w = torch.nn.Parameter(torch.ones(3))
    host = torch.arange(3.0)
    with count_host_reads(w) as reads:
        float((w * 2).sum())
        (w + 1).tolist()
        w.detach().cpu()
        float(host.sum())  # a host tensor: no sync
        bounds = w.detach().cpu()
        float(bounds[0])  # a host copy: no sync
    assert [k for k, _ in reads.reads] == ["float", "tolist", "cpu", "cpu"]

"""The 'auto' cost model: its features, its mode switch (training vs inference) and its fit."""
import math

import pytest
import torch

from flexcore.benchmarks.layers import fit_cost_models
from flexcore.layers import fft_cost
from flexcore.layers import functional as FC
from flexcore.layers.fft_cost import CostModel, cost_model, direct_features, fft_features, predict_seconds


def test_direct_features_put_macs_in_the_kernel_size_band():
    macs = 2 * 8 * 4 * 16 * 16
    small = direct_features(2, 4, 8, (16, 16), (16, 16), (5, 5))
    assert small[0] == macs * 25 and small[1] == macs * 25 / 4 and not any(small[2:6])
    medium = direct_features(2, 4, 8, (16, 16), (16, 16), (13, 9))  # largest side picks the band
    assert medium[2] == macs * 117 and not medium[0] and not medium[4]
    large = direct_features(2, 4, 8, (16, 16), (16, 16), (3, 33))
    assert large[4] == macs * 99
    assert small[-2:] == [2 * (4 * 256 + 8 * 256), 1.0]


def test_fft_features_count_transforms_mix_and_low_rank_gemm():
    sizes = (36, 36)
    points, freqs = 36 * 36, 36 * 19
    n_log_n = points * math.log2(points)
    full = fft_features(16, 64, 64, sizes)
    assert full[0] == pytest.approx(16 * 64 * 2 * n_log_n) and full[1] == pytest.approx(64 * 64 * n_log_n)
    assert full[2] == 16 * 64 * 64 * freqs
    assert full[3] == freqs * (16 * 64 * 2 + 64 * 64) and full[4] == 1.0
    low_rank = fft_features(16, 64, 64, sizes, kernel_maps=33)
    assert low_rank[0] == full[0] and low_rank[1] == pytest.approx(33 * n_log_n)
    assert low_rank[2] == (16 * 64 * 64 + 33 * 64 * 64 / 2) * freqs  # + the spectrum GEMM
    cached = fft_features(16, 64, 64, sizes, kernel_maps=0)
    assert cached[1] == 0 and cached[2] == full[2]


def test_models_exist_for_every_mode_and_unknown_devices_fall_back():
    for device in ("cpu", "cuda"):
        for dims in (1, 2, 3):
            for training in (True, False):
                assert isinstance(cost_model(device, dims, training), CostModel)
    assert cost_model("mps", 2, True) is cost_model("cuda", 2, True)
    assert cost_model("cpu", 3, True) is cost_model("cpu", 2, True)


def test_predictions_follow_the_measured_crossover_on_cpu():
    """Far from the crossover the model must be right: tiny kernels direct, huge ones FFT."""
    pads = lambda k: FC.resolve_padding("same", (k, k))  # noqa: E731
    for training in (True, False):
        direct, fft = predict_seconds(FC.ConvShape(16, 64, 64, (32, 32), (3, 3), pads(3)), training=training)
        assert direct < fft
        direct, fft = predict_seconds(FC.ConvShape(16, 64, 64, (32, 32), (33, 33), pads(33)), training=training)
        assert fft < direct / 5
    assert predict_seconds(FC.ConvShape(2, 4, 4, (8, 8), (33, 33), [(0, 0), (0, 0)])) == (math.inf, math.inf)


def test_conv_auto_uses_the_training_model_only_when_a_gradient_flows(monkeypatch):
    """Under no_grad (or without inputs needing grad) 'auto' asks the inference model."""
    favour_fft = CostModel((1.0,) * 6 + (0.0, 0.0), (0.0,) * 5)
    favour_direct = CostModel((0.0,) * 8, (1.0, 1.0, 1.0, 0.0, 1.0))
    monkeypatch.setitem(fft_cost.COST_MODELS, ("cpu", 2, "train"), favour_fft)
    monkeypatch.setitem(fft_cost.COST_MODELS, ("cpu", 2, "eval"), favour_direct)
    calls = []
    real_fft = FC.conv_fft
    monkeypatch.setattr(FC, "conv_fft", lambda *a, **k: calls.append("fft") or real_fft(*a, **k))
    x, w = torch.randn(2, 3, 12, 12), torch.randn(4, 3, 5, 5)
    FC.conv(x, w, fft="auto")
    with torch.no_grad():
        FC.conv(x, w.requires_grad_(), fft="auto")
    assert calls == []
    FC.conv(x, w, fft="auto").sum().backward()
    assert calls == ["fft"] and w.grad is not None


def _synthetic_records(model_train: CostModel, model_eval: CostModel):
    records = []
    for batch, channels in ((2, 4), (4, 16), (8, 8)):
        for n in (8, 16, 32):
            for k in (3, 5, 7, 9, 13, 17, 25, 33):
                if k > 2 * n + 1:
                    continue
                pads = FC.resolve_padding("same", (k, k))
                record = {"batch": batch, "channels": channels, "input": [n, n], "kernel": [k, k]}
                for mode, model in (("train", model_train), ("eval", model_eval)):
                    d = model.direct_seconds(direct_features(batch, channels, channels, (n, n), (n, n), (k, k)))
                    f = model.fft_seconds(fft_features(batch, channels, channels, FC.fft_sizes((n, n), (k, k), pads)))
                    record[f"spatial_{mode}"], record[f"fft_{mode}"] = d, f
                records.append(record)
    return records


def test_fit_recovers_the_constants_that_generated_the_times():
    truth_train = CostModel((5e-11, 2e-10, 6e-11, 6e-10, 9e-11, 2e-9, 1e-9, 5e-4), (2e-10, 1e-9, 3e-10, 2e-8, 8e-4))
    truth_eval = CostModel((1e-11, 7e-11, 1e-11, 6e-10, 2e-11, 5e-10, 6e-10, 2e-4), (1e-10, 5e-11, 2e-10, 8e-9, 3e-4))
    models, quality = fit_cost_models(_synthetic_records(truth_train, truth_eval))
    for mode, truth in (("train", truth_train), ("eval", truth_eval)):
        fitted = models[("cpu", 2, mode)]
        assert fitted.direct == pytest.approx(truth.direct, rel=1e-4)
        assert fitted.fft == pytest.approx(truth.fft, rel=1e-4)
    assert [row[5] for row in quality] == [pytest.approx(1.0), pytest.approx(1.0)]  # every pick the faster path


@pytest.fixture
def autotune():
    fft_cost.clear_fft_autotune()
    fft_cost.set_fft_autotune(True)
    yield
    fft_cost.set_fft_autotune(False)
    fft_cost.clear_fft_autotune()


def test_autotune_measures_close_calls_once_and_keeps_the_global_rng(autotune, monkeypatch):
    pads = FC.resolve_padding("same", (9, 9))
    shape = FC.ConvShape(2, 8, 8, (32, 32), (9, 9), pads)
    direct, fft = predict_seconds(shape)
    assert 1 / fft_cost.AUTOTUNE_BAND < fft / direct < fft_cost.AUTOTUNE_BAND  # a close call for the model
    state = torch.get_rng_state()
    picked = FC.fft_is_faster(shape, training=True)
    assert torch.equal(torch.get_rng_state(), state)
    decisions = fft_cost.fft_autotune_decisions()
    assert len(decisions) == 1
    assert list(decisions) == [("cpu", shape, None, True)]  # kept per (device, ConvShape, maps, mode)
    (fft_faster, t_direct, t_fft), = decisions.values()
    assert picked == fft_faster == (t_fft < t_direct) and t_direct > 0 and t_fft > 0
    monkeypatch.setattr(fft_cost, "_measure", lambda *a: pytest.fail("measured twice"))
    assert FC.fft_is_faster(shape, training=True) == picked  # remembered per shape
    # A clear case is left to the model, and autotune=False asks only the model.
    assert FC.fft_is_faster(FC.ConvShape(2, 8, 8, (32, 32), (3, 3), FC.resolve_padding("same", (3, 3)))) is False
    direct, fft = predict_seconds(shape, training=False)
    assert 1 / fft_cost.AUTOTUNE_BAND < fft / direct < fft_cost.AUTOTUNE_BAND
    FC.fft_is_faster(shape, training=False, autotune=False)  # a close call too, but not measured
    assert len(fft_cost.fft_autotune_decisions()) == 1


def test_autotune_follows_the_measurement_not_the_model(autotune, monkeypatch):
    """Where the measurement and the model disagree, the measurement wins."""
    pads = FC.resolve_padding("same", (9, 9))
    shape = FC.ConvShape(2, 8, 8, (32, 32), (9, 9), pads)
    model_pick = FC.fft_is_faster(shape, training=False, autotune=False)
    monkeypatch.setattr(fft_cost, "_measure", lambda *a: (not model_pick, 1.0, 1.0))
    assert FC.fft_is_faster(shape, training=False) is (not model_pick)
    with torch.inference_mode():
        x, w = torch.randn(2, 8, 32, 32), torch.randn(8, 8, 9, 9)
        assert torch.allclose(FC.conv(x, w), FC.conv(x, w, fft=False), atol=1e-4)


def test_autotune_is_off_by_default_and_switchable_by_environment():
    import subprocess
    import sys

    code = "from flexcore.layers import fft_cost; print(fft_cost.fft_autotune_enabled())"
    env = dict(__import__("os").environ, FLEXCORE_FFT_AUTOTUNE="1")
    env_off = {k: v for k, v in env.items() if k != "FLEXCORE_FFT_AUTOTUNE"}
    assert subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True).stdout.strip() == "True"
    assert subprocess.run([sys.executable, "-c", code], env=env_off, capture_output=True, text=True).stdout.strip() == "False"


def test_shipped_cpu_constants_are_the_fit_of_the_shipped_measurements():
    """COST_MODELS' CPU entries = fft-calibrate's refit of docs/data/fft_calibration_cpu.json."""
    import json
    from pathlib import Path

    data = Path(__file__).resolve().parents[2] / "docs" / "data" / "fft_calibration_cpu.json"
    records = json.loads(data.read_text())["data"]["records"]
    assert len(records) == 256
    models, quality = fit_cost_models(records)
    for key, model in models.items():
        shipped = fft_cost.COST_MODELS[key]
        assert model.direct == pytest.approx(shipped.direct, rel=2e-2, abs=1e-15), key
        assert model.fft == pytest.approx(shipped.fft, rel=2e-2, abs=1e-15), key
    assert max(row[5] for row in quality) < 1.35  # in-sample: 'auto' never far from the faster path

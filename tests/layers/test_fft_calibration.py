"""'auto' on the user's machine: its own saved calibration, and measured inference choices."""
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from flexcore.layers import Conv, FlexConv, fft_calibration, fft_cost
from flexcore.layers.fft_cost import CostModel

REPO = Path(__file__).resolve().parents[2]
SHIPPED_DATA = REPO / "docs" / "data" / "fft_calibration_cpu.json"


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """An empty per-user cache; loaded calibrations and measured choices are forgotten around the test."""
    monkeypatch.setenv("FLEXCORE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("FLEXCORE_FFT_CALIBRATION", raising=False)
    fft_calibration.reset_machine_calibration()
    fft_cost.clear_fft_autotune()
    yield tmp_path / "cache"
    fft_calibration.reset_machine_calibration()
    fft_cost.clear_fft_autotune()


def _custom_models():
    shipped = fft_cost.COST_MODELS
    return {key: CostModel(tuple(2 * v for v in m.direct), m.fft) for key, m in shipped.items() if key[0] == "cpu"}


def test_saved_calibration_is_picked_up_and_logged(cache, caplog):
    path = fft_calibration.save_calibration(_custom_models(), "cpu")
    assert path.parent == cache / "fft_calibration" and path.is_file()
    assert torch.__version__.split("+")[0] in path.name  # per CPU model and torch version
    assert json.loads(path.read_text())["device_name"] == fft_calibration.device_name("cpu")
    with caplog.at_level(logging.INFO, logger="flexcore.layers.fft_calibration"):
        model = fft_cost.cost_model("cpu", 2, training=False)
    assert model.direct == tuple(2 * v for v in fft_cost.COST_MODELS[("cpu", 2, "eval")].direct)
    assert any(str(path) in r.getMessage() and "calibrated on this machine" in r.getMessage() for r in caplog.records)


def test_opting_out_and_a_broken_file_fall_back_to_the_shipped_constants(cache, monkeypatch, caplog):
    path = fft_calibration.save_calibration(_custom_models(), "cpu")
    monkeypatch.setenv("FLEXCORE_FFT_CALIBRATION", "off")
    fft_calibration.reset_machine_calibration()
    assert fft_cost.cost_model("cpu", 2, False) == fft_cost.COST_MODELS[("cpu", 2, "eval")]
    monkeypatch.delenv("FLEXCORE_FFT_CALIBRATION")
    path.write_text('{"format": "flexcore-fft-calibration", "models": {"cpu/2/eval": {"direct": [1]}}}')
    fft_calibration.reset_machine_calibration()
    with caplog.at_level(logging.WARNING, logger="flexcore.layers.fft_calibration"):
        assert fft_cost.cost_model("cpu", 2, False) == fft_cost.COST_MODELS[("cpu", 2, "eval")]
    assert any(str(path) in r.getMessage() and "fft-calibrate" in r.getMessage() for r in caplog.records)
    elsewhere = cache.parent / "mine.json"
    fft_calibration.save_calibration(_custom_models(), "cpu", path=elsewhere)
    monkeypatch.setenv("FLEXCORE_FFT_CALIBRATION", str(elsewhere))  # an explicit file
    fft_calibration.reset_machine_calibration()
    assert fft_cost.cost_model("cpu", 1, True) != fft_cost.COST_MODELS[("cpu", 1, "train")]


def test_fft_calibrate_saves_for_this_machine_and_a_new_process_uses_it(cache, tmp_path):
    env = dict(os.environ, FLEXCORE_CACHE=str(cache), PYTHONWARNINGS="ignore")
    env.pop("FLEXCORE_FFT_CALIBRATION", None)
    run = subprocess.run([sys.executable, str(REPO / "tools" / "benchmark.py"), "fft-calibrate", "--from-json",
                          str(SHIPPED_DATA), "--save", "--json", str(tmp_path / "fit.json")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    saved = list((cache / "fft_calibration").glob("cpu-*.json"))
    assert len(saved) == 1 and "Saved for this machine" in run.stdout
    code = ("import logging; logging.basicConfig(level=logging.INFO, format='%(message)s');"
            "from flexcore.layers import fft_cost; fft_cost.cost_model('cpu', 2, False)")
    use = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert f"calibrated on this machine, {saved[0]}" in use.stderr
    env["FLEXCORE_FFT_CALIBRATION"] = "off"
    use = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert "shipped cost constants" in use.stderr


def _close_call(monkeypatch):
    """An eval model that predicts FFT slightly faster everywhere (ratio 0.8): a close call."""
    monkeypatch.setitem(fft_cost.COST_MODELS, ("cpu", 2, "eval"),
                        CostModel((0.0,) * 7 + (1.0,), (0.0,) * 4 + (0.8,)))


def test_inference_choices_near_the_crossover_are_measured_once(cache, monkeypatch):
    _close_call(monkeypatch)
    shape = fft_cost.ConvShape(2, 8, 8, (16, 16), (3, 3), [(1, 1), (1, 1)])
    # The answer is the measurement's, not the model's (which path wins is the machine's
    # business: on a loaded 2-core VM either can), and it is measured once per shape.
    choice = fft_cost.fft_is_faster(shape, training=False)
    decisions = fft_cost.fft_autotune_decisions()
    assert len(decisions) == 1
    measured_fft, t_direct, t_fft = next(iter(decisions.values()))
    assert choice is measured_fft and measured_fft == (t_fft < t_direct) and t_direct > 0 and t_fft > 0
    assert fft_cost.fft_is_faster(shape, training=False) is choice and len(fft_cost.fft_autotune_decisions()) == 1
    fft_cost.clear_fft_autotune()
    monkeypatch.setitem(fft_cost.COST_MODELS, ("cpu", 2, "train"), fft_cost.COST_MODELS[("cpu", 2, "eval")])
    assert fft_cost.fft_is_faster(shape, training=True) is True  # training: the model, unmeasured
    torch.use_deterministic_algorithms(True)
    try:
        assert fft_cost.fft_is_faster(shape, training=False) is True  # deterministic: no timing
    finally:
        torch.use_deterministic_algorithms(False)
    fft_cost.set_fft_autotune(False, inference=False)
    try:
        assert fft_cost.fft_is_faster(shape, training=False) is True and not fft_cost.fft_autotune_decisions()
    finally:
        fft_cost.set_fft_autotune(False, inference=True)


def test_eval_cache_and_baked_conv_take_the_measured_path(cache, monkeypatch):
    _close_call(monkeypatch)
    torch.manual_seed(0)
    layer = FlexConv(8, 8, 2, horizon=3, dynamic_cropping=False, fft="auto").eval()
    conv = Conv(8, 8, 2, kernel_size=3, fft="auto").eval()
    x = torch.randn(2, 8, 16, 16)
    with torch.no_grad():
        layer(x)
        conv(x)
    plans = layer._kernel_cache["plans"]
    # Both follow the measurement of this shape with a ready spectrum (kernel_maps 0), whichever
    # path it found faster here.
    ready = {key: value for key, value in fft_cost.fft_autotune_decisions().items() if key[-2] == 0}
    assert len(ready) == 1
    measured_fft = next(iter(ready.values()))[0]
    assert (plans[x.shape][0] is not None) is measured_fft
    assert (type(conv.bake()) is torch.nn.Conv2d) is (not measured_fft)  # a plain conv when direct

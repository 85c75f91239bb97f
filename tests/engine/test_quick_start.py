"""The quick-start config (what `python tools/train_net.py` runs) trained for a handful of iterations.

Its full accuracy and time are measured by tools/benchmark.py-style runs, not here.
"""
import json
import math

from flexcore.engine.defaults import DEFAULT_CONFIG, default_argument_parser, main


def test_quick_start_trains_a_few_iterations(tmp_path):
    args = default_argument_parser().parse_args([
        "--output-dir", str(tmp_path),
        "--gin", "Schedule.epochs = 0",
        "--gin", "Schedule.max_iter = 6",
        "--gin", "Schedule.period_unit = 'iter'",
        "--gin", "Schedule.eval_period = 3",
        "--gin", "Schedule.log_period = 2",
        "--gin", "Outputs.tensorboard = False",
    ])
    results = main(args)
    assert args.config_files == [DEFAULT_CONFIG]
    assert results["parameters"] > 10_000 and results["flops_per_sample"] > 0
    assert 0.0 <= results["test_accuracy_final_model"] <= 100.0
    lines = [json.loads(line) for line in open(tmp_path / "metrics.json")]
    assert [ln["iteration"] for ln in lines if "val/accuracy" in ln] == [2, 5]
    assert all(math.isfinite(ln["loss"]) for ln in lines if "loss" in ln)
    assert any(key.startswith("kernel_size/cconv1") for key in lines[-2])
    operative = (tmp_path / "operative_config.gin").read_text()
    assert "FlexNet.num_blocks = 2" in operative and "MAGNet.hidden_channels = 16" in operative

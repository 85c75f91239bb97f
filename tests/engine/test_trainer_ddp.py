"""The Trainer under real DDP (2 gloo processes) follows the one-process run with the same global batch."""
import json
import os
import subprocess
import sys

import pytest

from flexcore.engine.defaults import default_argument_parser, main

from conftest import TINY_PLUGIN

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = """
Data.dataset = 'TinySum'           # regression, no BatchNorm: DDP must match exactly
build_model.backbone = @TinyNet
Data.batch_size = 16               # global: 8 per process with 2 processes
Schedule.epochs = 2
Solver.lr = 0.01
Schedule.log_period = 1
Outputs.tensorboard = False
Outputs.kernel_report = False
Runtime.num_threads = 1
"""


def _train_here(tmp_path, name):
    args = default_argument_parser().parse_args(
        ["--plugin", TINY_PLUGIN, "--config-file", str(tmp_path / "tiny.gin"), "--output-dir", str(tmp_path / name)]
    )
    main(args)
    with open(tmp_path / name / "metrics.json") as f:
        return [json.loads(line) for line in f]


def _train(tmp_path, name, *extra):
    result = subprocess.run(
        [sys.executable, os.path.join(REPO, "tools", "train_net.py"), "--plugin", TINY_PLUGIN,
         "--config-file", "tiny.gin", "--output-dir", name, *extra],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    with open(tmp_path / name / "metrics.json") as f:
        return [json.loads(line) for line in f], result.stdout


@pytest.mark.slow
def test_two_processes_match_one(tmp_path):
    (tmp_path / "tiny.gin").write_text(CONFIG)
    single = _train_here(tmp_path, "single")
    ddp, out = _train(tmp_path, "ddp", "--num-processes", "2")
    assert "global batch 16 = 8 per process x 2" in out
    losses = lambda lines: [(ln["iteration"], ln["loss"]) for ln in lines if "loss" in ln]  # noqa: E731
    assert [i for i, _ in losses(ddp)] == [i for i, _ in losses(single)] == list(range(8))
    for (_, a), (_, b) in zip(losses(single), losses(ddp)):
        assert b == pytest.approx(a, rel=1e-5)
    val = lambda lines: [ln["val/loss"] for ln in lines if "val/loss" in ln]  # noqa: E731
    assert val(ddp) == pytest.approx(val(single), rel=1e-5)
    files = set(os.listdir(tmp_path / "ddp"))
    assert {"metrics.json", "model_final.pth", "summary.json", "log.txt.rank1"} <= files
    assert not [f for f in files if "rank1" in f and f != "log.txt.rank1"]

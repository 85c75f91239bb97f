"""tools/analyze_model.py end to end on a small gin config (fake data, real components)."""
import json
import os
import runpy
import sys

import pytest

from flexcore.analysis.cli import main

pytestmark = pytest.mark.usefixtures("single_thread")

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

CONFIG = """
build_model.backbone = @CIFARResNet20
CIFARResNet20.base_width = 4
build_dataset.name = 'AddingProblem'
AddingProblem.seq_length = 32
"""


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "exp.gin"
    path.write_text(CONFIG)
    return str(path)


def test_flops_params_activations_structure(config, tmp_path):
    out = tmp_path / "out"
    assert main(["--config-file", config, "--fake-data", "--tasks", "flops", "params", "activations",
                 "structure", "--strict", "--output", str(out)]) == 0
    totals = json.loads((out / "flops.json").read_text())
    # CIFARResNet20 (width 4) on a (2, 32) sequence: stem conv 4*2*3*32 MACs among the total.
    assert totals["convention"] == "mac" and totals["input_shape"] == [1, 2, 32]
    assert totals["inference"]["total"] > 4 * 2 * 3 * 32
    assert totals["train"]["params"] == totals["inference"]["params"]
    text = (out / "flops.txt").read_text()
    assert "multiply-accumulates" in text and "## By operator" in text and "conv" in text
    assert "#activations" in (out / "activations.txt").read_text()
    assert "trainable parameters" in (out / "params.txt").read_text()
    assert "CIFARResNet" in (out / "structure.txt").read_text()


def test_input_size_override_and_its_check(config, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["--config-file", config, "--fake-data", "--tasks", "flops", "--input-size", "16",
                 "--output", str(out)]) == 0
    assert json.loads((out / "flops.json").read_text())["input_shape"] == [1, 2, 16]
    assert main(["--config-file", config, "--fake-data", "--input-size", "16", "16", "--output", str(out)]) == 2
    assert "1 spatial dim" in capsys.readouterr().err


def test_profile_task_writes_trace(config, tmp_path):
    out = tmp_path / "out"
    assert main(["--config-file", config, "--fake-data", "--tasks", "profile", "--profile-steps", "1",
                 "--profile-warmup", "1", "--profile-batch-size", "2", "--output", str(out)]) == 0
    assert json.loads((out / "profile" / "trace.json").read_text())["traceEvents"]
    assert "forward" in (out / "profile" / "regions.txt").read_text()


def test_errors_are_one_clear_line(tmp_path, capsys):
    bad = tmp_path / "bad.gin"
    bad.write_text("build_model.backbone = @CIFARResNet20\n")
    assert main(["--config-file", str(bad), "--fake-data", "--output", str(tmp_path / "o")]) == 2
    assert "Data.dataset" in capsys.readouterr().err
    assert main(["--config-file", str(tmp_path / "missing.gin"), "--output", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err


def test_script_is_a_thin_wrapper(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["analyze_model.py", "--help"])
    with pytest.raises(SystemExit) as exit_info:
        runpy.run_path(os.path.join(REPO, "tools", "analyze_model.py"), run_name="__main__")
    assert exit_info.value.code == 0
    assert "--fake-data" in capsys.readouterr().out

"""tools/train_net.py as a user runs it: a real process, printed summary, exit codes."""
import os
import subprocess
import sys

import pytest

from flexcore.engine.cli import main as cli_main

from conftest import TINY_PLUGIN

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")

CONFIG = """
Data.dataset = 'TinyShapes'
build_model.backbone = @TinyNet
Data.batch_size = 32
Schedule.epochs = 1
Outputs.tensorboard = False
Outputs.kernel_report = False
"""


def _run(tmp_path, *extra):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, TRAIN_NET, "--plugin", TINY_PLUGIN, "--config-file", "tiny.gin", *extra],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )


@pytest.mark.slow
def test_train_then_refuse_to_overwrite(tmp_path, capsys, monkeypatch):
    (tmp_path / "tiny.gin").write_text(CONFIG)
    first = _run(tmp_path)
    assert first.returncode == 0, first.stderr
    assert "Summary of output/tiny" in first.stdout and "test_accuracy_final_model" in first.stdout
    assert (tmp_path / "output" / "tiny" / "model_final.pth").is_file()
    # The same command again (in this process: the script is a thin wrapper of flexcore.engine.cli.main).
    monkeypatch.chdir(tmp_path)
    assert cli_main(["--plugin", TINY_PLUGIN, "--config-file", "tiny.gin"]) == 1
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "Traceback" not in err

"""docs/examples/sine_waves.py, the "Writing your own dataset" example, trains as a plugin from outside the repo.

Its contract (splits, sizes, seeding) is checked by tests/registry/test_checks.py through the CLI; both run it
in a subprocess so its registration never leaks into this test session.
"""
import os
import shutil
import subprocess
import sys

import pytest

EXAMPLES = os.path.join(os.path.dirname(__file__), "..", "..", "docs", "examples")
TRAIN_NET = os.path.join(os.path.dirname(__file__), "..", "..", "tools", "train_net.py")


@pytest.mark.slow
def test_example_trains_from_a_folder_outside_the_repo(tmp_path):
    for name in ("sine_waves.py", "sine_waves.gin"):
        shutil.copy(os.path.join(EXAMPLES, name), tmp_path / name)
    run = subprocess.run(
        [sys.executable, os.path.abspath(TRAIN_NET), "--plugin", "sine_waves.py", "--config-file", "sine_waves.gin",
         "--output-dir", "out", "--gin", "Schedule.epochs = 0", "--gin", "Schedule.max_iter = 4",
         "--gin", "Schedule.eval_period = 4"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert "test_accuracy_final_model" in run.stdout + run.stderr


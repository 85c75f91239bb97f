"""DDP launcher: real processes (gloo on CPU) training a real tiny model."""
import json
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from flexcore.engine.defaults import default_argument_parser
from flexcore.engine.launch import LaunchError, launch
from launch_fixtures import tiny_main

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))


def tiny_args(tmp_path, name, *flags, gin=()):
    config = tmp_path / "tiny.gin"
    config.write_text("tiny_experiment.epochs = 3\ntiny_experiment.batch_size = 8\n")
    argv = ["--config-file", str(config), "--output-dir", str(tmp_path / name), *flags]
    for binding in gin:
        argv += ["--gin", binding]
    return default_argument_parser().parse_args(argv)


def read_metrics(output_dir):
    with open(os.path.join(output_dir, "metrics.json")) as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def single_and_ddp(tmp_path_factory):
    """The same tiny training run in one process and in two DDP processes (once per module)."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    single = launch(tiny_main, tiny_args(tmp_path, "single"))
    ddp = launch(tiny_main, tiny_args(tmp_path, "ddp", "--num-processes", "2"))
    return tmp_path, single, ddp


def test_two_processes_equal_one_process_with_the_same_global_batch(single_and_ddp):
    tmp_path, single, ddp = single_and_ddp
    assert single["world_size"] == 1 and ddp["world_size"] == 2 and ddp["rank"] == 0
    for name, value in single["params"].items():
        torch.testing.assert_close(ddp["params"][name], value, rtol=0, atol=1e-6)
    losses_single = [m["loss"] for m in read_metrics(tmp_path / "single")]
    losses_ddp = [m["loss"] for m in read_metrics(tmp_path / "ddp")]
    assert losses_ddp == pytest.approx(losses_single, abs=1e-6)
    assert losses_ddp[-1] < losses_ddp[0]  # it really trained


def test_only_rank_zero_writes_results(single_and_ddp):
    tmp_path, _, ddp = single_and_ddp
    out = tmp_path / "ddp"
    # Each rank keeps its own log (detectron2's log.txt.rankN); every result is rank 0's.
    assert sorted(os.listdir(out)) == ["checkpoint.pth", "config.gin", "log.txt", "log.txt.rank1", "metrics.json"]
    metrics = read_metrics(out)
    assert [m["epoch"] for m in metrics] == [0, 1, 2]  # one line per epoch, not one per rank
    assert {m["pid"] for m in metrics} == {ddp["pid"]}


@pytest.mark.slow
def test_failing_child_exits_nonzero_with_its_traceback(tmp_path):
    """The CLI entry point turns a child's exception into exit 1 + the child's traceback."""
    script = tmp_path / "run_tiny.py"
    script.write_text(textwrap.dedent(
        """
        import sys
        from flexcore.engine import defaults
        from launch_fixtures import tiny_main
        defaults.main = tiny_main
        if __name__ == "__main__":  # spawned DDP children re-import this file
            sys.exit(defaults.cli_entry())
        """
    ))
    (tmp_path / "tiny.gin").write_text("tiny_experiment.fail_on_rank = 1\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]))
    result = subprocess.run(
        [sys.executable, str(script), "--config-file", "tiny.gin", "--num-processes", "2", "--output-dir", "out"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 1
    assert "Launch error: DDP process of rank 1 failed" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "launch_fixtures.py" in result.stderr  # the child's own frames, not the launcher's
    assert "ValueError: tiny_main failed on purpose on rank 1" in result.stderr


@pytest.mark.slow
def test_under_torchrun_joins_instead_of_spawning(tmp_path):
    script = tmp_path / "run_tiny.py"
    script.write_text(textwrap.dedent(
        """
        from flexcore.engine.defaults import default_argument_parser
        from flexcore.engine.launch import launch
        from launch_fixtures import tiny_main
        if __name__ == "__main__":
            result = launch(tiny_main, default_argument_parser().parse_args())
            print(f"RESULT rank={result['rank']} world={result['world_size']}", flush=True)
        """
    ))
    (tmp_path / "tiny.gin").write_text("tiny_experiment.epochs = 2\n")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([HERE, os.environ.get("PYTHONPATH", "")]), OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", str(script),
         "--config-file", "tiny.gin", "--output-dir", "out", "--num-processes", "2"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    # Two workers, each in a world of 2: launch() joined torchrun's group and spawned nothing.
    assert sorted(line for line in result.stdout.splitlines() if line.startswith("RESULT")) == [
        "RESULT rank=0 world=2", "RESULT rank=1 world=2"]
    assert "world size comes from torchrun (2)" in result.stdout + result.stderr
    assert [m["epoch"] for m in read_metrics(tmp_path / "out")] == [0, 1]


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--num-gpus", "1", "--num-processes", "2"], "not both"),
        (["--num-gpus", "64"], "more GPUs than this machine has"),
        (["--num-machines", "2", "--num-processes", "2"], "--dist-url tcp://"),
        (["--num-machines", "2", "--machine-rank", "2", "--dist-url", "tcp://h:1"], "--machine-rank must be in"),
        (["--num-processes", "2", "--dist-backend", "nccl"], "nccl needs GPU processes"),
    ],
)
def test_bad_ddp_flags_are_explained(tmp_path, flags, message):
    with pytest.raises(LaunchError, match=message):
        launch(tiny_main, tiny_args(tmp_path, "bad", *flags))

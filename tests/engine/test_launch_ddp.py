"""DDP launcher: real processes (gloo on CPU) running the real training job."""
import argparse
import os
import subprocess
import sys

import pytest

from flexcore.engine.defaults import main
from flexcore.engine.distributed import DDPConfig, launch_ddp
from flexcore.engine.launch import LaunchError, launch
from launch_fixtures import (TRAIN_NET, assert_same_weights, fail_with_slow_teardown, final_weights, read_metrics,
                             train_args, train_argv)


def run_cli(cwd, argv, *launcher, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    for name in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT", "LOCAL_RANK"):
        env.pop(name, None)
    return subprocess.run([*launcher, TRAIN_NET, *argv] if launcher else [sys.executable, TRAIN_NET, *argv],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def single_and_ddp(tmp_path_factory):
    """The same tiny training run in one process and in two DDP processes (once per module)."""
    tmp_path = tmp_path_factory.mktemp("ddp")
    single = launch(main, train_args(tmp_path, "single"))
    ddp = launch(main, train_args(tmp_path, "ddp", "--num-processes", "2"))
    return tmp_path, single, ddp


def test_two_processes_equal_one_process_with_the_same_global_batch(single_and_ddp):
    tmp_path, single, ddp = single_and_ddp
    one, two = read_metrics(tmp_path / "single"), read_metrics(tmp_path / "ddp")
    assert [m["iteration"] for m in two] == [m["iteration"] for m in one]
    assert {m["iteration"] for m in one} >= set(range(8))  # 2 epochs of 4 steps, one line each
    for a, b in zip(one, two):  # the loss of each step, reduced over the ranks, and the validation
        assert {k for k in a if "loss" in k} == {k for k in b if "loss" in k}
        for key in (k for k in a if "loss" in k):  # loss, val/loss, test/loss
            assert b[key] == pytest.approx(a[key], rel=1e-6)
    assert_same_weights(final_weights(tmp_path / "single"), final_weights(tmp_path / "ddp"), atol=1e-6)
    assert ddp["test_loss_final_model"] == pytest.approx(single["test_loss_final_model"], rel=1e-6)
    assert one[-1]["test/loss"] < one[0]["loss"]  # it learned something
    with open(tmp_path / "ddp" / "log.txt") as f:
        assert "global batch 16 = 8 per process x 2" in f.read()  # the effective batch is reported


def test_only_rank_zero_writes_results(single_and_ddp):
    tmp_path, _, _ = single_and_ddp
    # The same files as a single process, plus rank 1's own log (detectron2's log.txt.rankN).
    assert sorted(os.listdir(tmp_path / "ddp")) == sorted(os.listdir(tmp_path / "single") + ["log.txt.rank1"])
    with open(tmp_path / "ddp" / "log.txt.rank1") as f:
        rank1_log = f.read()
    assert "Saving checkpoint" not in rank1_log and "Starting training" in rank1_log


@pytest.mark.slow
def test_failing_child_exits_nonzero_with_its_traceback(tmp_path):
    """The CLI turns a child's exception into exit 1 + the child's own traceback."""
    argv = train_argv(tmp_path, "fail", "--num-processes", "2",
                      gin=["Trainer.extra_hooks = [@FailOnRank]", "FailOnRank.rank = 1"])
    result = run_cli(tmp_path, argv)
    assert result.returncode == 1, result.stderr
    assert "Launch error: DDP process of rank 1 failed" in result.stderr
    assert "Traceback (most recent call last)" in result.stderr
    assert "launch_plugin.py" in result.stderr  # the child's frames, not the launcher's
    assert "RuntimeError: FailOnRank: rank 1 fails at iteration 1 on purpose" in result.stderr


@pytest.mark.slow
def test_the_rank_that_raised_is_named_not_the_peer_it_broke():
    """Rank 1 raises; its peer fails at once in the broken collective while rank 1 is still
    leaving the group: the report names rank 1 and its own traceback (a past flaky race)."""
    config = DDPConfig(procs_per_machine=2, backend="gloo")
    with pytest.raises(LaunchError) as info:
        launch_ddp(fail_with_slow_teardown, argparse.Namespace(teardown_s=3.0), config)
    message = str(info.value)
    assert message.startswith("DDP process of rank 1 failed"), message
    assert "ValueError: rank 1 fails on purpose" in message and "launch_fixtures.py" in message


@pytest.mark.slow
def test_under_torchrun_joins_instead_of_spawning(tmp_path):
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]
    result = run_cli(tmp_path, train_argv(tmp_path, "out", "--num-processes", "2"), *torchrun)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "world size comes from torchrun (2)" in output
    assert "DDP: 2 process(es)" not in output  # nothing spawned on top of torchrun's workers
    with open(tmp_path / "out" / "log.txt") as f:
        assert "global batch 16 = 8 per process x 2" in f.read()
    assert {m["iteration"] for m in read_metrics(tmp_path / "out")} >= set(range(8))


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
        launch(main, train_args(tmp_path, "bad", *flags))
    assert not (tmp_path / "bad").exists()

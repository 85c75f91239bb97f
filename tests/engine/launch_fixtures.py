"""Shared pieces of the launcher tests: a tiny real experiment for ``tools/train_net.py``.

``TinySum`` (regression, 64 samples) with ``TinyNet`` (a 1-D conv net without
BatchNorm, so DDP and one process follow the same trajectory) from the engine's tiny
plugin, plus the launcher tests' hooks (``FailOnRank``, ``SlowSteps``).
"""
import json
import os

import torch

from flexcore.engine.defaults import default_argument_parser

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
TRAIN_NET = os.path.join(REPO, "tools", "train_net.py")
PLUGINS = [os.path.join(HERE, "tiny_plugin.py"), os.path.join(HERE, "launch_plugin.py")]

TINY_CONFIG = """
include 'base/train.gin'          # seed macro, periods
Data.dataset = 'TinySum'
build_model.backbone = @TinyNet
Data.batch_size = 16           # the global batch: 8 per process with 2 processes
Schedule.epochs = 2
Solver.lr = 0.01
Schedule.log_period = 1
Outputs.tensorboard = False
Outputs.kernel_report = False
"""


def write_config(folder) -> str:
    path = os.path.join(str(folder), "tiny.gin")
    with open(path, "w") as f:
        f.write(TINY_CONFIG)
    return path


def plugin_flags():
    return [flag for path in PLUGINS for flag in ("--plugin", path)]


def train_argv(folder, name, *flags, gin=()):
    """``tools/train_net.py`` arguments for the tiny experiment, output in ``folder/name``."""
    argv = ["--config-file", write_config(folder), *plugin_flags(), "--output-dir", os.path.join(str(folder), name)]
    for binding in gin:
        argv += ["--gin", binding]
    return argv + list(flags)


def train_args(folder, name, *flags, gin=()):
    return default_argument_parser().parse_args(train_argv(folder, name, *flags, gin=gin))


def read_metrics(output_dir):
    with open(os.path.join(str(output_dir), "metrics.json")) as f:
        return [json.loads(line) for line in f]


def final_weights(output_dir):
    return torch.load(os.path.join(str(output_dir), "model_final.pth"), weights_only=True)["model"]


def assert_same_weights(a, b, atol=1e-6):
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol, msg=lambda m: f"{name}: {m}")


def fail_with_slow_teardown(args):
    """A DDP ``main``: rank 1 raises, and leaving its process group takes a while.

    Rank 0 then fails in its broken collective long before rank 1 has left: the launcher
    must still name rank 1 (its failure is recorded before the teardown)."""
    import time

    import torch.distributed as dist

    if dist.get_rank() == 1:
        destroy = dist.destroy_process_group

        def slow_destroy(*a, **k):
            destroy(*a, **k)  # rank 0's collective breaks now
            time.sleep(args.teardown_s)

        dist.destroy_process_group = slow_destroy
        raise ValueError("rank 1 fails on purpose")
    dist.all_reduce(torch.ones(1))  # waits for rank 1, which never joins
    return "unreachable"

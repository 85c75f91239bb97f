import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch
import torch.nn as nn

from iopath.common.file_io import PathHandler

from flexcore.checkpoint import (
    CheckpointError,
    Checkpointer,
    CheckpointMismatchError,
    get_rng_state,
    set_rng_state,
)
from flexcore.utils.file_io import path_manager


class _Opaque:
    """A Python object safe loading must refuse."""


def _net(width=4):
    return nn.Sequential(nn.Linear(3, width), nn.BatchNorm1d(width), nn.Linear(width, 2))


def test_save_creates_dir_and_round_trips_everything(tmp_path):
    save_dir = str(tmp_path / "new" / "dir")
    model = _net()
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    model(torch.randn(5, 3)).sum().backward()
    opt.step()
    ckpt = Checkpointer(model, save_dir, optimizer=opt)
    path = ckpt.save("model_0000009", iteration=9, best={"accuracy": 97.5})
    assert path == os.path.join(save_dir, "model_0000009.pth")
    assert open(os.path.join(save_dir, "last_checkpoint")).read() == "model_0000009.pth"
    assert not [f for f in os.listdir(save_dir) if f.endswith(".tmp")]

    model2 = _net()
    opt2 = torch.optim.Adam(model2.parameters(), lr=0.1)
    extra = Checkpointer(model2, save_dir, optimizer=opt2).resume_or_load("", resume=True)
    assert extra["iteration"] == 9 and extra["best"] == {"accuracy": 97.5}
    for a, b in zip(model.state_dict().values(), model2.state_dict().values()):
        assert torch.equal(a, b)
    assert torch.equal(opt.state_dict()["state"][0]["exp_avg"], opt2.state_dict()["state"][0]["exp_avg"])


class _BucketHandler(PathHandler):
    """A ``bucket://`` iopath handler backed by a folder, standing in for an object store."""

    def __init__(self, root):
        super().__init__()
        self.root = str(root)

    def _get_supported_prefixes(self):
        return ["bucket://"]

    def _local(self, path):
        return os.path.join(self.root, path[len("bucket://"):])

    def _get_local_path(self, path, force=False, **kwargs):
        return self._local(path)

    def _open(self, path, mode="r", buffering=-1, **kwargs):
        return open(self._local(path), mode)

    def _exists(self, path, **kwargs):
        return os.path.exists(self._local(path))

    def _isfile(self, path, **kwargs):
        return os.path.isfile(self._local(path))

    def _mkdirs(self, path, **kwargs):
        os.makedirs(self._local(path), exist_ok=True)

    def _ls(self, path, **kwargs):
        return os.listdir(self._local(path))


def test_any_iopath_uri(tmp_path):
    path_manager.register_handler(_BucketHandler(tmp_path), allow_override=True)
    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    Checkpointer(model, "bucket://runs/a", optimizer=opt).save("model_0000003", iteration=3)
    assert (tmp_path / "runs" / "a" / "model_0000003.pth").is_file()
    fresh = Checkpointer(_net(), "bucket://runs/a", optimizer=torch.optim.SGD(_net().parameters(), lr=0.1))
    assert fresh.resume_or_load("", resume=True)["iteration"] == 3
    assert torch.equal(fresh.model.state_dict()["0.weight"], model.state_dict()["0.weight"])


def test_model_best_does_not_move_last_checkpoint(tmp_path):
    ckpt = Checkpointer(_net(), str(tmp_path), optimizer=torch.optim.SGD(_net().parameters(), lr=0.1))
    ckpt.save("model_0000001")
    ckpt.save("model_best", tag_last=False, include_checkpointables=False)
    assert ckpt.get_checkpoint_file().endswith("model_0000001.pth")
    assert "optimizer" not in torch.load(tmp_path / "model_best.pth", weights_only=True)


def test_rng_states_survive_safe_loading(tmp_path):
    random.seed(1), np.random.seed(2), torch.manual_seed(3)
    state = get_rng_state()
    expect = (random.random(), np.random.rand(), torch.rand(1).item())
    torch.save({"model": {}, "rng": state}, tmp_path / "rng.pth")
    random.seed(9), np.random.seed(9), torch.manual_seed(9)
    set_rng_state(torch.load(tmp_path / "rng.pth", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(), torch.rand(1).item()) == expect


def test_weights_only_refuses_objects_unless_opted_out(tmp_path):
    model = _net()
    torch.save({"model": model.state_dict(), "extra": _Opaque()}, tmp_path / "unsafe.pth")
    with pytest.raises(CheckpointError, match=r"Safe loading refused .*unsafe\.pth.*--unsafe-load"):
        Checkpointer(_net(), "").load(str(tmp_path / "unsafe.pth"))
    extra = Checkpointer(_net(), "", weights_only=False).load(str(tmp_path / "unsafe.pth"))
    assert isinstance(extra["extra"], _Opaque)


@pytest.mark.parametrize("damage", ["truncate", "garbage", "empty"])
def test_corrupt_file_names_the_file(tmp_path, damage):
    path = tmp_path / "model_0000004.pth"
    Checkpointer(_net(), str(tmp_path)).save("model_0000004")
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a checkpoint" * 10, "empty": b""}[damage])
    with pytest.raises(CheckpointError, match=r"model_0000004\.pth .*cannot be read"):
        Checkpointer(_net(), "").load(str(path))


def test_missing_file_and_dangling_tag(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        Checkpointer(_net(), "").load(str(tmp_path / "nope.pth"))
    (tmp_path / "last_checkpoint").write_text("model_gone.pth")
    with pytest.raises(CheckpointError, match="model_gone.pth"):
        Checkpointer(_net(), str(tmp_path)).get_checkpoint_file()


def test_checkpoint_of_another_model_reports_keys_and_shapes(tmp_path):
    other = nn.Sequential(nn.Linear(3, 8), nn.BatchNorm1d(8), nn.Linear(8, 2), nn.ReLU(), nn.Linear(2, 2))
    Checkpointer(other, str(tmp_path)).save("other")
    model = _net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError) as info:
        Checkpointer(model, "").load(str(tmp_path / "other.pth"))
    text = str(info.value)
    assert "other.pth" in text and "4.weight" in text and "0.weight: (8, 3) -> (4, 3)" in text
    assert "init_strict = False" in text
    # strict failure changes nothing
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    # non-strict: loads the tensors that fit (the last Linear 2 -> ... has shape (2, 8) vs (2, 4): skipped)
    other_state = other.state_dict()
    Checkpointer(model, "").load(str(tmp_path / "other.pth"), strict=False)
    assert torch.equal(model.state_dict()["2.bias"], other_state["2.bias"])
    assert torch.equal(model.state_dict()["0.weight"], before["0.weight"])


def test_bare_state_dict_and_ddp_prefix(tmp_path):
    model = _net()
    torch.save({f"module.{k}": v for k, v in model.state_dict().items()}, tmp_path / "bare.pth")
    fresh = _net()
    Checkpointer(fresh, "").load(str(tmp_path / "bare.pth"))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), fresh.state_dict().values()))


_WRITER = textwrap.dedent(
    """
    import sys, torch, torch.nn as nn
    from flexcore.checkpoint import Checkpointer
    model = nn.Linear(1024, 1024)
    ckpt = Checkpointer(model, sys.argv[1])
    big = torch.randn(12, 1024, 1024)  # ~50 MB per file: each write takes a while
    i = 1
    while True:
        ckpt.save(f"model_{i:07d}", iteration=i, big=big)
        i += 1
    """
)


def test_kill_during_save_leaves_previous_checkpoint_loadable(tmp_path):
    save_dir = tmp_path / "run"
    model = nn.Linear(1024, 1024)
    Checkpointer(model, str(save_dir)).save("model_0000000", iteration=0)
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    proc = subprocess.Popen([sys.executable, str(script), str(save_dir)], stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            # A temp file exists only while a checkpoint is being written.
            if any(f.endswith(".tmp") for f in os.listdir(save_dir)):
                proc.send_signal(signal.SIGKILL)
                break
            if proc.poll() is not None:
                pytest.fail(f"writer died: {proc.stderr.read().decode()}")
            time.sleep(0.002)
        else:
            pytest.fail("the writer never started a checkpoint")
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    ckpt = Checkpointer(nn.Linear(1024, 1024), str(save_dir))
    last = ckpt.get_checkpoint_file()
    extra = ckpt.load(last)  # complete and loadable
    assert extra["iteration"] == int(os.path.basename(last)[6:13])
    # Every published .pth is complete: the interrupted one exists only as a temp file.
    for name in os.listdir(save_dir):
        if name.endswith(".pth"):
            Checkpointer(nn.Linear(1024, 1024), "").load(str(save_dir / name))


def test_periodic_checkpoints_oldest_first(tmp_path):
    for name in ("model_0000100.pth", "model_0000099.pth", "model_best.pth", "model_final.pth", "other_0000001.pth",
                 "model_0000005.pth.tmp", "model_0000007.pth"):
        (tmp_path / name).write_bytes(b"")
    ckpt = Checkpointer(_net(), str(tmp_path))
    assert [os.path.basename(p) for p in ckpt.periodic_checkpoints()] == [
        "model_0000007.pth", "model_0000099.pth", "model_0000100.pth"]
    assert [os.path.basename(p) for p in ckpt.periodic_checkpoints("other")] == ["other_0000001.pth"]
    assert Checkpointer(_net(), str(tmp_path / "absent")).periodic_checkpoints() == []

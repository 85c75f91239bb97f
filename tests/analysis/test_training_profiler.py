"""torch.profiler wrapper: real training steps, real trace files."""
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from flexcore.analysis.profiler import TrainingProfiler, label_modules, profile_training

pytestmark = pytest.mark.usefixtures("single_thread")


def _model():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16, 5))


def test_profile_training_writes_trace_and_tables(tmp_path):
    model = _model()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = [p.detach().clone() for p in model.parameters()]
    batches = [(torch.randn(2, 3, 6, 6), torch.randint(5, (2,)))]
    result = profile_training(model, batches, F.cross_entropy, optimizer, str(tmp_path), steps=2, warmup=1)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))  # optimizer stepped
    trace = json.loads((tmp_path / "trace.json").read_text())
    names = {e.get("name", "") for e in trace["traceEvents"]}
    assert "flexcore/forward" in names and "flexcore/backward" in names
    ops = [row["op"] for row in result.top_ops()]
    assert any("conv" in op for op in ops)
    assert all(row["calls_per_step"] > 0 for row in result.top_ops())
    regions = {row["region"]: row for row in result.regions()}
    assert set(regions) >= {"forward", "backward", "optimizer"}
    assert regions["forward"]["calls_per_step"] == 1  # 2 recorded steps, warmup excluded
    assert "self CPU ms/step" in (tmp_path / "top_ops.txt").read_text()
    assert "forward" in (tmp_path / "regions.txt").read_text()


def test_step_api_stops_by_itself_after_warmup_plus_steps(tmp_path):
    model = _model()
    profiler = TrainingProfiler(str(tmp_path / "p"), steps=2, warmup=1).start()
    calls = 0
    while not profiler.done:
        model(torch.randn(1, 3, 6, 6)).sum().backward()
        profiler.step()
        calls += 1
    assert calls == 3
    assert (tmp_path / "p" / "trace.json").is_file()
    profiler.step()  # no-op once done
    assert profiler.stop() is profiler.result


def test_label_modules_adds_regions_and_removes_hooks(tmp_path):
    model = _model()
    with label_modules(model, [("head", model[3])]):
        with torch.profiler.profile() as prof:
            model(torch.randn(1, 3, 6, 6))
    assert any(e.key == "flexcore/head" for e in prof.key_averages())
    assert not model[3]._forward_hooks and not model[3]._forward_pre_hooks

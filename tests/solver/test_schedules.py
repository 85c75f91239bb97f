import math

import pytest
import torch

from flexcore.registry import LR_SCHEDULES
from flexcore.solver import Constant, Cosine, Exponential, MultiStep, Plateau


def _optimizer(lrs=(0.1, 0.01)):
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in lrs]
    return torch.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)], lr=lrs[0])


def _trajectory(schedule, n):
    """Rate of group 0 used by each of the first n iterations (stepped after each)."""
    rates = []
    for _ in range(n):
        rates.append(schedule.optimizer.param_groups[0]["lr"])
        schedule.optimizer.step()
        schedule.step()
    return rates


def test_warmup_first_step_is_not_zero():
    sched = Constant(_optimizer(), max_iter=20, iters_per_epoch=5, warmup_epochs=1)
    rates = _trajectory(sched, 7)
    assert rates[:5] == pytest.approx([0.02, 0.04, 0.06, 0.08, 0.1])  # (it + 1) / W, never 0
    assert rates[5:] == pytest.approx([0.1, 0.1])


def test_cosine_with_warmup_and_absolute_eta_min():
    opt = _optimizer()
    sched = Cosine(opt, max_iter=12, iters_per_epoch=2, warmup_iters=2, eta_min=1e-3)
    rates = _trajectory(sched, 12)
    assert rates[:2] == pytest.approx([0.05, 0.1])
    for it in range(2, 12):
        expect = 1e-3 + (0.1 - 1e-3) * 0.5 * (1 + math.cos(math.pi * (it - 2) / 10))
        assert rates[it] == pytest.approx(expect)
    # The second group anneals from its own rate to the same absolute floor.
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-3)


def test_multistep_milestones_in_epochs_and_iterations():
    sched = MultiStep(_optimizer(), max_iter=10, iters_per_epoch=2, milestones=[1, 3], gamma=0.5)
    assert _trajectory(sched, 8) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.05, 0.05, 0.025, 0.025])
    sched = MultiStep(_optimizer(), max_iter=10, iters_per_epoch=2, milestone_iters=[3])
    assert _trajectory(sched, 5) == pytest.approx([0.1, 0.1, 0.1, 0.01, 0.01])
    with pytest.raises(ValueError, match="exactly one"):
        MultiStep(_optimizer(), max_iter=10, iters_per_epoch=2)


def test_exponential_staircase_and_smooth():
    sched = Exponential(_optimizer(), max_iter=10, iters_per_epoch=2, gamma=0.5)
    assert _trajectory(sched, 5) == pytest.approx([0.1, 0.1, 0.05, 0.05, 0.025])
    sched = Exponential(_optimizer(), max_iter=10, iters_per_epoch=2, gamma=0.25, per_iteration=True)
    assert _trajectory(sched, 3) == pytest.approx([0.1, 0.05, 0.025])


def test_plateau_decays_after_patience_and_keeps_group_ratio():
    opt = _optimizer()
    sched = Plateau(opt, max_iter=100, iters_per_epoch=1, factor=0.5, patience=1)
    for metric in (50.0, 60.0, 60.0):  # best 60, one bad evaluation: within patience
        sched.step_metric(metric, "max")
        opt.step()
        sched.step()
    assert opt.param_groups[0]["lr"] == pytest.approx(0.1)
    sched.step_metric(59.0, "max")  # second bad one: decay
    assert opt.param_groups[0]["lr"] == pytest.approx(0.05)
    opt.step()
    sched.step()
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.005])
    # Regression metrics: mode min.
    sched = Plateau(_optimizer(), max_iter=10, iters_per_epoch=1, factor=0.1, patience=0)
    sched.step_metric(1.0, "min")
    sched.step_metric(2.0, "min")
    assert sched.optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_state_dict_round_trip_resumes_the_curve():
    a = Cosine(_optimizer(), max_iter=20, iters_per_epoch=4, warmup_epochs=1)
    full = _trajectory(a, 20)
    b = Cosine(_optimizer(), max_iter=20, iters_per_epoch=4, warmup_epochs=1)
    _trajectory(b, 7)
    state = b.state_dict()
    assert set(state) <= {"last_epoch", "base_lrs", "_step_count", "_last_lr"}
    c_opt = _optimizer()
    c = Cosine(c_opt, max_iter=20, iters_per_epoch=4, warmup_epochs=1)
    c.load_state_dict(state)
    c_opt.param_groups[0]["lr"] = b.optimizer.param_groups[0]["lr"]  # the optimiser's own state restores this
    assert _trajectory(c, 13) == pytest.approx(full[7:])
    p = Plateau(_optimizer(), max_iter=20, iters_per_epoch=4, patience=0)
    p.step_metric(1.0, "max")
    p.step_metric(0.5, "max")
    q = Plateau(_optimizer(), max_iter=20, iters_per_epoch=4, patience=0)
    q.load_state_dict(p.state_dict())
    assert (q.scale, q.best, q.mode) == (p.scale, p.best, "max")


def test_registry_names_and_validation():
    assert LR_SCHEDULES.get_raw("cosine") is Cosine and LR_SCHEDULES.get_raw("plateau") is Plateau
    short = Constant(_optimizer(), max_iter=4, iters_per_epoch=4, warmup_epochs=1)  # smoke run of a long recipe
    assert short.warmup_iters == 3 and _trajectory(short, 4) == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1])
    with pytest.raises(ValueError, match="not both"):
        Constant(_optimizer(), max_iter=40, iters_per_epoch=4, warmup_epochs=1, warmup_iters=2)

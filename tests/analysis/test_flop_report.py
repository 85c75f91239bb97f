"""flop_report on plain torch models: train vs eval counts, tables, no side effects."""
import pytest
import torch
import torch.nn as nn

from flexcore.analysis import flop_report

pytestmark = pytest.mark.usefixtures("single_thread")


def small_net():
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Dropout(0.5),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10))


def test_report_counts_train_and_inference_and_leaves_model_untouched():
    model = small_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    x = torch.randn(2, 3, 5, 5)
    report = flop_report(model, (x,), strict=True)
    conv, linear, pool = 2 * 4 * 3 * 9 * 25, 2 * 4 * 10, 2 * 4 * 25
    bn_train, bn_eval = 5 * 2 * 4 * 25, 2 * 2 * 4 * 25  # fvcore's norm estimates
    totals = report.totals()
    assert totals["train"]["total"] == conv + linear + pool + bn_train
    assert totals["inference"]["total"] == conv + linear + pool + bn_eval
    assert totals["train"]["kernel_generation"] == 0  # no continuous convs
    assert totals["train"]["params"] == sum(p.numel() for p in model.parameters())
    assert totals["train"]["activations"] == 2 * 4 * 25 + 2 * 10
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), key  # BatchNorm stats not updated by the trace
    summary = report.summary_table()
    assert "multiply-accumulates" in summary and "(2, 3, 5, 5)" in summary
    assert "conv" in report.operator_table()
    assert "#flops" in report.module_table("train") and "#flops" in report.module_table("inference")


def test_flop_convention_doubles_multiply_adds_only():
    model = small_net()
    x = torch.randn(1, 3, 5, 5)
    mac = flop_report(model, (x,)).totals()["inference"]["total"]
    flop = flop_report(model, (x,), convention="flop").totals()["inference"]["total"]
    conv_linear = 4 * 3 * 9 * 25 + 4 * 10
    assert flop - mac == conv_linear


def test_count_flops_inference_and_train():
    from flexcore.analysis import count_flops

    model = small_net()
    x = torch.randn(1, 3, 5, 5)
    conv_linear_pool = 4 * 3 * 9 * 25 + 4 * 10 + 4 * 25
    assert count_flops(model, x) == conv_linear_pool + 2 * 4 * 25
    assert count_flops(model, (x,), mode="train") == conv_linear_pool + 5 * 4 * 25

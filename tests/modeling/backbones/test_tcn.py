import pytest
import torch

from flexcore.modeling.backbones import CKTCN, TCN, FlexTCN
from flexcore.registry import BACKBONES
from flexcore.utils.parameters import count_parameters

from backbone_test_utils import plain_conv, recording_conv  # noqa: F401  (fixtures)


def test_tcn_shapes_and_last_step_head(recording_conv):
    factory, calls = recording_conv
    torch.manual_seed(0)
    model = TCN(3, 10, 1, conv=factory, hidden_channels=8, num_blocks=2).eval()
    # every conv is asked for causally; block 0 maps the input channels directly (no stem)
    assert calls == [(3, 8, 1, True), (8, 8, 1, True), (8, 8, 1, True), (8, 8, 1, True)]
    assert len(model.backbone[0].shortcut) == 1 and len(model.backbone[1].shortcut) == 0
    x = torch.randn(2, 3, 40, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    # causal: the output at the last step is blind to nothing in the past within reach, and the
    # per-step outputs never see the future
    per_step = TCN(3, 10, 1, conv=factory, hidden_channels=8, num_blocks=2, head="per_step").eval()
    y = per_step(x)
    assert y.shape == (2, 10, 40)
    x2 = x.detach().clone()
    x2[..., 30:] += 5.0
    assert torch.allclose(per_step(x2)[..., :30], y[..., :30])
    assert not torch.allclose(per_step(x2)[..., 30:], y[..., 30:])


def test_tcn_head_init_and_widths(plain_conv):
    torch.manual_seed(0)
    model = TCN(3, 10, 1, conv=plain_conv, hidden_channels=100, num_blocks=3,
                block_width_factors=[1.0, 2, 2.0, 1])
    assert model.widths == [100, 100, 200]
    assert model.finallyr.in_features == 200
    assert torch.count_nonzero(model.finallyr.bias) == 0
    assert abs(model.finallyr.weight.std().item() - 0.01) < 0.001


def test_tcn_errors(plain_conv):
    with pytest.raises(ValueError, match="dim in"):
        TCN(3, 10, 2, conv=plain_conv)
    with pytest.raises(ValueError, match=r"TCN.conv = @FlexConv"):
        TCN(3, 10, 1)
    with pytest.raises(ValueError, match="unknown head"):
        TCN(3, 10, 1, conv=plain_conv, head="pool")


def test_tcn_named_variants(plain_conv):
    for name, cls in (("FlexTCN", FlexTCN), ("CKTCN", CKTCN)):
        model = BACKBONES.build(name, 1, 10, 1, conv=plain_conv, hidden_channels=4)
        assert isinstance(model, cls) and isinstance(model, TCN)
        # 2 blocks of two 3-tap convs + 1x1 shortcut + BN + head
        convs = (1 * 4 * 3 + 4) + 3 * (4 * 4 * 3 + 4)
        assert count_parameters(model) == convs + (4 + 4) + 4 * 4 * 2 + 40 + 10

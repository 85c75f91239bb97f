import functools

import pytest
import torch
import torch.nn as nn

from flexcore.modeling.backbones import CKCNN, FlexNet, expand_width_factors
from flexcore.registry import BACKBONES
from flexcore.utils.parameters import count_parameters

from backbone_test_utils import plain_conv, recording_conv  # noqa: F401  (fixtures)


def test_width_factor_expansion():
    assert expand_width_factors([1.0, 2, 1.5, 3, 2.0, 2], 7) == [1, 1, 1.5, 1.5, 1.5, 2, 2]
    assert expand_width_factors([0.0], 4) == [1.0] * 4
    assert expand_width_factors(None, 2) == [1.0, 1.0]
    with pytest.raises(ValueError, match="expand to 7 blocks but num_blocks=5"):
        expand_width_factors([1.0, 2, 1.5, 3, 2.0, 2], 5)
    with pytest.raises(ValueError, match="pairs"):
        expand_width_factors([1.0, 2, 1.5], 3)
    with pytest.raises(ValueError, match="whole number"):
        expand_width_factors([1.0, 1.5], 1)


@pytest.mark.parametrize(
    "hidden,blocks,factors,widths",
    [
        (24, 3, [1, 1, 1.5, 1, 2, 1], [24, 36, 48]),
        (22, 5, [1, 1, 1.5, 2, 2, 2], [22, 33, 33, 44, 44]),
        (24, 7, [1, 2, 1.5, 3, 2, 2], [24, 24, 36, 36, 36, 48, 48]),
    ],
)
def test_paper_widths(plain_conv, hidden, blocks, factors, widths):
    model = FlexNet(3, 10, 2, conv=plain_conv, hidden_channels=hidden, num_blocks=blocks,
                    block_width_factors=factors)
    assert model.widths == widths
    assert [b.cconv2.conv.out_channels for b in model.blocks] == widths
    # shortcut 1x1 conv exactly where the width changes
    changes = [i for i in range(blocks) if (hidden if i == 0 else widths[i - 1]) != widths[i]]
    assert [i for i, b in enumerate(model.blocks) if len(b.shortcut)] == changes
    assert model.out_layer.in_channels == widths[-1]


def test_conv_k3_parameter_count(plain_conv):
    # The original's FlexNet-7 shell with plain 3x3 convs has 169,990 parameters.
    assert count_parameters(FlexNet(3, 10, 2, conv=plain_conv)) == 169_990


@pytest.mark.parametrize("dim,shape", [(1, (20,)), (2, (9, 9)), (3, (5, 6, 7))])
@pytest.mark.parametrize("norm,act", [("BatchNorm", "ReLU"), ("LayerNorm", "LeakyReLU")])
def test_forward_backward_every_dim(plain_conv, dim, shape, norm, act):
    torch.manual_seed(0)
    model = FlexNet(2, 5, dim, conv=plain_conv, hidden_channels=6, num_blocks=2,
                    block_width_factors=[1.0, 1, 2.0, 1], norm=norm, nonlinearity=act, dropout=0.1)
    x = torch.randn(3, 2, *shape, requires_grad=True)
    out = model(x)
    assert out.shape == (3, 5)
    out.square().sum().backward()
    assert torch.isfinite(x.grad).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    expected_norm = {"BatchNorm": getattr(nn, f"BatchNorm{dim}d"), "LayerNorm": nn.GroupNorm}[norm]
    assert isinstance(model.norm1, expected_norm)


def test_batch_of_one_keeps_batch_dim(plain_conv):
    model = FlexNet(3, 10, 2, conv=plain_conv, hidden_channels=4, num_blocks=1, block_width_factors=None).eval()
    assert model(torch.randn(1, 3, 8, 8)).shape == (1, 10)
    single_class = FlexNet(3, 1, 2, conv=plain_conv, hidden_channels=4, num_blocks=1, block_width_factors=None).eval()
    assert single_class(torch.randn(1, 3, 8, 8)).shape == (1, 1)


def test_sequence_head_uses_last_step_and_causal_convs(recording_conv):
    factory, calls = recording_conv
    torch.manual_seed(0)
    model = FlexNet(2, 4, 1, conv=factory, hidden_channels=5, num_blocks=2, block_width_factors=None).eval()
    assert all(causal for *_, causal in calls) and len(calls) == 5
    x = torch.randn(2, 2, 30)
    y = model(x)
    # Causal convs + last-step head: changing the past far beyond the receptive field does nothing,
    # changing the last step does.
    x2 = x.clone()
    x2[..., :5] += 10.0
    assert torch.allclose(model(x2), y)
    x3 = x.clone()
    x3[..., -1] += 1.0
    assert not torch.allclose(model(x3), y)


def test_head_options(plain_conv):
    kw = dict(conv=plain_conv, hidden_channels=4, num_blocks=1, block_width_factors=None)
    x = torch.randn(2, 3, 6, 7)
    assert FlexNet(3, 5, 2, head="per_step", **kw)(x).shape == (2, 5, 6, 7)
    assert FlexNet(3, 5, 2, head="last", **kw)(x).shape == (2, 5)
    assert FlexNet(3, 5, 1, head="pool", **kw)(torch.randn(2, 3, 11)).shape == (2, 5)
    with pytest.raises(ValueError, match="unknown head"):
        FlexNet(3, 5, 2, head="mean", **kw)


def test_head_init_is_kaiming_normal_with_zero_bias(plain_conv):
    torch.manual_seed(0)
    model = FlexNet(3, 200, 2, conv=plain_conv, hidden_channels=50, num_blocks=1, block_width_factors=None)
    w = model.out_layer.weight
    assert torch.count_nonzero(model.out_layer.bias) == 0
    # fan_in 50, gain sqrt(2): std sqrt(2/50) = 0.2 (uniform default init would give ~0.08)
    assert abs(w.std().item() - 0.2) < 0.02


def test_head_draws_after_convs_in_original_order(recording_conv):
    # The head is created last: its weights come after every conv's draws from the RNG.
    factory, _ = recording_conv
    torch.manual_seed(3)
    model = FlexNet(3, 10, 2, conv=factory, hidden_channels=4, num_blocks=2, block_width_factors=[1.0, 1, 2.0, 1])
    torch.manual_seed(3)
    convs = [factory(3, 4, 2), factory(4, 4, 2), factory(4, 4, 2), factory(4, 8, 2), factory(8, 8, 2)]
    shortcut = nn.Conv2d(4, 8, 1)
    head = nn.Conv2d(8, 10, 1)
    nn.init.kaiming_normal_(head.weight)
    got = [model.cconv1, model.blocks[0].cconv1, model.blocks[0].cconv2, model.blocks[1].cconv1,
           model.blocks[1].cconv2]
    for a, b in zip(got, convs):
        assert torch.equal(a.conv.weight, b.conv.weight)
    assert torch.equal(model.blocks[1].shortcut[0].weight, shortcut.weight)
    assert torch.equal(model.out_layer.weight, head.weight)


def test_input_dropout_only_in_training(plain_conv):
    model = FlexNet(3, 2, 2, conv=plain_conv, hidden_channels=4, num_blocks=1, dropout=0.0, dropout_in=0.5,
                    norm="LayerNorm", block_width_factors=None)
    x = torch.randn(2, 3, 6, 6)
    torch.manual_seed(0)
    train_out = model.train()(x)
    torch.manual_seed(0)
    dropped = torch.nn.functional.dropout(x, 0.5)
    assert torch.allclose(train_out, model.eval()(dropped))
    assert not torch.allclose(train_out, model(x))


def test_errors_name_the_fix(plain_conv):
    with pytest.raises(ValueError, match=r"FlexNet.conv = @FlexConv"):
        FlexNet(3, 10, 2)
    with pytest.raises(ValueError, match="dim in"):
        FlexNet(3, 10, 4, conv=plain_conv)
    with pytest.raises(ValueError, match="Unknown norm"):
        FlexNet(3, 10, 2, conv=plain_conv, norm="InstanceNorm")
    with pytest.raises(ValueError, match="Unknown nonlinearity"):
        FlexNet(3, 10, 2, conv=plain_conv, nonlinearity="GELU")


def test_registry_and_ckcnn_alias(plain_conv):
    assert BACKBONES.get_raw("FlexNet") is FlexNet
    model = BACKBONES.build("CKCNN", 3, 10, 2, conv=functools.partial(plain_conv, kernel_size=5),
                            hidden_channels=4, num_blocks=1, block_width_factors=None)
    assert isinstance(model, CKCNN) and isinstance(model, FlexNet)

import pytest
import torch
import torch.nn as nn

from flexcore.modeling.backbones import CIFARResNet
from flexcore.registry import BACKBONES
from flexcore.utils.parameters import count_parameters


@pytest.mark.parametrize(
    "name,classes,params",
    [("CIFARResNet20", 10, 269_722), ("CIFARResNet32", 10, 464_154), ("CIFARResNet44", 10, 658_586),
     ("CIFARResNet32", 1000, 528_504)],
)
def test_paper_parameter_counts(name, classes, params):
    assert count_parameters(BACKBONES.build(name, 3, classes, 2)) == params


def test_depths_and_shapes():
    model = CIFARResNet(3, 10, 2, depth=56)
    assert [len(getattr(model, f"layer{i}")) for i in (1, 2, 3)] == [9, 9, 9]
    x = torch.randn(2, 3, 8, 8, requires_grad=True)
    out = model(x)
    assert out.shape == (2, 10)
    out.sum().backward()
    assert torch.isfinite(x.grad).all()
    with pytest.raises(ValueError, match="6n"):
        CIFARResNet(3, 10, 2, depth=21)


def test_option_a_shortcut_pads_zero_channels():
    block = CIFARResNet(3, 10, 2, depth=20).layer2[0]
    x = torch.randn(2, 16, 8, 8)
    sc = block.shortcut(x)
    assert sc.shape == (2, 32, 4, 4)
    assert torch.equal(sc[:, 8:24], x[:, :, ::2, ::2])
    assert sc[:, :8].abs().sum() == 0 and sc[:, 24:].abs().sum() == 0


@pytest.mark.parametrize("dim,shape", [(1, (32,)), (3, (8, 8, 8))])
def test_other_dims(dim, shape):
    model = CIFARResNet(2, 4, dim, depth=20)
    assert model(torch.randn(2, 2, *shape)).shape == (2, 4)


def test_conv_factory_subsampling_equals_strided_conv():
    # A factory making the same 3x3 bias-free conv ("same" size) must give exactly the default
    # network once weights are shared: stride 2 == full-resolution conv, every 2nd output.
    def same3x3(cin, cout, dim):
        return nn.Conv2d(cin, cout, 3, padding=1, bias=False)

    torch.manual_seed(0)
    default = CIFARResNet(3, 10, 2, depth=20).eval()
    plug = CIFARResNet(3, 10, 2, conv=same3x3, depth=20).eval()
    assert set(default.state_dict()) == set(plug.state_dict())
    plug.load_state_dict(default.state_dict())
    x = torch.randn(2, 3, 16, 16)
    assert torch.allclose(default(x), plug(x), atol=1e-5)


def test_init_is_kaiming_normal():
    torch.manual_seed(0)
    model = CIFARResNet(3, 10, 2, depth=20)
    w = model.layer3[0].conv2.weight  # fan_in 64*9
    assert abs(w.std().item() - (2 / (64 * 9)) ** 0.5) < 0.002

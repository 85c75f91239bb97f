"""Every backbone with every conv type of flexcore on every dim it supports: forward, backward, finite."""
import functools

import pytest
import torch

from flexcore.registry import BACKBONES, CONVS, KERNEL_NETS

CONV_TYPES = ["Conv", "CKConv", "FlexConv", "SeparableFlexConv", "SRFConv"]
SHAPES = {1: (16,), 2: (8, 8), 3: (5, 5, 5)}
HORIZON = {1: 15, 2: 9, 3: 5}


def conv_factory(name, dim):
    if name == "Conv":
        return functools.partial(CONVS.get_raw("Conv"), kernel_size=3)
    if name == "SRFConv":
        return functools.partial(CONVS.get_raw("SRFConv"), order=2)
    kernel = functools.partial(KERNEL_NETS.get_raw("MAGNet"), hidden_channels=8, num_layers=2, input_scale=25.6)
    return functools.partial(CONVS.get_raw(name), kernel_net=kernel, horizon=HORIZON[dim])


BACKBONE_DIMS = {
    "FlexNet": (1, 2, 3),
    "TCN": (1,),
    "CIFARResNet": (1, 2, 3),
    "TorchvisionResNet": (2,),
}
SMALL = {
    "FlexNet": dict(hidden_channels=4, num_blocks=2, block_width_factors=[1.0, 1, 2.0, 1], dropout=0.1),
    "TCN": dict(hidden_channels=4, num_blocks=2, block_width_factors=[1.0, 1, 2.0, 1]),
    "CIFARResNet": dict(depth=8, base_width=4),
    "TorchvisionResNet": dict(arch="resnet10", small_input=True),
}
# torchvision's widths (64..512) make continuous kernels costly: one discrete and one continuous
# conv cover its (type-independent) 3x3 replacement.
CASES = [(b, d, c) for b, dims in BACKBONE_DIMS.items() for d in dims for c in CONV_TYPES
         if b != "TorchvisionResNet" or c in ("Conv", "FlexConv")]


def test_every_backbone_is_covered():
    # the rest are subclasses / depth shorthands of these (tested through them)
    aliases = {"CKCNN", "FlexTCN", "CKTCN"} | {f"CIFARResNet{d}" for d in (20, 32, 44, 56, 110, 1202)}
    builtins = {n for n in BACKBONES.list() if BACKBONES.get_raw(n).__module__.startswith("flexcore.modeling")}
    assert builtins == set(BACKBONE_DIMS) | aliases  # (other tests and plugins may register more)


@pytest.mark.parametrize("backbone,dim,conv", CASES, ids=[f"{b}-{d}d-{c}" for b, d, c in CASES])
def test_forward_backward_finite(backbone, dim, conv):
    torch.manual_seed(0)
    hp = dict(SMALL[backbone])
    if backbone == "FlexNet" and dim == 1 and conv == "SRFConv":
        hp["causal"] = False  # N-Jet kernels are centred; a 1D FlexNet must ask for non-causal convs
    build = functools.partial(BACKBONES.get_raw(backbone), 2, 3, dim, conv=conv_factory(conv, dim), **hp)
    if backbone == "TCN" and conv == "SRFConv":
        with pytest.raises(ValueError, match="causal"):
            build()
        return
    model = build().train()
    x = torch.randn(2, 2, *SHAPES[dim], requires_grad=True)
    out = model(x)
    assert out.shape == (2, 3)
    out.square().sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()

"""One decision point for FFT-or-direct: every dispatch site asks fft_cost.choose_fft."""
import pytest
import torch

from flexcore.layers import BakedConv2d, Conv, FlexConv, SeparableFlexConv
from flexcore.layers import fft_cost
from flexcore.layers import functional as FC


def test_choose_fft_obeys_true_false_and_asks_the_cost_model_for_auto():
    shape = FC.ConvShape(2, 4, 4, (16, 16), (5, 5), [(2, 2), (2, 2)])
    assert fft_cost.choose_fft(True, shape) is True
    assert fft_cost.choose_fft(False, shape) is False
    for training in (True, False):
        want = fft_cost.fft_is_faster(shape, training=training, autotune=False)
        with fft_cost.fft_autotune_scope(False, inference=False):
            assert fft_cost.choose_fft("auto", shape, training=training) is want
    for bad in ("fft", 1, None):
        with pytest.raises(ValueError, match="fft must be True, False or 'auto'"):
            fft_cost.choose_fft(bad, shape)


def test_conv_shape_holds_plain_sizes_and_is_the_same_key_however_built():
    x, w = torch.randn(2, 6, 16, 12), torch.randn(4, 3, 5, 3)
    pads = FC.resolve_padding("same", w.shape[2:])
    shape = FC.ConvShape.of(x, w, pads, groups=2)
    assert shape == FC.ConvShape(2, 6, 4, (16, 12), (5, 3), ((2, 2), (1, 1)), 2)
    assert shape == FC.ConvShape.for_input(x.shape, 4, [5, 3], [[2, 2], [1, 1]], 2)
    # Sizes that arrive as 0-d tensors (jit tracing) are stored as ints: one key per shape.
    traced = FC.ConvShape(torch.tensor(2), 6, 4, [torch.tensor(16), 12], (5, 3), pads, torch.tensor(2))
    assert traced == shape and hash(traced) == hash(shape) and len({shape: 1, traced: 2}) == 1
    assert type(traced.batch) is int and type(traced.spatial) is tuple and type(traced.spatial[0]) is int
    assert type(traced.pads) is tuple and type(traced.pads[0]) is tuple
    assert shape.dims == 2 and shape.out_size() == [16, 12]
    assert FC.ConvShape(1, 1, 1, (8,), (11,), [(0, 0)]).out_size() == [-2]
    with pytest.raises(ValueError, match="one entry per spatial dim"):
        FC.ConvShape(2, 6, 4, (16, 12), (5,), pads)


@pytest.fixture
def decisions(monkeypatch):
    """Every 'auto' choice, recorded as (kernel size, kernel_maps, training); the FFT path taken."""
    seen = []

    def fake(shape, *, device_type="cpu", kernel_maps=None, training=True, autotune=None):
        seen.append((shape.kernel_size, kernel_maps, training))
        return True

    monkeypatch.setattr(fft_cost, "fft_is_faster", fake)
    return seen


def test_every_dispatch_site_goes_through_choose_fft(decisions):
    x = torch.randn(2, 3, 12, 12)
    FC.conv(x, torch.randn(4, 3, 5, 5, requires_grad=True))  # functional, training
    assert decisions == [((5, 5), None, True)]

    layer = FlexConv(3, 4, 2, horizon=7, dynamic_cropping=False)
    layer(x).sum().backward()  # continuous conv, training
    assert decisions[-1][0] == (7, 7) and decisions[-1][2] is True and layer.last_path == "fft"
    layer.eval()
    with torch.no_grad():
        layer(x)  # the eval-mode cache plans the path once per shape, spectrum reused
        layer(x)
    assert decisions[-1] == ((7, 7), 0, False) and len(decisions) == 3

    baked = layer.bake()  # bake() sizes its choice on the last input
    assert isinstance(baked, BakedConv2d) and baked.fft == "auto" and decisions[-1] == ((7, 7), 0, False)
    with torch.no_grad():
        baked(x)  # the baked conv's inference path
    assert len(decisions) == 5

    discrete = Conv(3, 4, 2, kernel_size=9)
    discrete(x).sum().backward()
    assert decisions[-1] == ((9, 9), None, True)

    separable = SeparableFlexConv(3, 6, 2, horizon=5, dynamic_cropping=False).eval()
    with torch.no_grad():
        separable(x)
    separable.bake()
    assert decisions[-2:] == [((5, 5), 0, False)] * 2


def test_fixed_settings_never_ask_the_cost_model(decisions):
    x = torch.randn(2, 3, 12, 12)
    for fft in (True, False):
        FC.conv(x, torch.randn(4, 3, 5, 5), fft=fft)
        layer = FlexConv(3, 4, 2, horizon=7, fft=fft)
        layer(x).sum().backward()
        assert layer.last_path == ("fft" if fft else "direct")
        layer.eval()
        with torch.no_grad():
            layer(x)
            layer.bake()(x)
    assert decisions == []

"""Contract tests for every registered kernel net (timm style: parametrized over the registry)."""
import copy
import io
import pickle

import gin
import pytest
import torch

from flexcore.registry import KERNEL_NETS

NAMES = KERNEL_NETS.list()
SIDES = {1: 9, 2: 5, 3: 3}  # tiny grids


def _grid(dim, side=None, dtype=torch.float32):
    side = side or SIDES[dim]
    axis = torch.linspace(-1, 1, side, dtype=dtype)
    return torch.stack(torch.meshgrid(*([axis] * dim), indexing="ij")).unsqueeze(0)


def test_builtins_are_registered():
    assert {"MLP", "SIREN", "nSIREN", "FourierNet", "GaborNet", "MAGNet"} <= set(NAMES)
    assert KERNEL_NETS.get_raw("Fourier") is KERNEL_NETS.get_raw("FourierNet")
    assert KERNEL_NETS.get_raw("Gabor") is KERNEL_NETS.get_raw("GaborNet")


@pytest.mark.parametrize("dim", [1, 2, 3])
@pytest.mark.parametrize("name", NAMES)
def test_forward_backward_shapes_and_gradients(name, dim):
    torch.manual_seed(0)
    net = KERNEL_NETS.build(name, dim, 6)
    positions = _grid(dim)
    out = net(positions)
    assert out.shape == (1, 6, *positions.shape[2:])
    assert torch.isfinite(out).all()
    (out * torch.randn_like(out)).sum().backward()
    for pname, param in net.named_parameters():
        assert param.grad is not None, f"{name}: no gradient reaches {pname}"
        assert torch.isfinite(param.grad).all(), pname
        assert param.grad.abs().sum() > 0, f"{name}: zero gradient for {pname}"


@pytest.mark.parametrize("name", NAMES)
def test_eval_output_is_deterministic_and_grid_local(name):
    """A position's kernel value does not depend on the other positions (eval mode)."""
    torch.manual_seed(0)
    net = KERNEL_NETS.build(name, 2, 3).eval()
    grid = _grid(2, 7)
    with torch.no_grad():
        full = net(grid)
        crop = net(grid[:, :, 2:5, 1:6].contiguous())
    torch.testing.assert_close(crop, full[:, :, 2:5, 1:6], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", NAMES)
def test_double_precision_and_float_grid(name):
    torch.manual_seed(0)
    net = KERNEL_NETS.build(name, 2, 4).eval()
    grid = _grid(2)
    with torch.no_grad():
        ref = net(grid)
        out = net.double()(grid)  # a float32 grid is cast to the net's dtype
    assert out.dtype == torch.float64
    torch.testing.assert_close(out.float(), ref, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_roundtrip_deepcopy_and_pickle(name):
    torch.manual_seed(0)
    net = KERNEL_NETS.build(name, 2, 4).eval()
    grid = _grid(2)
    with torch.no_grad():
        ref = net(grid)
    torch.manual_seed(1)
    other = KERNEL_NETS.build(name, 2, 4).eval()
    buffer = io.BytesIO()
    torch.save(net.state_dict(), buffer)
    buffer.seek(0)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    for clone in (other, copy.deepcopy(net), pickle.loads(pickle.dumps(net))):
        with torch.no_grad():
            assert torch.equal(clone(grid), ref)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "shape",
    [(2, 3, 3), (1, 2, 3), (1, 3, 3, 3), (2, 2, 3, 3), (1, 2, 3, 3, 3)],
    ids=["rank3", "rank3_dim2", "channels3", "batch2", "rank5"],
)
def test_wrong_positions_shape_names_net_and_expected_shape(name, shape):
    net = KERNEL_NETS.build(name, 2, 4)
    with pytest.raises(ValueError) as err:
        net(torch.zeros(shape))
    msg = str(err.value)
    assert type(net).__name__ in msg and "(1, 2, *grid)" in msg and str(shape) in msg


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("arg, value", [("dim", 0), ("out_channels", 0), ("hidden_channels", 0), ("hidden_channels", 2.5)])
def test_non_positive_sizes_rejected(name, arg, value):
    kwargs = {"dim": 2, "out_channels": 4, arg: value}
    with pytest.raises(ValueError, match=f"`{arg}`"):
        KERNEL_NETS.build(name, **kwargs)


@pytest.mark.parametrize("name", NAMES)
def test_gin_binds_hyper_parameters(name):
    gin.parse_config(f"{name}.hidden_channels = 8")
    net = KERNEL_NETS.build(name, 2, 4)
    assert net.hidden_channels == 8
    assert net(_grid(2)).shape == (1, 4, 5, 5)


def test_kernel_nets_are_unknown_name_friendly():
    with pytest.raises(KeyError, match="MAGNet"):
        KERNEL_NETS.get("MAGNett")


@pytest.mark.parametrize(
    "name, kwargs, base",
    [  # the original's generators, D = 2, H = 32, L = 3: base + 33·O (O = Cin·Cout)
        ("MAGNet", {}, 4064),
        ("MAGNet", {"steerable": True}, 4064 + 32 * 4),
        ("GaborNet", {}, 3936),
        ("FourierNet", {}, 3552),
        ("SIREN", {}, 1152),
        ("nSIREN", {}, 1152),
        ("MLP", {"norm": None}, 1152),
    ],
)
@pytest.mark.parametrize("out_channels", [16, 24 * 24])
def test_parameter_counts_match_reference(name, kwargs, base, out_channels):
    net = KERNEL_NETS.build(name, 2, out_channels, **kwargs)
    assert sum(p.numel() for p in net.parameters()) == base + 33 * out_channels


@pytest.mark.gpu
@pytest.mark.parametrize("name", NAMES)
def test_cuda_matches_cpu(name):
    torch.manual_seed(0)
    net = KERNEL_NETS.build(name, 2, 8).eval()
    grid = _grid(2, 9)
    with torch.no_grad():
        ref = net(grid)
        out = net.cuda()(grid.cuda())
    torch.testing.assert_close(out.cpu(), ref, rtol=1e-4, atol=1e-5)
    if hasattr(net, "set_spatial_init"):  # the unit-draw buffers moved with the net
        torch.manual_seed(0)
        fresh = KERNEL_NETS.build(name, 2, 8).cuda()
        fresh.set_spatial_init(0.125025)

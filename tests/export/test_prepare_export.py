"""prepare_for_export: baked convs become plain torch.nn convs on the direct path, same function."""
import pytest
import torch
import torch.nn as nn

from flexcore.export import direct_conv
from flexcore.layers.conv_base import make_baked_conv


@pytest.mark.parametrize("dims,pads", [
    (1, [(6, 0)]),                      # causal
    (2, [(1, 2), (0, 3)]),              # even kernel, asymmetric
    (3, [(1, 1), (2, 2), (1, 1)]),      # symmetric: a bare nn.Conv3d
])
def test_direct_conv_matches_the_baked_fft_conv(dims, pads):
    torch.manual_seed(0)
    ksize = {1: (7,), 2: (4, 4), 3: (3, 5, 3)}[dims]
    baked = make_baked_conv(torch.randn(6, 4, *ksize), torch.randn(6), (1,) * dims, pads, fft=True)
    x = torch.randn(2, 4, *([9] * dims))
    plain = direct_conv(baked)
    assert all(type(m).__module__.startswith("torch.nn") for m in plain.modules())
    assert isinstance(plain, nn.Sequential) != all(a == b for a, b in pads)
    with torch.no_grad():
        expected, got = baked(x), plain(x)
    assert got.shape == expected.shape
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)

"""Run direct convolutions over a grid of kernel/input shapes, forward and backward.

Started as a subprocess by ``test_direct_conv_shapes.py``: a shape that makes a backend
corrupt memory kills this process, not pytest. Prints each case before running it, so the
last line names the culprit. Usage: ``python shape_sweep_worker.py THREADS``.
"""
import sys

import torch

from flexcore.layers import FlexConv
from flexcore.layers import functional as FC

# (input spatial size, kernel size, channels, batch, strides): kernels odd and even, square
# and not, up to 65, larger than the input along one dim or all (the oneDNN fault needs ~24
# channels and a tall kernel: 33x7 on 16x16 aborted every time on the development CPU).
FUNCTIONAL_CASES = [
    ((16, 16), (33, 7), 24, 2, (1, 2)),
    ((16, 16), (31, 5), 24, 2, (1, 2)),
    ((16, 16), (32, 6), 24, 2, (1,)),
    ((16, 16), (65, 3), 24, 2, (1, 2)),
    ((16, 16), (7, 33), 24, 2, (1,)),
    ((16, 16), (17, 16), 24, 2, (1,)),
    ((12, 40), (33, 3), 24, 2, (1, 2)),
    ((12, 40), (25, 41), 8, 2, (1,)),
    ((32, 32), (63, 1), 24, 2, (2,)),
    ((4, 4), (9, 9), 24, 2, (1, 2)),
    ((4, 4), (65, 2), 24, 2, (1,)),
    ((4, 4), (4, 4), 24, 2, (1,)),
    ((64, 64), (65, 3), 8, 1, (1, 2)),
    ((64, 64), (9, 9), 8, 1, (2,)),
    ((4,), (65,), 24, 2, (1, 2)),
    ((16,), (33,), 24, 2, (1,)),
    ((16,), (64,), 24, 2, (2,)),
    ((64,), (65,), 24, 2, (1,)),
    ((4, 4, 4), (9, 3, 3), 8, 1, (1, 2)),
    ((8, 8, 8), (17, 17, 1), 4, 1, (1,)),
    ((8, 6, 8), (3, 13, 2), 8, 1, (1,)),
]
PADDINGS = ("same", "valid", "wide")  # wide: an int padding larger than the input

# FlexConv cases: (input spatial size, horizon, stride); the kernel is the full horizon.
FLEXCONV_CASES = [((16, 16), 33, 1), ((16, 40), 33, 2), ((8, 8), 65, 1), ((16,), 65, 1)]


def _check(case: str, got: torch.Tensor, want: torch.Tensor) -> None:
    err = float((got.double() - want).abs().max()) / (float(want.abs().max()) + 1e-12)
    if not err < 1e-4:
        raise AssertionError(f"{case}: relative error {err:.3g} against the float64 result")


def functional_case(spatial, ksize, channels, batch, stride, padding) -> None:
    case = f"conv(fft=False) x{spatial} w{ksize} c{channels} stride {stride} padding {padding!r}"
    print(case, flush=True)
    if padding == "wide":
        padding = max(spatial) + 4
    pads = FC.resolve_padding(padding, ksize)
    if any(n + a + b < k for n, k, (a, b) in zip(spatial, ksize, pads)):
        return  # no output
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, channels, *spatial, generator=gen, requires_grad=True)
    w = torch.randn(channels, channels, *ksize, generator=gen, requires_grad=True)
    y = FC.conv(x, w, None, stride, padding, fft=False)
    g = torch.randn(y.shape, generator=gen)
    y.backward(g)
    # float64 runs no oneDNN kernel: an independent result that also catches silent corruption
    x64, w64 = x.detach().double().requires_grad_(), w.detach().double().requires_grad_()
    FC.conv(x64, w64, None, stride, padding, fft=False).backward(g.double())
    _check(case + " input grad", x.grad, x64.grad)
    _check(case + " weight grad", w.grad, w64.grad)


def flexconv_case(spatial, horizon, stride, fft) -> None:
    print(f"FlexConv(fft={fft!r}) x{spatial} horizon {horizon} stride {stride}", flush=True)
    torch.manual_seed(0)
    layer = FlexConv(24, 24, len(spatial), horizon=horizon, stride=stride, fft=fft, dynamic_cropping=False)
    x = torch.randn(2, 24, *spatial, requires_grad=True)
    layer(x).square().sum().backward()
    assert x.grad is not None and torch.isfinite(x.grad).all()
    layer.eval()
    with torch.no_grad():
        layer(x)
        layer.bake()(x)


def main(threads: int) -> None:
    torch.set_num_threads(threads)
    for spatial, ksize, channels, batch, strides in FUNCTIONAL_CASES:
        for stride in strides:
            for padding in PADDINGS:
                functional_case(spatial, ksize, channels, batch, stride, padding)
    for spatial, horizon, stride in FLEXCONV_CASES:
        for fft in (False, "auto"):
            flexconv_case(spatial, horizon, stride, fft)
    print("sweep done", flush=True)


if __name__ == "__main__":
    main(int(sys.argv[1]))

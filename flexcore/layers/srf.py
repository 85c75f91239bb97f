"""N-Jet / structured receptive field convolution (Pintea et al., IEEE TIP 2021).

"Resolution learning in deep convolutional networks using scale-space theory": every kernel is
a learned linear combination of scale-normalised Gaussian derivatives up to a fixed order,
sharing one learnable scale ``sigma = 2^scale`` per layer. The kernel's extent follows the
scale, ``2 * ceil(k * sigma) + 1`` pixels per dim, so the layer learns its receptive-field
size (the baseline FlexConv is compared against in the paper's tables).

Basis (per dim, pixel offsets ``x = -r..r``): the Gaussian ``g(x) = exp(-x^2 / (2 sigma^2))``
normalised to unit sum, and its scale-normalised derivatives
``sigma^n d^n g / dx^n = (-1/sqrt 2)^n H_n(x / (sqrt 2 sigma)) g(x)`` with ``H_n`` the
physicists' Hermite polynomials. N-D basis functions are products over dims of orders
``(n_1, .., n_D)`` with ``n_1 + .. + n_D <= order`` (graded order: all order-0 terms, then
order 1, ...; within a grade, lexicographic with dim 0 varying slowest).
"""
from __future__ import annotations

import itertools
import math
from typing import List, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from flexcore.layers.conv_base import ConvBase, make_baked_conv
from flexcore.registry import CONVS

__all__ = ["SRFConv", "gaussian_derivatives", "basis_orders", "set_scale_factor"]

_HERMITE = {
    0: lambda u: torch.ones_like(u),
    1: lambda u: 2.0 * u,
    2: lambda u: 4.0 * u * u - 2.0,
    3: lambda u: 8.0 * u**3 - 12.0 * u,
    4: lambda u: 16.0 * u**4 - 48.0 * u * u + 12.0,
}


def basis_orders(dim: int, order: int) -> List[Tuple[int, ...]]:
    """Derivative orders ``(n_1, .., n_D)`` with total ``<= order``, graded then lexicographic."""
    orders = [o for o in itertools.product(range(order + 1), repeat=dim) if sum(o) <= order]
    return sorted(orders, key=lambda o: (sum(o), [-v for v in o]))


def gaussian_derivatives(sigma: Tensor, radius: int, order: int) -> Tensor:
    """``(order + 1, 2 * radius + 1)``: scale-normalised 1-D Gaussian derivatives of orders ``0..order``."""
    x = torch.arange(-radius, radius + 1, device=sigma.device, dtype=sigma.dtype)
    gauss = torch.exp(-(x * x) / (2.0 * sigma * sigma))
    gauss = gauss / gauss.sum()
    u = x / (math.sqrt(2.0) * sigma)
    return torch.stack([(-1.0 / math.sqrt(2.0)) ** n * _HERMITE[n](u) * gauss for n in range(order + 1)])


@CONVS.register(aliases=("SRF", "NJetConv"))
class SRFConv(ConvBase):
    """N-Jet convolution: kernels from a Gaussian-derivative basis with a learnable scale.

    Args:
        in_channels, out_channels, dim, stride, padding, fft: see ``ConvBase`` (not causal).
        order: highest derivative order of the basis (2 in the brief's baseline; up to 4).
        init_k: extent factor ``k``: the kernel radius is ``ceil(k * sigma)``.
        init_scale: initial ``scale``; ``sigma = 2^scale * scale_factor`` (0 -> sigma 1, 5x5).
        learn_scale: learn ``scale`` (else a fixed buffer).
        scale_factor: multiplies sigma, e.g. ``target/source`` resolution when testing a
            model at another resolution (the original's ``srf.scale``).
        bias: learnable output bias, zero-initialised.
        groups: channel groups.
    Parameters: ``alphas`` ``(C_out, C_in // groups, n_basis)`` ~ N(0, 1) (as published),
    ``scale`` ``(1,)``, ``bias``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int,
        causal: bool = False,
        order: int = 2,
        init_k: float = 2.0,
        init_scale: float = 0.0,
        learn_scale: bool = True,
        scale_factor: float = 1.0,
        bias: bool = True,
        fft: Union[bool, str] = "auto",
        stride: Union[int, Sequence[int]] = 1,
        padding="same",
        groups: int = 1,
    ):
        if causal:
            raise ValueError("SRFConv: the Gaussian-derivative basis is centred; causal=True is not supported")
        super().__init__(in_channels, out_channels, dim, False, stride, padding, fft)
        if order not in _HERMITE:
            raise ValueError(f"SRFConv: order must be 0..{max(_HERMITE)}, got {order!r}")
        if not init_k > 0 or not scale_factor > 0:
            raise ValueError(f"SRFConv: init_k and scale_factor must be > 0, got {init_k}, {scale_factor}")
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"SRFConv: groups={groups} must divide in_channels and out_channels")
        self.order, self.init_k, self.groups = order, float(init_k), groups
        self.scale_factor = float(scale_factor)
        self.orders = basis_orders(dim, order)
        self.alphas = nn.Parameter(torch.randn(out_channels, in_channels // groups, len(self.orders)))
        scale = torch.full((1,), float(init_scale))
        if learn_scale:
            self.scale = nn.Parameter(scale)
        else:
            self.register_buffer("scale", scale)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None

    def sigma(self) -> Tensor:
        return torch.pow(2.0, self.scale) * self.scale_factor

    def kernel_size(self) -> Tuple[int, ...]:
        radius = math.ceil(self.init_k * float(self.sigma().detach()))
        return (2 * max(radius, 0) + 1,) * self.dim

    def basis(self) -> Tensor:
        """``(n_basis, *kernel_size)``: the N-D Gaussian-derivative basis at the current scale."""
        sigma = self.sigma()[0]
        radius = (self.kernel_size()[0] - 1) // 2
        one_d = gaussian_derivatives(sigma, radius, self.order)
        size = 2 * radius + 1
        terms = []
        for orders in self.orders:
            term = one_d[orders[0]].view(size, *([1] * (self.dim - 1)))
            for d in range(1, self.dim):
                shape = [1] * self.dim
                shape[d] = size
                term = term * one_d[orders[d]].view(shape)
            terms.append(term.expand((size,) * self.dim))
        return torch.stack(terms)

    def generate_kernel(self) -> Tensor:
        """``(C_out, C_in // groups, *kernel_size)``."""
        basis = self.basis()
        return torch.einsum("oib,b...->oi...", self.alphas, basis)

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        return self.convolve(x, self.generate_kernel(), self.bias, self.groups)

    def bake(self) -> nn.Module:
        with torch.no_grad():
            kernel = self.generate_kernel().detach().clone()
        ksize = kernel.shape[2:]
        bias = None if self.bias is None else self.bias.detach().clone()
        fft = self.bake_fft(ksize, self.out_channels, self.groups)
        return make_baked_conv(kernel, bias, self.stride, self.pads(ksize), self.groups, fft,
                               input_size=self.baked_input_size())

    def extra_repr(self) -> str:
        return self._conv_repr() + f", order={self.order}, init_k={self.init_k}, scale_factor={self.scale_factor}"


def set_scale_factor(model: nn.Module, scale_factor: float) -> int:
    """Set every SRFConv's ``scale_factor`` in ``model`` (e.g. ``target/source`` resolution
    to test at another resolution); returns how many layers were changed."""
    if not scale_factor > 0:
        raise ValueError(f"set_scale_factor: scale_factor must be > 0, got {scale_factor}")
    layers = [m for m in model.modules() if isinstance(m, SRFConv)]
    for layer in layers:
        layer.scale_factor = float(scale_factor)
    return len(layers)

"""Shared plumbing of flexcore's convolution layers: argument checks, padding, baking."""
from __future__ import annotations

from typing import Callable, Iterable, List, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from flexcore.layers import functional as FC
from flexcore.layers.fft_cost import choose_fft
from flexcore.registry import UnknownNameError
from flexcore.registry.core import building_from_config

__all__ = ["ConvBase", "BakedConv1d", "BakedConv2d", "BakedConv3d", "make_baked_conv", "check_fft", "state_key"]

_SPATIAL_NAMES = {1: "L", 2: "H, W", 3: "D, H, W"}


def check_fft(layer: str, fft) -> Union[bool, str]:
    if fft is True or fft is False or fft == "auto":
        return fft
    raise ValueError(f"{layer}: fft must be True, False or 'auto', got {fft!r}")


def _positive_int(layer: str, name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{layer}: {name} must be a positive int, got {value!r}")
    return value


# -- helpers of the continuous convolutions (flexcore.layers.conv) -------------------------
Horizon = Union[str, int]


def state_key(tensors: Iterable[Tensor]) -> Optional[Tuple]:
    """Identity of a set of tensors' contents: object, version counter and storage.

    Any in-place update (optimiser step, ``load_state_dict``, DDP buffer broadcast) bumps the
    version counter; ``.to()``/``.double()``/``.cuda()`` swap the storage (new data pointer).
    Inference tensors carry no version counter, hence None (= do not cache).
    """
    try:
        return tuple((id(t), t._version, t.data_ptr()) for t in tensors)
    except RuntimeError:
        return None


def _module_tensors(modules: Sequence[nn.Module]) -> List[Tensor]:
    """Parameters and buffers of ``modules``, read fresh (weight norm may swap them)."""
    out = []
    for m in modules:
        out.extend(t for t in m._parameters.values() if t is not None)
        out.extend(t for t in m._buffers.values() if t is not None)
    return out


def _parse_horizon(layer: str, horizon) -> Horizon:
    if horizon in ("same", "full"):
        return horizon
    try:
        value = int(horizon)
        if isinstance(horizon, float) and value != horizon:
            raise ValueError
    except (TypeError, ValueError):
        raise ValueError(f"{layer}: horizon must be 'same', 'full' or an odd positive int, got {horizon!r}") from None
    if value < 1 or value % 2 == 0:
        raise ValueError(
            f"{layer}: horizon must be odd (the kernel needs a centre), got {value}; use {value + 1} "
            f"(e.g. resolution + 1, as the paper's image runs do)"
        )
    return value


def _resolve_factory(layer: str, arg: str, value, registry) -> Callable[..., nn.Module]:
    """A factory given directly (``@MAGNet`` in gin) or by registered name.

    A name resolves to the gin-bound entry when this layer is being built through gin or
    the registry, and to the plain class otherwise, so a layer constructed in Python never
    reads gin bindings (docs/layers.md, "Defaults").
    """
    if isinstance(value, str):
        try:
            return registry.get(value) if building_from_config() else registry.get_raw(value)
        except UnknownNameError as exc:
            raise UnknownNameError(f"{layer}.{arg}: {exc}") from None
    if not callable(value):
        raise TypeError(f"{layer}.{arg} must be a factory (e.g. @MAGNet in gin) or a registered name, got {value!r}")
    return value


class ConvBase(nn.Module):
    """Arguments and input checks every flexcore convolution shares.

    Args:
        in_channels, out_channels: channel counts (positive).
        dim: spatial dims, 1, 2 or 3.
        causal: 1-D only: output ``t`` depends on inputs ``<= t`` (left padding).
        stride: int or per-dim ints, honoured by every path.
        padding: ``'same'`` (default), ``'valid'``, int, per-dim ints or ``(left, right)`` pairs.
        fft: True, False or ``'auto'`` (measured cost model, see ``flexcore.layers.fft_cost``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int,
        causal: bool = False,
        stride: Union[int, Sequence[int]] = 1,
        padding="same",
        fft: Union[bool, str] = "auto",
    ):
        super().__init__()
        name = type(self).__name__
        self.in_channels = _positive_int(name, "in_channels", in_channels)
        self.out_channels = _positive_int(name, "out_channels", out_channels)
        if dim not in (1, 2, 3):
            raise ValueError(f"{name}: dim must be 1, 2 or 3, got {dim!r}")
        self.dim = dim
        if causal and dim != 1:
            raise ValueError(f"{name}: causal=True needs dim=1 (sequences), got dim={dim}")
        self.causal = bool(causal)
        strides = (stride,) * dim if isinstance(stride, int) else tuple(stride)
        if len(strides) != dim:
            raise ValueError(f"{name}: stride {stride!r} must be an int or {dim} ints")
        self.stride = tuple(_positive_int(name, "stride", s) for s in strides)
        try:
            FC.resolve_padding(padding, (3,) * dim, self.causal)
        except ValueError as exc:
            raise ValueError(f"{name}: {exc}") from None
        self.padding = padding
        self.fft = check_fft(name, fft)
        self._last_input_shape: Optional[torch.Size] = None  # what bake() sizes its FFT choice on

    def check_input(self, x: Tensor) -> None:
        """Clear error for a wrong rank or channel count, naming the layer."""
        if x.dim() != self.dim + 2 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"{type(self).__name__}(in_channels={self.in_channels}, dim={self.dim}): expected input of "
                f"shape (B, {self.in_channels}, {_SPATIAL_NAMES[self.dim]}), got {tuple(x.shape)}"
            )
        self._last_input_shape = x.shape

    def pads(self, kernel_size: Sequence[int]):
        return FC.resolve_padding(self.padding, kernel_size, self.causal)

    def convolve(self, x: Tensor, weight: Tensor, bias: Optional[Tensor], groups: int = 1) -> Tensor:
        return FC.conv(x, weight, bias, self.stride, self.pads(weight.shape[2:]), False, groups, self.fft)

    def bake_fft(self, kernel_size: Sequence[int], c_out: int, groups: int) -> Union[bool, str]:
        """The ``fft`` setting of a baked conv: 'auto' resolved to False where the direct
        path wins at the last input size seen (so that a plain ``nn.Conv*d`` can be used)."""
        if self.fft != "auto":
            return self.fft
        shape = self._last_input_shape
        if shape is None:
            return "auto"
        # kernel_maps=0: a baked conv computes its kernel spectrum once per input shape.
        pads = self.pads(kernel_size)
        conv_shape = FC.ConvShape(shape[0], self.in_channels, c_out, shape[2:], kernel_size, pads, groups)
        faster = choose_fft(self.fft, conv_shape, device_type=shape_device_type(self), kernel_maps=0, training=False)
        return "auto" if faster else False

    def baked_input_size(self) -> Optional[Tuple[int, ...]]:
        """Spatial size of the last input (what a baked conv is sized for), None before any."""
        shape = self._last_input_shape
        return None if shape is None else tuple(shape[2:])

    def bake(self) -> nn.Module:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    def _conv_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, dim={self.dim}"
        if self.causal:
            s += ", causal=True"
        if any(v != 1 for v in self.stride):
            s += f", stride={self.stride}"
        if self.padding != "same":
            s += f", padding={self.padding!r}"
        return s + f", fft={self.fft!r}"


def shape_device_type(module: nn.Module) -> str:
    for t in module.parameters():
        return t.device.type
    return "cpu"


class _BakedMixin:
    """A plain ``nn.Conv*d`` whose forward also does asymmetric/causal padding and FFT."""

    def _setup(self, pads: Sequence[Tuple[int, int]], fft) -> None:
        self.pads = [tuple(p) for p in pads]
        self.fft = fft

    def forward(self, x: Tensor) -> Tensor:
        if self.fft is False or (torch.is_grad_enabled() and self.weight.requires_grad):
            return FC.conv(x, self.weight, self.bias, self.stride, self.pads, False, self.groups, self.fft)
        # Inference: the path and the kernel spectrum are fixed per input shape; compute them
        # once (the spectrum is most of an FFT conv's cost when C_out * C_in > B * (C_in + C_out)).
        ksize = tuple(self.weight.shape[2:])
        key = (tuple(x.shape), x.dtype, x.device, self.weight._version, self.weight.data_ptr())
        cached = self.__dict__.get("_spectrum_cache")
        if cached is None or cached[0] != key:
            conv_shape = FC.ConvShape.for_input(x.shape, self.out_channels, ksize, self.pads, self.groups)
            use_fft = choose_fft(self.fft, conv_shape, device_type=x.device.type, kernel_maps=0, training=False)
            spectrum = None
            if use_fft:
                with torch.no_grad():
                    spectrum = FC.kernel_spectrum(self.weight.detach().to(torch.promote_types(x.dtype, torch.float32)),
                                                  FC.plan_fft_sizes(x.shape[2:], ksize, self.pads))
            cached = self.__dict__["_spectrum_cache"] = (key, spectrum)
        if cached[1] is None:
            return FC.conv_spatial(x, self.weight, self.bias, self.stride, self.pads, self.groups)
        return FC.conv_fft(x, None, self.bias, self.stride, self.pads, self.groups, weight_hat=cached[1],
                           kernel_size=ksize)

    def __getstate__(self):
        state = dict(super().__getstate__())
        state.pop("_spectrum_cache", None)  # transient, rebuilt on the next call
        return state

    def extra_repr(self) -> str:
        return super().extra_repr() + f", pads={self.pads}, fft={self.fft!r}"


class BakedConv1d(_BakedMixin, nn.Conv1d):
    """``nn.Conv1d`` with a fixed (baked) kernel, causal/asymmetric padding and an FFT path."""


class BakedConv2d(_BakedMixin, nn.Conv2d):
    """``nn.Conv2d`` with a fixed (baked) kernel, asymmetric padding and an FFT path."""


class BakedConv3d(_BakedMixin, nn.Conv3d):
    """``nn.Conv3d`` with a fixed (baked) kernel, asymmetric padding and an FFT path."""


_PLAIN = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_BAKED = {1: BakedConv1d, 2: BakedConv2d, 3: BakedConv3d}


def make_baked_conv(
    weight: Tensor,
    bias: Optional[Tensor],
    stride: Sequence[int],
    pads: Sequence[Tuple[int, int]],
    groups: int = 1,
    fft: Union[bool, str] = False,
    input_size: Optional[Sequence[int]] = None,
) -> nn.Module:
    """An ``nn.Conv*d`` holding copies of ``weight``/``bias``.

    A genuinely plain ``nn.Conv*d`` when the padding is symmetric, the direct path is wanted
    (``fft`` False) and the padding is none or safe to leave to ``nn.Conv*d`` at
    ``input_size`` (the spatial size the layer last saw; see
    :func:`flexcore.layers.functional.needs_explicit_padding`); otherwise a ``BakedConv*d``
    subclass that pads asymmetrically (causal, even kernels), pads explicitly where implicit
    padding is unsafe and may use the FFT path.
    """
    dims = weight.dim() - 2
    c_out, cin_g = weight.shape[:2]
    symmetric = all(a == b for a, b in pads)
    safe = not any(max(p) for p in pads) or (
        input_size is not None and not FC.needs_explicit_padding(input_size, weight.shape[2:], pads))
    cls = _PLAIN[dims] if symmetric and fft is False and safe else _BAKED[dims]
    padding = tuple(a for a, _ in pads) if cls is _PLAIN[dims] else 0
    module = cls(
        cin_g * groups,
        c_out,
        tuple(weight.shape[2:]),
        stride=tuple(stride),
        padding=padding,
        groups=groups,
        bias=bias is not None,
        device=weight.device,
        dtype=weight.dtype,
    )
    with torch.no_grad():
        module.weight.copy_(weight)
        if bias is not None:
            module.bias.copy_(bias)
    if isinstance(module, _BakedMixin):
        module._setup(pads, fft)
    return module

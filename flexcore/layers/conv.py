"""Continuous-kernel convolutions: CKConv, FlexConv, SeparableFlexConv (discrete Conv: conv_discrete).

A continuous convolution samples its kernel net on a grid of relative positions in
``[-1, 1]^D`` (``train_length`` points per dim, fixed on the first forward like the
original), optionally multiplies a mask and crops the grid to the mask's support
(FlexConv), and convolves by the spatial or the FFT path. In eval mode the generated
kernel is cached until a parameter or buffer changes. See docs/layers.md.
"""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
from torch import Tensor

from flexcore.layers import functional as FC
from flexcore.layers.conv_base import (  # noqa: F401  (state_key: re-exported, its old home)
    ConvBase, Horizon, _module_tensors, _parse_horizon, _resolve_factory, make_baked_conv, state_key,
)
from flexcore.layers.conv_discrete import Conv  # noqa: F401  (old import path; pickled models name it)
from flexcore.layers.fft_cost import choose_fft
from flexcore.layers.lowrank import hidden_width, low_rank_kernel_and_spectrum, supports_low_rank
from flexcore.registry import CONVS, KERNEL_NETS, MASKS
from flexcore.utils.modules import eval_mode

__all__ = ["ContinuousConv", "CKConv", "FlexConv", "SeparableFlexConv", "Conv", "state_key"]


class ContinuousConv(ConvBase):
    """Base of continuous-kernel convolutions: kernel net on a relative-position grid, then conv.

    Args:
        in_channels, out_channels, dim, causal, stride, padding, fft: see ``ConvBase``.
        kernel_net: kernel-net factory ``(dim, out_channels) -> nn.Module`` or registered
            name; default MAGNet.
        horizon: grid size per dim: ``'same'`` (input size, fixed on first forward),
            ``'full'`` (``2 * size - 1``) or an odd int.
        bias: learnable output bias, zero-initialised.
        sampling_rate_norm: factor on the kernel (``(source/target)^2`` when evaluating at a
            finer resolution than trained on).
        groups: channel groups of the continuous kernel (``in_channels`` = depthwise).
    """

    last_path: Optional[str] = None  # "fft" / "direct": the path of the latest non-cached forward

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int,
        causal: bool = False,
        kernel_net: Union[Callable[..., nn.Module], str, None] = None,
        horizon: Horizon = "same",
        bias: bool = True,
        fft: Union[bool, str] = "auto",
        stride: Union[int, Sequence[int]] = 1,
        padding="same",
        sampling_rate_norm: float = 1.0,
        groups: int = 1,
    ):
        super().__init__(in_channels, out_channels, dim, causal, stride, padding, fft)
        name = type(self).__name__
        self.horizon = _parse_horizon(name, horizon)
        if groups < 1 or in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels and out_channels")
        self.groups = groups
        self.sampling_rate_norm = float(sampling_rate_norm)
        factory = _resolve_factory(name, "kernel_net", "MAGNet" if kernel_net is None else kernel_net, KERNEL_NETS)
        # Kernel entry (o, i) is kernel-net output channel o * C_in/groups + i (the original's layout).
        self.kernel_channels = (out_channels, in_channels // groups)
        self.kernel_net = factory(dim, out_channels * (in_channels // groups))
        self.mask: Optional[nn.Module] = None
        self.dynamic_cropping = False
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        # Grid points per dim; 0 = not yet fixed (set on the first forward or by set_resolution).
        self.register_buffer("train_length", torch.zeros(dim, dtype=torch.int32))
        if isinstance(self.horizon, int):
            self.train_length.fill_(self.horizon)
        self.conv_kernel = None  # kernel of the latest forward (weight decay reads it)
        self._length_cache: Optional[Tuple] = None
        self._grid_cache: Optional[Tuple] = None
        self._crop_cache: Optional[Tuple] = None
        self._kernel_cache: Optional[dict] = None
        self._modules_cache: Optional[Tuple[list, list]] = None

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, nn.Module) and "_modules_cache" in self.__dict__:
            self.__dict__["_modules_cache"] = None  # a replaced kernel net or mask
        super().__setattr__(name, value)

    def _apply(self, fn, recurse=True):
        self.clear_cache()
        return super()._apply(fn, recurse)

    def _state_modules(self) -> Tuple[list, list]:
        """(all submodules, mask submodules), cached: tensors are re-read from them each call."""
        if self.__dict__.get("_modules_cache") is None:
            mask = [] if self.mask is None else list(self.mask.modules())
            self._modules_cache = (list(self.modules()), mask)
        return self._modules_cache

    # -- grid -------------------------------------------------------------------------
    def _grid_sizes(self) -> Tuple[int, ...]:
        # Host copy of the buffer, re-read only when the buffer changed (no sync per forward).
        key = state_key([self.train_length])
        if key is None or self._length_cache is None or self._length_cache[0] != key:
            self._length_cache = (key, tuple(int(v) for v in self.train_length.tolist()))
        return self._length_cache[1]

    def grid_size(self) -> Tuple[int, ...]:
        """Full (uncropped) grid size per dim; raises if not fixed yet."""
        sizes = self._grid_sizes()
        if min(sizes) < 1:
            raise RuntimeError(
                f"{type(self).__name__}: the grid size is fixed by the first forward (horizon="
                f"{self.horizon!r}); run one forward pass or call set_resolution() first"
            )
        return sizes

    @property
    def grid_length(self) -> int:
        """Side of the full position grid (0 while not fixed); the smallest side if they differ,
        the conservative choice for the anti-aliasing regulariser's Nyquist frequency."""
        return min(self._grid_sizes())

    def _fix_grid(self, x: Tensor) -> None:
        spatial = x.shape[2:]
        if self.horizon == "same":
            sizes = list(spatial)
        elif self.horizon == "full":
            sizes = [2 * n - 1 for n in spatial]
        else:
            sizes = [self.horizon] * self.dim
        with torch.no_grad():
            self.train_length.copy_(torch.tensor(sizes, dtype=torch.int32))

    def set_resolution(self, horizon: Optional[Horizon] = None, sampling_rate_norm: Optional[float] = None) -> None:
        """Change the grid (cross-resolution): a new ``horizon`` and/or ``sampling_rate_norm``.

        ``'same'``/``'full'`` re-fix the grid size on the next forward.
        """
        if horizon is not None:
            self.horizon = _parse_horizon(type(self).__name__, horizon)
            with torch.no_grad():
                self.train_length.fill_(self.horizon if isinstance(self.horizon, int) else 0)
        if sampling_rate_norm is not None:
            self.sampling_rate_norm = float(sampling_rate_norm)
        self.clear_cache()

    def clear_cache(self) -> None:
        """Drop cached grids, crops and kernels (only needed after edits through ``.data``)."""
        self._length_cache = self._grid_cache = self._crop_cache = self._kernel_cache = None
        self._modules_cache = None

    def _device_dtype(self) -> Tuple[torch.device, torch.dtype]:
        """Where and in which dtype the kernel net expects its positions."""
        for p in self.kernel_net.parameters():
            return p.device, p.dtype
        return self.train_length.device, torch.float32

    def full_grid(self) -> Tensor:
        """The uncropped relative-position grid ``(1, D, *grid_size)``."""
        sizes = self.grid_size()
        device, dtype = self._device_dtype()
        key = (sizes, device, dtype)
        if self._grid_cache is None or self._grid_cache[0] != key:
            # linspace in float32 (bit-exact with the original) or float64, then the kernel net's dtype.
            exact = torch.float64 if dtype == torch.float64 else torch.float32
            self._grid_cache = (key, FC.rel_positions(sizes, device=device, dtype=exact).to(dtype))
        return self._grid_cache[1]

    # -- cropping ---------------------------------------------------------------------
    def _crop_key(self) -> Optional[Tuple]:
        key = state_key(_module_tensors(self._state_modules()[1]))
        return None if key is None else (key, self.grid_size(), self.dynamic_cropping)

    def crop(self) -> Tuple[slice, ...]:
        """Per-dim slices of the full grid to evaluate (all of it without a cropping mask)."""
        sizes = self.grid_size()
        if self.mask is None or not self.dynamic_cropping:
            return tuple(slice(0, n) for n in sizes)
        key = self._crop_key()
        if key is not None and self._crop_cache is not None and self._crop_cache[0] == key:
            return self._crop_cache[1]
        bounds = self.mask.bounds()
        slices = self._slices_from_bounds(None if bounds is None else bounds.detach().cpu())
        if key is not None:
            self._crop_cache = (key, slices)
        return slices

    def _slices_from_bounds(self, bounds: Optional[Tensor]) -> Tuple[slice, ...]:
        sizes = self.grid_size()
        if bounds is None:
            return tuple(slice(0, n) for n in sizes)
        _, dtype = self._device_dtype()
        exact = torch.float64 if dtype == torch.float64 else torch.float32
        coords = [FC.grid_coordinates(n, dtype=exact).to(dtype) for n in sizes]
        return FC.crop_slices(coords, bounds, self.causal)

    def _set_crop_from_bounds(self, bounds_cpu: Tensor) -> None:
        """Fill the crop cache from bounds fetched in bulk (see ``flexcore.layers.refresh_crops``)."""
        key = self._crop_key()
        if key is not None:
            self._crop_cache = (key, self._slices_from_bounds(bounds_cpu))

    def kernel_size(self) -> Tuple[int, ...]:
        """Current kernel size per dim (after dynamic cropping)."""
        return tuple(s.stop - s.start for s in self.crop())

    # -- statistics for logs and reports (read at log time, never per step) ----------------
    def energy_outside_crop(self) -> Tensor:
        """Share of the kernel's energy (sum of squares, mask applied) on the full grid that
        the crop leaves out: a 0-d tensor on the layer's device (no host read).

        Evaluated in eval mode, so kernel nets with BatchNorm use and keep their running
        statistics; 0 for a layer that does not crop.
        """
        with torch.no_grad(), eval_mode(self):
            grid = self.full_grid()
            kernel = self.kernel_net(grid) * self.sampling_rate_norm
            if self.mask is not None:
                kernel = kernel * self.mask(grid)
            energy = kernel.float().square()
            total = energy.sum()
            kept = energy[(slice(None), slice(None), *self.crop())].sum()
            return ((total - kept) / total.clamp_min(torch.finfo(torch.float32).tiny)).clamp_min(0.0)

    def kernel_stats(self) -> Dict[str, Any]:
        """Host summary of the layer's kernel: ``grid_size`` and ``kernel_size`` per dim,
        ``energy_outside_crop``, ``path`` (of the latest non-cached forward: "fft",
        "direct" or None) and ``mask`` (``Mask.describe()`` as lists; None without a mask).

        Copies device values to the host: for logs and reports, not for every step.
        """
        mask = None if self.mask is None else {k: v.tolist() for k, v in self.mask.describe().items()}
        return {
            "grid_size": list(self.grid_size()),
            "kernel_size": list(self.kernel_size()),
            "energy_outside_crop": float(self.energy_outside_crop()),
            "path": self.last_path,
            "mask": mask,
        }

    # -- kernel ------------------------------------------------------------------------
    def _positions(self, slices: Sequence[slice]) -> Tensor:
        return self.full_grid()[(slice(None), slice(None), *slices)].contiguous()

    def _compute_kernel(self) -> Tensor:
        positions = self._positions(self.crop())
        out = self.kernel_net(positions)
        c_out, c_in = self.kernel_channels
        expected = (1, c_out * c_in, *positions.shape[2:])
        if tuple(out.shape) != expected:
            raise RuntimeError(
                f"{type(self).__name__}.kernel_net ({type(self.kernel_net).__name__}) returned shape "
                f"{tuple(out.shape)} for positions {tuple(positions.shape)}; expected {expected}"
            )
        kernel = out.view(c_out, c_in, *positions.shape[2:])
        kernel = kernel * self.sampling_rate_norm
        if self.mask is not None:
            kernel = kernel * self.mask(positions)
        return kernel

    def _kernel_key(self) -> Optional[Tuple]:
        key = state_key(_module_tensors(self._state_modules()[0]))
        return None if key is None else (key, self.sampling_rate_norm, self.dynamic_cropping, self.padding, self.fft)

    def _cacheable(self) -> bool:
        if self.training:
            return False
        return not torch.is_grad_enabled() or not any(p.requires_grad for p in self.parameters())

    def _cached(self) -> dict:
        """Eval-mode cache entry for the current parameters: the kernel, its padding and, per
        input shape, the path chosen and the kernel spectrum."""
        key = self._kernel_key()
        entry = self._kernel_cache
        if key is None or entry is None or entry["key"] != key:
            with torch.no_grad():
                kernel = self._compute_kernel()
            entry = {"key": key, "kernel": kernel, "pads": self.pads(kernel.shape[2:]), "plans": {}}
            self._kernel_cache = entry if key is not None else None
        return entry

    def generate_kernel(self) -> Tensor:
        """The kernel as convolved, ``(C_out, C_in // groups, *kernel_size)``.

        In eval mode without gradients it comes from the cache while no parameter changed.
        """
        if not self._cacheable():
            self._kernel_cache = None
            return self._compute_kernel()
        return self._cached()["kernel"]

    def _low_rank_maps(self) -> Optional[int]:
        """Kernel transforms on the low-rank path (H + 1), or None where it does not pay."""
        if not supports_low_rank(self.kernel_net):
            return None
        maps = hidden_width(self.kernel_net) + 1
        return maps if maps < self.kernel_channels[0] * self.kernel_channels[1] else None

    def _use_fft(self, x: Tensor, ksize: Sequence[int], pads, kernel_maps: Optional[int], training: bool) -> bool:
        shape = FC.ConvShape(x.shape[0], self.in_channels, self.kernel_channels[0], x.shape[2:], ksize, pads, self.groups)
        return choose_fft(self.fft, shape, device_type=x.device.type, kernel_maps=kernel_maps, training=training)

    def _eval_conv(self, x: Tensor, bias: Optional[Tensor]) -> Tensor:
        """Eval mode without gradients: cached kernel (and spectrum); one key check per call."""
        entry = self._cached()
        kernel, pads = entry["kernel"], entry["pads"]
        self.conv_kernel = kernel
        plan = entry["plans"].get(x.shape)
        if plan is None:
            ksize = kernel.shape[2:]
            spectrum = None
            if self._use_fft(x, ksize, pads, kernel_maps=0, training=False):
                with torch.no_grad():
                    spectrum = FC.kernel_spectrum(kernel, FC.plan_fft_sizes(x.shape[2:], ksize, pads))
            plan = entry["plans"][x.shape] = (spectrum,)
        if plan[0] is not None:
            return FC.conv_fft(x, None, bias, self.stride, pads, self.groups, weight_hat=plan[0],
                               kernel_size=kernel.shape[2:])
        return FC.conv_spatial(x, kernel, bias, self.stride, pads, self.groups)

    def _convolve_kernel(self, x: Tensor, bias: Optional[Tensor]) -> Tensor:
        if min(self._grid_sizes()) == 0:
            self._fix_grid(x)
        if self._cacheable():
            return self._eval_conv(x, bias)
        self._kernel_cache = None
        slices = self.crop()
        ksize = [s.stop - s.start for s in slices]
        pads = self.pads(ksize)
        low_rank = self._low_rank_maps()
        use_fft = self._use_fft(x, ksize, pads, kernel_maps=low_rank, training=torch.is_grad_enabled())
        self.last_path = "fft" if use_fft else "direct"
        if use_fft:
            sizes = FC.plan_fft_sizes(x.shape[2:], ksize, pads)
            if low_rank is not None:
                positions = self._positions(slices)
                mask = None if self.mask is None else self.mask(positions)
                kernel, spectrum = low_rank_kernel_and_spectrum(
                    self.kernel_net, positions, mask, self.kernel_channels, self.sampling_rate_norm, sizes
                )
            else:
                kernel = self._compute_kernel()
                spectrum = FC.kernel_spectrum(kernel, sizes)
            self.conv_kernel = kernel  # a function on the low-rank path: built only if read
            return FC.conv_fft(x, None, bias, self.stride, pads, self.groups, weight_hat=spectrum, kernel_size=ksize)
        kernel = self._compute_kernel()
        self.conv_kernel = kernel
        return FC.conv_spatial(x, kernel, bias, self.stride, pads, self.groups)

    def __getstate__(self):
        # Caches and the latest kernel (possibly a closure) are transient: not pickled.
        state = dict(self.__dict__)
        state.update(_conv_kernel=None, _length_cache=None, _grid_cache=None, _crop_cache=None, _kernel_cache=None,
                     _modules_cache=None)
        return state

    @property
    def conv_kernel(self) -> Optional[Tensor]:
        """The kernel of the latest forward, with its graph (what the original's weight decay
        penalises). The low-rank FFT path builds it only when read."""
        kernel = self.__dict__.get("_conv_kernel")
        if callable(kernel):
            kernel = kernel()
            self.__dict__["_conv_kernel"] = kernel
        return kernel

    @conv_kernel.setter
    def conv_kernel(self, value) -> None:
        self.__dict__["_conv_kernel"] = value

    def forward(self, x: Tensor) -> Tensor:
        """``(B, in_channels, *spatial) -> (B, out_channels, *spatial')``."""
        self.check_input(x)
        return self._convolve_kernel(x, self.bias)

    def bake(self) -> nn.Module:
        """An equivalent ``nn.Conv*d`` holding the current eval-mode kernel (cropped, masked)."""
        return self._bake_kernel_conv(None if self.bias is None else self.bias.detach().clone(), self.out_channels)

    def _bake_kernel_conv(self, bias: Optional[Tensor], c_out: int) -> nn.Module:
        """The continuous kernel's convolution, baked: eval-mode kernel, ``bias``, the FFT
        choice at the last input size (``c_out``: the kernel's output channels)."""
        was_training = self.training
        self.eval()
        try:
            with torch.no_grad():
                kernel = self._compute_kernel().detach().clone()
        finally:
            self.train(was_training)
        ksize = kernel.shape[2:]
        fft = self.bake_fft(ksize, c_out, self.groups)
        return make_baked_conv(kernel, bias, self.stride, self.pads(ksize), self.groups, fft,
                               input_size=self.baked_input_size())

    def extra_repr(self) -> str:
        s = self._conv_repr() + f", horizon={self.horizon!r}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.sampling_rate_norm != 1.0:
            s += f", sampling_rate_norm={self.sampling_rate_norm}"
        if self.mask is not None:
            s += f", dynamic_cropping={self.dynamic_cropping}"
        return s


@CONVS.register()
class CKConv(ContinuousConv):
    """Continuous kernel convolution (Romero et al. 2022): the kernel net sampled on the full grid.

    Args: see ``ContinuousConv``.
    """


@CONVS.register()
class FlexConv(ContinuousConv):
    """CKConv with a learnable mask that also crops the grid: the kernel size is learned.

    Forward order as in the original's FlexConv: grid -> crop to the mask's support (no grad)
    -> kernel net on the cropped grid -> times ``sampling_rate_norm`` -> times mask -> conv.
    The kernel net's Gaussian centres start inside the initial mask (``set_spatial_init``,
    ``1.667 * sigma`` for the Gaussian mask).

    Args:
        mask: mask factory ``(dim, causal=...) -> nn.Module`` or registered name; default
            GaussianMask.
        dynamic_cropping: evaluate only the grid points inside the mask's support.
        other arguments: see ``ContinuousConv``.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dim: int,
        causal: bool = False,
        kernel_net: Union[Callable[..., nn.Module], str, None] = None,
        mask: Union[Callable[..., nn.Module], str, None] = None,
        horizon: Horizon = "same",
        bias: bool = True,
        fft: Union[bool, str] = "auto",
        stride: Union[int, Sequence[int]] = 1,
        padding="same",
        sampling_rate_norm: float = 1.0,
        dynamic_cropping: bool = True,
        groups: int = 1,
    ):
        super().__init__(
            in_channels, out_channels, dim, causal, kernel_net, horizon, bias, fft, stride, padding,
            sampling_rate_norm, groups,
        )
        name = type(self).__name__
        mask_factory = _resolve_factory(name, "mask", "GaussianMask" if mask is None else mask, MASKS)
        self.mask = mask_factory(dim, causal=causal)
        self.dynamic_cropping = bool(dynamic_cropping)
        spread = getattr(self.mask, "spatial_init_value", lambda: None)()
        if spread is not None and hasattr(self.kernel_net, "set_spatial_init"):
            self.kernel_net.set_spatial_init(spread)


@CONVS.register()
class SeparableFlexConv(FlexConv):
    """Depthwise FlexConv (one continuous kernel per input channel) followed by a pointwise 1x1 conv.

    As in the successor CCNN work: the kernel net outputs ``in_channels`` kernels, the 1x1
    ``pointwise`` conv (Kaiming-normal init, no bias of its own) mixes channels, and
    ``bias`` is added after it.

    Args: see ``FlexConv`` (``groups`` is fixed to ``in_channels``).
    """

    def __init__(self, in_channels: int, out_channels: int, dim: int, causal: bool = False, **kwargs):
        if "groups" in kwargs:
            raise ValueError("SeparableFlexConv: groups is fixed to in_channels (depthwise)")
        want_bias = kwargs.pop("bias", True)
        super().__init__(in_channels, in_channels, dim, causal, bias=False, groups=in_channels, **kwargs)
        self.out_channels = out_channels
        self.pointwise = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[dim - 1](in_channels, out_channels, 1, bias=False)
        nn.init.kaiming_normal_(self.pointwise.weight)
        self.bias = nn.Parameter(torch.zeros(out_channels)) if want_bias else None

    def forward(self, x: Tensor) -> Tensor:
        self.check_input(x)
        y = self.pointwise(self._convolve_kernel(x, None))
        if self.bias is not None:
            y = y + self.bias.view(1, -1, *([1] * self.dim))
        return y

    def bake(self) -> nn.Module:
        depthwise = self._bake_kernel_conv(None, self.in_channels)
        pointwise = make_baked_conv(
            self.pointwise.weight.detach().clone(),
            None if self.bias is None else self.bias.detach().clone(),
            (1,) * self.dim, [(0, 0)] * self.dim,
        )
        return nn.Sequential(depthwise, pointwise)

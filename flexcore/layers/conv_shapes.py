"""Shape arithmetic of a convolution: padding, output sizes, taps that meet the input, FFT lengths.

Plain integers in, plain integers out; no tensors are touched. Both convolution paths
(:mod:`flexcore.layers.conv_paths`), the FFT cost model and the FLOP counter size their work here;
:class:`ConvShape` is the one description of a convolution that the FFT-or-direct choice takes.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from typing import List, Sequence, Tuple, Union

__all__ = [
    "ConvShape",
    "Padding",
    "resolve_padding",
    "needs_explicit_padding",
    "overlapping_taps",
    "next_fast_len",
    "fft_sizes",
    "plan_fft_sizes",
]

Padding = Union[str, int, Sequence[int], Sequence[Tuple[int, int]]]


# -- one convolution ------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ConvShape:
    """The geometry of one convolution, as the FFT-or-direct choice sees it.

    The input is ``(batch, c_in, *spatial)``, the kernel ``(c_out, c_in // groups,
    *kernel_size)`` and ``pads`` the ``(left, right)`` zero padding per spatial dim (as
    :func:`resolve_padding` returns it). Stride is not part of it: the cost model prices the
    stride-1 output. Sizes are stored as plain ints and tuples (under jit tracing they arrive
    as 0-d tensors), so a ConvShape compares by value and is hashable: the autotune keeps
    its measurements per ConvShape.
    """

    batch: int
    c_in: int
    c_out: int
    spatial: Tuple[int, ...]
    kernel_size: Tuple[int, ...]
    pads: Tuple[Tuple[int, int], ...]
    groups: int = 1

    def __post_init__(self) -> None:
        fields = {
            "batch": int(self.batch), "c_in": int(self.c_in), "c_out": int(self.c_out),
            "spatial": tuple(int(n) for n in self.spatial), "kernel_size": tuple(int(k) for k in self.kernel_size),
            "pads": tuple((int(left), int(right)) for left, right in self.pads), "groups": int(self.groups),
        }
        if not len(fields["spatial"]) == len(fields["kernel_size"]) == len(fields["pads"]):
            raise ValueError(f"ConvShape: spatial {fields['spatial']}, kernel_size {fields['kernel_size']} and "
                             f"pads {fields['pads']} must have one entry per spatial dim")
        for name, value in fields.items():
            object.__setattr__(self, name, value)

    @classmethod
    def for_input(cls, input_shape: Sequence[int], c_out: int, kernel_size: Sequence[int],
                  pads: Sequence[Tuple[int, int]], groups: int = 1) -> "ConvShape":
        """From the input's shape ``(B, C_in, *spatial)`` and the kernel's output channels and size."""
        return cls(input_shape[0], input_shape[1], c_out, input_shape[2:], kernel_size, pads, groups)

    @classmethod
    def of(cls, x, weight, pads: Sequence[Tuple[int, int]], groups: int = 1) -> "ConvShape":
        """From an input ``(B, C_in, *spatial)`` and a kernel ``(C_out, C_in // groups, *k)``
        (tensors, or anything with a ``.shape``) and the resolved ``pads``."""
        return cls.for_input(x.shape, weight.shape[0], weight.shape[2:], pads, groups)

    @property
    def dims(self) -> int:
        """Spatial dimensions (1, 2 or 3)."""
        return len(self.kernel_size)

    def out_size(self) -> List[int]:
        """Spatial size of the stride-1 output (an entry below 1: the kernel does not fit)."""
        return [_out_len(n, k, pad, 1) for n, k, pad in zip(self.spatial, self.kernel_size, self.pads)]


# -- padding --------------------------------------------------------------------------
def resolve_padding(padding: Padding, kernel_size: Sequence[int], causal: bool = False) -> List[Tuple[int, int]]:
    """``(left, right)`` zero padding per spatial dim.

    Args:
        padding: ``'same'`` (output size = input size at stride 1; for an even kernel the
            extra zero goes right, as ``nn.Conv*d(padding='same')``), ``'valid'`` (none),
            an int, a per-dim tuple of ints, or a per-dim tuple of ``(left, right)`` pairs.
        kernel_size: the kernel's spatial size.
        causal: 1-D causal: ``'same'`` means ``K - 1`` zeros on the left only, so tap ``K-1``
            meets ``x[t]`` (the original's causal padding; its leading zero tap for even
            kernels changes nothing and is not materialised).
    """
    dims = len(kernel_size)
    if isinstance(padding, str):
        if padding == "same":
            if causal:
                return [(k - 1, 0) for k in kernel_size]
            return [((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel_size]
        if padding == "valid":
            return [(0, 0)] * dims
        raise ValueError(f"padding must be 'same', 'valid', an int or a tuple, got {padding!r}")
    if causal:
        raise ValueError(f"a causal convolution pads itself ('same' or 'valid'), got padding={padding!r}")
    if isinstance(padding, int):
        pairs = [(padding, padding)] * dims
    else:
        padding = list(padding)
        if len(padding) != dims:
            raise ValueError(f"padding {padding} has {len(padding)} entries for a {dims}-D kernel")
        pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in padding]
    if any(len(p) != 2 or min(p) < 0 for p in pairs):
        raise ValueError(f"padding must be non-negative, got {padding!r}")
    return [tuple(int(v) for v in p) for p in pairs]


def _flat_pad(pairs: Sequence[Tuple[int, int]]) -> List[int]:
    """``F.pad`` order: last dim first."""
    return [v for left, right in reversed(pairs) for v in (left, right)]


def _out_len(n: int, k: int, pad: Tuple[int, int], stride: int) -> int:
    return (n + pad[0] + pad[1] - k) // stride + 1


# -- direct path ------------------------------------------------------------------------
def needs_explicit_padding(spatial: Sequence[int], kernel_size: Sequence[int], pads: Sequence[Tuple[int, int]]) -> bool:
    """True where a direct convolution must not get its padding implicitly.

    oneDNN's CPU weight-gradient kernel (torch 2.14, oneDNN 3.12) corrupts the heap when the
    implicit padding along the first spatial dim reaches the input size minus one (e.g. a
    33x7 kernel on 16x16, 24 channels); docs/layers.md has the measurements. This guard is
    wider (any dim, any padding side at least half the input, or a kernel larger than the
    input) and decided from shapes only, since the fault depends on the CPU.
    """
    return any(k > n or 2 * max(p) >= n for n, k, p in zip(spatial, kernel_size, pads))


def overlapping_taps(
    spatial: Sequence[int], kernel_size: Sequence[int], pads: Sequence[Tuple[int, int]], stride: Sequence[int]
) -> Tuple[Tuple[slice, ...], List[Tuple[int, int]]]:
    """Per-dim slice of kernel taps that meet the input at some output, and the padding
    that yields the same outputs with the cropped kernel.

    Tap ``i`` of output ``o`` reads input ``o * s + i - left``; taps outside
    ``[left - (out-1) s, left + n)`` read only padding zeros, so dropping them changes
    neither the output nor any gradient (theirs is zero either way).
    """
    slices, new_pads = [], []
    for n, k, (left, right), s in zip(spatial, kernel_size, pads, stride):
        out = _out_len(n, k, (left, right), s)
        lo = min(max(0, left - (out - 1) * s), k - 1)
        hi = max(min(k, left + n), lo + 1)  # one tap (reading zeros) where none meets the input
        new_left = left - lo
        new_right = max(0, (out - 1) * s + (hi - lo) - n - new_left)
        slices.append(slice(lo, hi))
        new_pads.append((new_left, new_right))
    return tuple(slices), new_pads


# -- FFT lengths -------------------------------------------------------------------------
@functools.lru_cache(maxsize=4096)
def next_fast_len(n: int) -> int:
    """Smallest even ``m >= n`` whose prime factors are 2, 3, 5 and 7 (fast for pocketfft and cuFFT).

    Even, because the real FFT of an even length halves cleanly; 1 stays 1.
    """
    if n <= 1:
        return 1
    best = 2 ** math.ceil(math.log2(n))
    p7 = 1
    while p7 < best:
        p5 = p7
        while p5 < best:
            p3 = p5
            while p3 < best:
                m = p3
                while m < n:
                    m *= 2
                if m < best and m % 2 == 0:
                    best = m
                p3 *= 3
            p5 *= 5
        p7 *= 7
    return best


def fft_sizes(spatial: Sequence[int], kernel_size: Sequence[int], pads: Sequence[Tuple[int, int]]) -> List[int]:
    """Smallest fast transform length per dim that avoids circular wrap-around.

    Circular convolution of length ``N`` equals the padded linear one on the kept outputs
    when ``N >= n + max(left, right)`` (and ``N >= k``): the zeros the padding would add
    are supplied by the transform's own zero extension, so 'same' needs only ``n + (k-1)/2``,
    not ``n + k - 1``.
    """
    # int(): under jit tracing, sizes are 0-d tensors (slow arithmetic, defeats the cache).
    return [next_fast_len(int(max(n + max(p), k))) for n, k, p in zip(spatial, kernel_size, pads)]


def plan_fft_sizes(spatial: Sequence[int], kernel_size: Sequence[int], pads: Sequence[Tuple[int, int]]) -> List[int]:
    """The transform lengths :func:`flexcore.layers.conv_paths.conv_fft` will use for this geometry (key of cached spectra)."""
    excess = [max(0, left - (k - 1)) for (left, _), k in zip(pads, kernel_size)]
    spatial = [n + e for n, e in zip(spatial, excess)]
    pads = [(left - e, right) for (left, right), e in zip(pads, excess)]
    return fft_sizes(spatial, kernel_size, pads)

"""Pieces the backbones share: norms, nonlinearities, width factors, 1x1 "linear" convs."""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence

import torch.nn as nn

__all__ = [
    "NORMS",
    "NONLINEARITIES",
    "build_norm",
    "build_nonlinearity",
    "expand_width_factors",
    "linear_nd",
    "check_dim",
    "build_conv",
]

NORMS = ("BatchNorm", "LayerNorm", "none")
NONLINEARITIES = ("ReLU", "LeakyReLU")


def check_dim(backbone: str, dim: int, supported: Sequence[int]) -> None:
    """Raise a clear error when ``dim`` is not one the backbone builds."""
    if dim not in supported:
        raise ValueError(
            f"{backbone} builds for dim in {tuple(supported)} (1 = sequences, 2 = images, 3 = volumes), "
            f"got dim={dim}. The dim comes from the dataset's metadata (len(metadata.shape))."
        )


def build_norm(norm: str, channels: int, dim: int) -> nn.Module:
    """``BatchNorm`` -> ``BatchNorm{dim}d``; ``LayerNorm`` -> ``GroupNorm(1, C, eps=1e-12)`` (the
    original's channel LayerNorm over channels and positions); ``none`` -> identity."""
    if norm == "BatchNorm":
        return getattr(nn, f"BatchNorm{dim}d")(channels)
    if norm == "LayerNorm":
        return nn.GroupNorm(1, channels, eps=1e-12)
    if norm in ("none", "", None):
        return nn.Identity()
    raise ValueError(f"Unknown norm {norm!r}; use one of {NORMS}.")


def build_nonlinearity(nonlinearity: str) -> nn.Module:
    """``ReLU`` or ``LeakyReLU`` (slope 0.01, PyTorch's default, as the original)."""
    if nonlinearity == "ReLU":
        return nn.ReLU()
    if nonlinearity == "LeakyReLU":
        return nn.LeakyReLU()
    raise ValueError(f"Unknown nonlinearity {nonlinearity!r}; use one of {NONLINEARITIES}.")


def expand_width_factors(block_width_factors: Optional[Sequence[float]], num_blocks: int) -> List[float]:
    """Per-block width factors from the original's flat ``(factor, count)`` pairs.

    ``[1.0, 2, 1.5, 3, 2.0, 2]`` -> ``[1, 1, 1.5, 1.5, 1.5, 2, 2]``; ``None``, ``[]`` or ``[0.0]``
    mean every block has factor 1.

    Args:
        block_width_factors: flat list ``f_0, n_0, f_1, n_1, ...``.
        num_blocks: the number of blocks the expanded list must have.
    """
    if not block_width_factors or (len(block_width_factors) == 1 and float(block_width_factors[0]) == 0.0):
        return [1.0] * num_blocks
    values = list(block_width_factors)
    if len(values) % 2:
        raise ValueError(
            f"block_width_factors must be flat (factor, count) pairs, e.g. [1.0, 2, 1.5, 3, 2.0, 2]; "
            f"got an odd-length list {values}."
        )
    factors: List[float] = []
    for factor, count in zip(values[0::2], values[1::2]):
        if int(count) != count or count < 0:
            raise ValueError(f"block_width_factors: count {count!r} after factor {factor} is not a whole number.")
        factors.extend([float(factor)] * int(count))
    if len(factors) != num_blocks:
        raise ValueError(
            f"block_width_factors {values} expand to {len(factors)} blocks but num_blocks={num_blocks}; "
            f"make the counts sum to num_blocks."
        )
    return factors


def linear_nd(in_channels: int, out_channels: int, dim: int, bias: bool = True) -> nn.Module:
    """A pointwise ``Conv{dim}d`` (the original's ``Linear{dim}d``), PyTorch default init."""
    return getattr(nn, f"Conv{dim}d")(in_channels, out_channels, kernel_size=1, bias=bias)


def build_conv(
    conv: Optional[Callable[..., nn.Module]], backbone: str, in_channels: int, out_channels: int, dim: int,
    causal: bool = False,
) -> nn.Module:
    """Call a conv factory by the ``CONVS`` contract, with a clear error if none was given."""
    if conv is None:
        raise ValueError(
            f"{backbone} needs a convolution factory: pass conv=... or bind it in gin, e.g. "
            f"`{backbone}.conv = @FlexConv` (see `python -m flexcore.registry list convs`)."
        )
    # `causal` is only passed when asked so that minimal factories without it still work.
    if causal:
        return conv(in_channels, out_channels, dim, causal=True)
    return conv(in_channels, out_channels, dim)

"""Per-sample random generators: deterministic per (seed, stream, index), order-independent.

A dataset that draws sample ``i`` from its own generator gives the same sample whatever
the access order, the split sizes or the number of DataLoader workers / DDP ranks.
"""
from __future__ import annotations

import hashlib

import torch

__all__ = ["stream_offset", "sample_seed", "sample_generator"]

_MASK32 = 0xFFFFFFFF


def stream_offset(seed: int, stream: str) -> int:
    """A 32-bit offset hashed from ``(seed, stream)``, e.g. ``(0, "AddingProblem/train")``."""
    digest = hashlib.sha256(f"{int(seed)}:{stream}".encode()).digest()
    return int.from_bytes(digest[:4], "little")


def sample_seed(offset: int, index: int) -> int:
    """Seed of sample ``index`` in the stream starting at ``offset``.

    torch's CPU generator keeps only the low 32 bits of a seed (``manual_seed(1)`` and
    ``manual_seed(1 + 2**32)`` give the same stream), so seeds are 32-bit: consecutive
    indices get consecutive seeds, which makes them distinct within a stream of up to
    2**32 samples (a hash per sample would collide among ~10^5 samples).
    """
    return (offset + int(index)) & _MASK32


def sample_generator(offset: int, index: int) -> torch.Generator:
    """A fresh CPU generator for sample ``index`` of the stream at ``offset``."""
    return torch.Generator().manual_seed(sample_seed(offset, index))

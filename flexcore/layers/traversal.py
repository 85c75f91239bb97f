"""Walk a model's continuous convolutions: iterate them, refresh their crops at once, clear caches."""
from __future__ import annotations

from typing import Iterator, Tuple

import torch
import torch.nn as nn

from flexcore.layers.conv import ContinuousConv

__all__ = ["continuous_convs", "refresh_crops", "clear_kernel_caches"]


def continuous_convs(model: nn.Module) -> Iterator[Tuple[str, ContinuousConv]]:
    """``(name, module)`` of every continuous convolution (CKConv, FlexConv, ...) in ``model``."""
    for name, module in model.named_modules():
        if isinstance(module, ContinuousConv):
            yield name, module


def clear_kernel_caches(model: nn.Module) -> None:
    """Drop every continuous conv's cached kernel and crop.

    Needed only after editing parameters through ``.data`` (which bypasses the version
    counters the caches are keyed on).
    """
    for _, conv in continuous_convs(model):
        conv.clear_cache()


@torch.no_grad()
def refresh_crops(model: nn.Module) -> int:
    """Compute every FlexConv's crop with one device-to-host copy for the whole model.

    Each layer otherwise reads its mask bounds back on its own (one synchronisation per
    layer whenever the mask changed, i.e. every training step). Call this once before the
    forward pass (the trainer does, every step); layers whose masks did not change since
    their crop was computed are skipped. Returns the number of layers updated.
    """
    convs = [c for _, c in continuous_convs(model) if c.mask is not None and c.dynamic_cropping]
    items = []
    for conv in convs:
        if min(conv._grid_sizes()) < 1:  # grid not fixed yet: the first forward does it
            continue
        cached = conv._crop_cache
        if cached is not None and cached[0] == conv._crop_key():  # masks unchanged since: nothing to read
            continue
        bounds = conv.mask.bounds()
        if bounds is not None:
            items.append((conv, bounds))
    if not items:
        return 0
    flat = torch.cat([b.reshape(-1).float() for _, b in items]).cpu()
    offset = 0
    for conv, bounds in items:
        n = bounds.numel()
        conv._set_crop_from_bounds(flat[offset: offset + n].view(bounds.shape).to(bounds.dtype))
        offset += n
    return len(items)

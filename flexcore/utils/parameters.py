"""The one parameter counter (training summaries, model tables, parameter-count tests)."""
from __future__ import annotations

import torch.nn as nn

__all__ = ["count_parameters"]


def count_parameters(module: nn.Module) -> int:
    """Trainable parameters (``requires_grad``; buffers excluded), as the original code's ``no_params``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)

"""Small helpers on ``nn.Module`` trees that every package may use."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Sequence

import torch.nn as nn

__all__ = ["eval_mode"]


@contextmanager
def eval_mode(*modules: nn.Module) -> Iterator[None]:
    """Every submodule of ``modules`` in eval mode for the block (BatchNorm uses and keeps its
    running statistics), each restored to its own mode after."""
    modes = [(m, m.training) for module in modules for m in module.modules()]
    for module in modules:
        module.eval()
    try:
        yield
    finally:
        for m, training in modes:
            m.training = training

"""Find the continuous convolutions of a model (for loggers, regularisers, cross-resolution)."""
from __future__ import annotations

from typing import List, Tuple

import torch.nn as nn

__all__ = ["named_continuous_convs"]


def _is_continuous_conv(module: nn.Module) -> bool:
    try:
        from flexcore.layers import ContinuousConv
    except ImportError:  # layers not built yet: fall back on the contract's methods
        ContinuousConv = None
    if ContinuousConv is not None:
        return isinstance(module, ContinuousConv)
    return callable(getattr(module, "kernel_size", None)) and callable(getattr(module, "generate_kernel", None))


def named_continuous_convs(model: nn.Module) -> List[Tuple[str, nn.Module]]:
    """``(qualified name, module)`` of every continuous convolution in ``model``, in module order.

    Continuous convolutions are ``flexcore.layers.ContinuousConv`` subclasses (built-in or
    plugin); without ``flexcore.layers``, modules offering ``kernel_size()`` and
    ``generate_kernel()``.
    """
    try:
        from flexcore.layers import continuous_convs
    except ImportError:
        return [(name, m) for name, m in model.named_modules() if _is_continuous_conv(m)]
    return list(continuous_convs(model))

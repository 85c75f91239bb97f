"""The original's kernel-norm penalty (``LnLoss``, used there as "weight decay"; its `ckconv/nn/regularizers.py`)."""
from __future__ import annotations

import torch
import torch.nn as nn

from flexcore.registry import REGULARIZERS
from flexcore.layers.traversal import continuous_convs

__all__ = ["LnLoss"]


def _current_kernel(conv: nn.Module) -> torch.Tensor:
    """The kernel the conv used in its latest forward (masked for FlexConv), with its graph."""
    kernel = getattr(conv, "conv_kernel", None)
    if isinstance(kernel, torch.Tensor) and kernel.numel() > 0 and kernel.requires_grad:
        return kernel
    return conv.generate_kernel()


@REGULARIZERS.register()
class LnLoss:
    """``weight * sum over continuous convs of (||kernel||_p + ||bias||_p)``, not squared.

    The kernel is the one from the latest forward pass (the masked kernel for FlexConv),
    so the penalty's gradient reaches the kernel network and the mask. Other layers
    (norms, shortcuts, the head) are not penalised, as in the original, whose
    ``train.weight_decay`` is this term.

    Args:
        weight: lambda (the original's ``train.weight_decay``).
        p: norm order (2 in the original).
    """

    def __init__(self, weight: float = 0.0, p: float = 2.0):
        self.weight = float(weight)
        self.p = float(p)

    def __call__(self, model: nn.Module) -> torch.Tensor:
        convs = list(continuous_convs(model))
        device = next(model.parameters()).device
        total = torch.zeros((), device=device)
        if self.weight == 0.0:
            return total
        for _, conv in convs:
            total = total + torch.linalg.vector_norm(_current_kernel(conv), ord=self.p)
            bias = getattr(conv, "bias", None)
            if isinstance(bias, torch.Tensor):
                total = total + torch.linalg.vector_norm(bias, ord=self.p)
        return self.weight * total

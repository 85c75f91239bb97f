"""Build the model an experiment asks for, with shapes from the dataset's metadata."""
from __future__ import annotations

from typing import Callable, Protocol

import gin
import torch.nn as nn

__all__ = ["ModelShape", "build_model"]


class ModelShape(Protocol):
    """What a model needs to know of its data (``flexcore.data.DatasetMetadata`` has it)."""

    in_channels: int
    num_classes: int
    dim: int


@gin.configurable(module="modeling")
def build_model(metadata: ModelShape, backbone: Callable[..., nn.Module] = gin.REQUIRED) -> nn.Module:
    """``backbone(in_channels, out_channels, dim)`` from ``metadata``; ``backbone`` is a factory (``@FlexNet``).

    Args:
        metadata: the dataset's metadata (channels, classes, dim).
        backbone: a registered backbone factory (gin: ``build_model.backbone = @FlexNet``).
    """
    return backbone(in_channels=metadata.in_channels, out_channels=metadata.num_classes, dim=metadata.dim)

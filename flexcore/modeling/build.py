"""Build the model an experiment asks for, with shapes from the dataset's metadata."""
from __future__ import annotations

from typing import Callable

import gin
import torch.nn as nn

from flexcore.data.base import DatasetMetadata

__all__ = ["build_model"]


@gin.configurable(module="modeling")
def build_model(metadata: DatasetMetadata, backbone: Callable[..., nn.Module] = gin.REQUIRED) -> nn.Module:
    """``backbone(in_channels, out_channels, dim)`` from ``metadata``; ``backbone`` is a factory (``@FlexNet``).

    Args:
        metadata: the dataset's :class:`DatasetMetadata` (channels, classes, dim).
        backbone: a registered backbone factory (gin: ``build_model.backbone = @FlexNet``).
    """
    return backbone(in_channels=metadata.in_channels, out_channels=metadata.num_classes, dim=metadata.dim)

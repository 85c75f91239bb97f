"""Backbones (FlexNet/CKCNN, TCN, baselines) and model building.

Importing this package registers every built-in backbone in ``flexcore.registry.BACKBONES``.
"""
from . import backbones  # noqa: F401  (registers the built-ins)
from .build import build_model

"""Backbones (FlexNet/CKCNN, TCN, baselines) and model building.

Importing this package registers every built-in backbone in ``flexcore.registry.BACKBONES``.
"""
from .build import build_model

"""Training-loop hooks for what the layers know: the continuous convolutions' crops."""
from __future__ import annotations

from flexcore.layers.traversal import refresh_crops
from flexcore.registry import HOOKS
from flexcore.utils.hooks import HookBase, unwrap_model

__all__ = ["RefreshCrops"]


@HOOKS.register()
class RefreshCrops(HookBase):
    """Before each step, every FlexConv's crop from one device-to-host copy.

    Each FlexConv otherwise reads its own mask bounds back in its forward: one GPU
    synchronisation per layer and step, since the masks move every step. Layers whose
    masks did not change are skipped, so a model without dynamic crops reads nothing.
    """

    def before_step(self) -> None:
        refresh_crops(unwrap_model(self.trainer.model))

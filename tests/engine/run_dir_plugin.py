"""A hook for run-directory tests (``--plugin tests/engine/run_dir_plugin.py``).

``ForgetBeforeLastStep`` zeroes the output layer's weights before the last iteration, so
the final validation is not the best one and the final test must load ``model_best.pth``.
"""
import torch

from flexcore.engine.train_loop import HookBase, unwrap_model
from flexcore.registry import HOOKS


@HOOKS.register()
class ForgetBeforeLastStep(HookBase):
    def before_step(self):
        if self.trainer.iter == self.trainer.max_iter - 1:
            layers = [m for m in unwrap_model(self.trainer.model).modules()
                      if isinstance(getattr(m, "weight", None), torch.nn.Parameter) and m.weight.dim() >= 2]
            with torch.no_grad():
                layers[-1].weight.zero_()

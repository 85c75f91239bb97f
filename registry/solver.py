"""Optimisers and learning-rate schedules."""
from .core import Registry

OPTIMIZERS = Registry(
    "optimizers",
    contract="factory(param_groups, lr, **hp) -> torch.optim.Optimizer",
    builtins=["flexcore.solver"],
)

LR_SCHEDULES = Registry(
    "lr_schedules",
    contract=(
        "factory(optimizer, max_iter, iters_per_epoch, **hp) -> scheduler with "
        "step()/state_dict()/load_state_dict()"
    ),
    builtins=["flexcore.solver"],
)

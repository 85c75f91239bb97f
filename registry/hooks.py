"""Training-loop hooks (checkpointing, evaluation, writers, profiling, ...)."""
from .core import Registry

HOOKS = Registry(
    "hooks",
    contract="factory(**hp) -> flexcore.engine.HookBase",
    builtins=["flexcore.engine.hooks"],
)

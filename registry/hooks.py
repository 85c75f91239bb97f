"""Training-loop hooks (checkpointing, evaluation, writers, profiling, ...)."""
from .core import Registry

HOOKS = Registry(
    "hooks",
    contract="factory(**hp) -> flexcore.utils.hooks.HookBase",
    # each package defines the hooks for what it knows; the engine looks them up by name
    builtins=["flexcore.engine.hooks", "flexcore.layers.hooks", "flexcore.analysis.hooks"],
)

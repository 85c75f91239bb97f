"""Loss terms added to the task loss (kernel norms, anti-aliasing, ...)."""
from .core import Registry

REGULARIZERS = Registry(
    "regularizers",
    contract="factory(**hp) -> callable(model) -> scalar tensor added to the loss",
    builtins=["flexcore.regularizers"],
)

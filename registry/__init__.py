"""flexcore's plugin API: the registries, their contracts, and plugin loading.

    from flexcore.registry import KERNEL_NETS

    @KERNEL_NETS.register()
    class MyKernel(nn.Module):
        '''One line that `python -m flexcore.registry list` shows.'''

Every registered object is a gin configurable in a module named after its
registry (``@MyKernel`` or ``@kernel_nets.MyKernel``).
"""
from .backbones import BACKBONES
from .convs import CONVS
from .core import PLUGIN_HINT, DuplicateNameError, Registry, UnknownNameError, all_registries, qualified_name
from .datasets import DATASETS
from .hooks import HOOKS
from .kernel_nets import KERNEL_NETS
from .masks import MASKS
from .plugins import ENTRY_POINT_GROUP, PluginError, load_plugin, load_plugins, loaded_plugins
from .regularizers import REGULARIZERS
from .solver import LR_SCHEDULES, OPTIMIZERS

__all__ = [
    "Registry",
    "PLUGIN_HINT",
    "UnknownNameError",
    "DuplicateNameError",
    "PluginError",
    "ENTRY_POINT_GROUP",
    "KERNEL_NETS",
    "MASKS",
    "CONVS",
    "BACKBONES",
    "DATASETS",
    "OPTIMIZERS",
    "LR_SCHEDULES",
    "REGULARIZERS",
    "HOOKS",
    "all_registries",
    "import_builtins",
    "load_plugin",
    "load_plugins",
    "loaded_plugins",
    "qualified_name",
]


def import_builtins() -> None:
    """Import every family's built-in modules (done before parsing gin files)."""
    for registry in all_registries().values():
        registry._ensure_builtins()  # noqa: SLF001

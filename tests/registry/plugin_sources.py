"""A plugin module's source and unique class names, shared by the plugin tests."""
import uuid

PLUGIN_SRC = """
import torch.nn as nn
from flexcore.registry import KERNEL_NETS

@KERNEL_NETS.register()
class {cls}(nn.Module):
    '''Test plugin kernel net.'''
    def __init__(self, dim, out_channels):
        super().__init__()
"""


def unique_name(prefix: str) -> str:
    """A class name no earlier test registered (registries refuse duplicates)."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"

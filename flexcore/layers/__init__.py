"""TODO(owner): filled by its issue."""
from . import kernels

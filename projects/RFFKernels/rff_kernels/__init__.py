"""Random-Fourier-Features kernel nets, registered in flexcore's KERNEL_NETS from outside the library.

Load with ``--plugin flexcore.projects.rff_kernels`` or an
``import flexcore.projects.rff_kernels`` line at the top of a gin file.
"""
from .rff_net import RFFNet

__all__ = ["RFFNet"]

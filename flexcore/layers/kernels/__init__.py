"""Continuous kernel nets: map relative positions ``(1, dim, *grid)`` to kernel values.

One family per module, each registered in ``flexcore.registry.KERNEL_NETS`` (and a gin
configurable under its name): ``MLP``; ``SIREN``, ``nSIREN``; ``FourierNet`` (alias
``Fourier``), ``GaborNet`` (alias ``Gabor``); ``MAGNet``. See ``docs/kernels.md``.
"""
from .base import KernelNet, PointwiseLinear
from .magnet import MAGNet
from .mfn import FourierNet, GaborNet, MFNBase
from .mlp import MLP
from .siren import SIREN, nSIREN

__all__ = ["KernelNet", "PointwiseLinear", "MLP", "SIREN", "nSIREN", "MFNBase", "FourierNet", "GaborNet", "MAGNet"]

"""Kernel fitting (as the original's `ckernel_fitting/`): fit a kernel net alone to a target function, image or random kernel.

    from flexcore.fitting import fit_kernel_net, make_target
    result = fit_kernel_net(KERNEL_NETS.build("MAGNet", 2, 1, input_scale=256.0), make_target("gabor", freq=16.0))

``tools/fit_kernel.py`` (``flexcore-fit-kernel``) fits many nets to many targets from gin
(``gin_configs/kernel_fitting/``) and writes the MSE/PSNR table and images.
"""
from .experiment import fit_kernels, main
from .fit import SCHEDULES, FitResult, fit_kernel_net, psnr
from .targets import FREQUENCY_TARGETS, TARGETS, load_image, make_target, target_label

__all__ = [
    "FitResult",
    "fit_kernel_net",
    "psnr",
    "SCHEDULES",
    "TARGETS",
    "FREQUENCY_TARGETS",
    "make_target",
    "load_image",
    "target_label",
    "fit_kernels",
    "main",
]

#!/usr/bin/env python
"""Fit kernel nets to target functions, images or random kernels and report MSE / PSNR.

  tools/fit_kernel.py                                            # kernel_fitting/gabor.gin
  tools/fit_kernel.py --config-file kernel_fitting/random.gin
  tools/fit_kernel.py --kernel-nets MAGNet SIREN --image photo.png --size 64
  tools/fit_kernel.py --plugin my_kernels --kernel-nets MyNet MAGNet --targets chirp --freqs 8

The logic lives in flexcore.fitting (also the `flexcore-fit-kernel` command).
"""
import sys

from flexcore.fitting.experiment import main

if __name__ == "__main__":
    sys.exit(main())

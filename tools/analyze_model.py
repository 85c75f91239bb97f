#!/usr/bin/env python
"""Count FLOPs/parameters/activations, profile training steps, report learned kernels.

  tools/analyze_model.py --config-file cifar10/flexnet7.gin --fake-data --tasks flops params
  tools/analyze_model.py --config-file cifar10/flexnet7.gin --fake-data --tasks profile
  tools/analyze_model.py --config-file cifar10/flexnet7.gin --weights a.pth --weights b.pth --tasks kernels

The logic lives in flexcore.analysis.cli (also installed as `flexcore-analyze`).
"""
import sys

from flexcore.analysis.cli import main

if __name__ == "__main__":
    sys.exit(main())

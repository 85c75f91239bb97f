#!/usr/bin/env python
"""Train or evaluate one flexcore experiment.

  tools/train_net.py                                   # quick start: FlexNet on `digits`
  tools/train_net.py --config-file cifar10/flexnet7.gin --gin "Schedule.max_iter=100"
  tools/train_net.py --list '*cifar*'                  # shipped configs
  tools/train_net.py --config-file X.gin --print-config
  tools/train_net.py --config-file ... --launcher slurm --gpus-per-node 4

The logic lives in flexcore.engine.cli (``main``), so ``flexcore-train`` runs the same code.
"""
import sys

from flexcore.engine.cli import main

if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python
"""Convert a checkpoint of the original FlexConv code into a flexcore checkpoint + gin config.

  tools/convert_checkpoint.py flexnet7_cifar10.pt --horizon 33 --dataset CIFAR10
  tools/convert_checkpoint.py run/checkpoint.pt --original-config run/config.yaml
  python tools/train_net.py --gin-file <training config> --gin-file flexnet7_cifar10_flexcore/model.gin \
      --eval-only --weights flexnet7_cifar10_flexcore/model_final.pth

The logic lives in flexcore.compat.original.convert (see docs/checkpoints-original.md).
"""
import sys

from flexcore.compat.original.convert import main

if __name__ == "__main__":
    sys.exit(main())

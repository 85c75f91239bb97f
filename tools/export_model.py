#!/usr/bin/env python
"""Bake a trained model and write it as torch.export (.pt2), TorchScript (.ts) and ONNX files.

  tools/export_model.py --config-file quick/digits_flexnet.gin --weights output/quick_digits_flexnet/model_final.pth
  tools/export_model.py --config-file cifar10/flexnet7.gin --weights model_final.pth --formats pt2 onnx

The logic lives in flexcore.export (also installed as `flexcore-export`); loading the files
without flexcore: docs/export.md.
"""
import sys

from flexcore.export.cli import main

if __name__ == "__main__":
    sys.exit(main())

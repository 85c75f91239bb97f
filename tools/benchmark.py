#!/usr/bin/env python
"""Speed benchmarks: tables of medians and spreads, ratios measured in the same run, JSON.

  tools/benchmark.py layers                 # FlexConv vs nn.Conv2d; spatial vs FFT sweep ('auto')
  tools/benchmark.py fft                    # FFT conv vs a straightforward torch.fft one
  tools/benchmark.py fft-calibrate          # refit the 'auto' cost constants on this machine
  tools/benchmark.py models                 # FlexNet-7 / CKCNN train steps vs the original's figures
  tools/benchmark.py inference              # eval forward: cached, baked, spatial reference
  tools/benchmark.py sequences              # FlexTCN at L = 1,024 / 16,000 / 65,536: L log L growth, memory
  tools/benchmark.py layers --quick --threads 2 --json out.json
  tools/benchmark.py models --threads 1 --clock cpu   # steadier on a shared machine
  tools/benchmark.py quickstart             # python tools/train_net.py: test accuracy, wall and CPU time
  tools/benchmark.py gpu --device cuda      # host syncs per step, step times, parity (tools/gpu_evidence.sh runs it)

The logic lives in flexcore.benchmarks (harness.py; one module per suite).
"""
import sys

from flexcore.benchmarks.harness import main

if __name__ == "__main__":
    sys.exit(main())

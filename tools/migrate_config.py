#!/usr/bin/env python
"""Rename the flat ``Trainer.*`` settings of earlier releases in gin files to their groups.

  tools/migrate_config.py my_experiment.gin          # show the changes as a diff
  tools/migrate_config.py --write configs/*.gin      # rewrite the files

The logic lives in flexcore.engine.migrate_config (see docs/training.md, "Renamed settings").
"""
import sys

from flexcore.engine.migrate_config import main

if __name__ == "__main__":
    sys.exit(main())

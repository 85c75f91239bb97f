"""``flexcore-train`` / ``tools/train_net.py``: parse the flags, launch the main job, exit with a code.

    flexcore-train --config-file cifar10/flexnet7.gin --gin "Schedule.max_iter = 100"

0: done; 1: the run failed for a reason its message explains (a checkpoint, the data, the
output dir, a launch); 2: the config or a plugin is wrong. The flags are
:func:`flexcore.engine.defaults.default_argument_parser`'s; the job is
:func:`flexcore.engine.defaults.main`.
"""
from __future__ import annotations

import sys
from typing import Optional, Sequence

from flexcore.config import ConfigError
from flexcore.engine.defaults import USER_ERRORS, default_argument_parser
from flexcore.engine.defaults import main as train_job
from flexcore.engine.launch import LaunchError, launch
from flexcore.registry import PluginError

__all__ = ["build_parser", "main"]

build_parser = default_argument_parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse ``argv`` (default: the command line) and run; returns the exit code."""
    args = build_parser().parse_args(argv)
    try:
        launch(train_job, args)
    except ConfigError as exc:
        print(f"Config error: {exc}", file=sys.stderr)
        return 2
    except PluginError as exc:  # the message already holds the plugin's own traceback
        print(f"Plugin error: {exc}", file=sys.stderr)
        return 2
    except USER_ERRORS as exc:
        print(f"Error: {exc}", file=sys.stderr)
        return 1
    except LaunchError as exc:
        print(f"Launch error: {exc}", file=sys.stderr)
        return 1
    return 0

"""The command-line flags every flexcore tool shares, and the one default-output-dir rule.

    parser = argparse.ArgumentParser(description="...")
    add_config_arguments(parser, tool="analysis", default_config=None)
    args = parser.parse_args(argv)
    output_dir = resolve_output_dir(args, tool="analysis")

Every tool spells the flags the same way (``--config-file`` with its old alias ``--gin-file``,
``--gin``, ``--plugin``, ``--output-dir``), stores them under the same names
(``config_files``, ``bindings``, ``plugins``, ``output_dir``) and derives the same default
output folder from the last config file. Standard library only, so any layer may import it.
"""
from __future__ import annotations

import argparse
import os
from typing import Optional, Sequence

__all__ = ["add_bindings_argument", "add_config_arguments", "add_output_dir_argument", "config_run_name", "default_output_dir",
           "resolve_output_dir"]


def config_run_name(config_file: str) -> str:
    """A folder name for a config: its path under ``gin_configs/`` with ``/`` turned into ``_``
    (``cifar10/flexnet7.gin`` -> ``cifar10_flexnet7``); an absolute path gives its file name."""
    name = os.path.splitext(config_file)[0]
    if os.path.isabs(name):
        return os.path.basename(name)
    return name.replace(os.sep, "_").replace("/", "_").lstrip("._") or "experiment"


def default_output_dir(config_files: Sequence[str], tool: Optional[str] = None) -> str:
    """``output/[<tool>/]<run name of the last config file>`` (``output/[<tool>/]experiment``
    without any). Training passes no ``tool``; the other tools pass their own folder name
    (``analysis``, ``export``, ``fit_kernel``), so their reports never land in a run's folder."""
    name = config_run_name(config_files[-1]) if config_files else "experiment"
    return os.path.join("output", tool, name) if tool else os.path.join("output", name)


def resolve_output_dir(args: argparse.Namespace, tool: Optional[str] = None,
                       default_config: Optional[str] = None) -> str:
    """``--output-dir`` if given, else :func:`default_output_dir` of the config files (or of
    ``default_config``, the one the tool runs when none is given)."""
    if args.output_dir:
        return args.output_dir
    files = list(args.config_files) or ([default_config] if default_config else [])
    return default_output_dir(files, tool=tool)


def add_bindings_argument(parser: argparse.ArgumentParser) -> None:
    """``--gin BINDING`` (repeatable, stored as ``bindings``)."""
    parser.add_argument("--gin", dest="bindings", action="append", default=[], metavar="BINDING",
                        help='gin binding applied after the files, e.g. "Schedule.max_iter = 100" (repeatable)')


def add_output_dir_argument(parser: argparse.ArgumentParser, default_text: str, aliases: Sequence[str] = (),
                            what: str = "results") -> None:
    """``--output-dir DIR`` (stored as ``output_dir``); ``aliases`` keep a tool's older spellings."""
    parser.add_argument("--output-dir", *aliases, dest="output_dir", default=None, metavar="DIR",
                        help=f"folder for the {what} (default: {default_text})")


def add_config_arguments(parser: argparse.ArgumentParser, *, default_config: Optional[str] = None,
                         tool: Optional[str] = None, what: str = "results",
                         output_aliases: Sequence[str] = ()) -> argparse._ArgumentGroup:
    """Add the shared config flags in a group of their own; returns the group.

    Args:
        default_config: the config used when no ``--config-file`` is given (the caller applies it);
            ``None`` makes ``--config-file`` required.
        tool: the folder under ``output/`` of :func:`default_output_dir` (None: training's rule).
        what: what the output dir receives, for the help text.
        output_aliases: older spellings of ``--output-dir`` that keep working (e.g. ``--output``).
    """
    group = parser.add_argument_group("config (shared by every flexcore tool)")
    default = f"Default: {default_config}" if default_config else "Required"
    group.add_argument(
        "--config-file", "--gin-file", dest="config_files", action="append", default=[], metavar="FILE",
        required=default_config is None,
        help=f"gin file: a path, or a name under gin_configs/ (repeatable; later files override earlier "
        f"ones). {default}.",
    )
    add_bindings_argument(group)
    group.add_argument(
        "--plugin", dest="plugins", action="append", default=[], metavar="MODULE",
        help="module or .py file registering extra components, loaded before the files (repeatable)",
    )
    rule = os.path.join("output", tool, "<config name>") if tool else os.path.join("output", "<config name>")
    add_output_dir_argument(group, f"{rule}, the last config file's path with / as _", output_aliases, what)
    return group

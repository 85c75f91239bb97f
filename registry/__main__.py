"""``python -m flexcore.registry [--plugin P] list|check ...``: print the registries, check a component's contract.

    python -m flexcore.registry list [FAMILY] [PATTERN]
    python -m flexcore.registry --plugin my_data.py check datasets MyDataset --option length=64

``--plugin`` may come before or after the subcommand (repeat it for several plugins).
"""
import argparse
import ast
import sys
from typing import Any, Dict, List

from tabulate import tabulate

from . import PluginError, all_registries, import_builtins, load_plugins

CHECKED_FAMILIES = ("datasets", "kernel_nets", "masks")


def _add_plugin_option(parser: argparse.ArgumentParser, dest: str) -> None:
    parser.add_argument("--plugin", dest=dest, action="append", default=[], metavar="P",
                        help="module or .py file to load first (repeatable)")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m flexcore.registry",
        description="List registered flexcore components (built-ins and loaded plugins) or check one's contract.",
    )
    # Separate destinations: a subparser's default would overwrite values given before the subcommand.
    _add_plugin_option(parser, "plugins_before")
    sub = parser.add_subparsers(dest="command", required=True)
    lister = sub.add_parser("list", help="print a table per registry family")
    lister.add_argument("family", nargs="?", default=None, help="e.g. kernel_nets (default: all)")
    lister.add_argument("pattern", nargs="?", default="*", help="wildcard on names, e.g. '*gabor*'")
    _add_plugin_option(lister, "plugins_after")
    checker = sub.add_parser(
        "check", help="build a component and check it against its family's contract (docs/contracts.md)",
    )
    checker.add_argument("family", choices=CHECKED_FAMILIES)
    checker.add_argument("name", help="registered name, e.g. MyDataset")
    checker.add_argument("--option", "-o", action="append", default=[], metavar="KEY=VALUE",
                         help="constructor option (Python literal, else a string), repeatable: -o seq_length=64")
    checker.add_argument("--root", default=None, help="dataset root (datasets only)")
    checker.add_argument("--verbose", "-v", action="store_true", help="list every check that held")
    _add_plugin_option(checker, "plugins_after")
    return parser


def _parse_options(pairs: List[str]) -> Dict[str, Any]:
    options = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise ValueError(f"--option {pair!r}: write KEY=VALUE, e.g. --option seq_length=64")
        try:
            options[key] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            options[key] = text
    return options


def _list(args) -> int:
    registries = all_registries()
    if args.family is not None and args.family not in registries:
        # a single word may be a pattern over every family: `list '*gabor*'`
        if any(ch in args.family for ch in "*?[") and args.pattern == "*":
            args.pattern, args.family = args.family, None
        else:
            print(f"Unknown registry family {args.family!r}. Families: {', '.join(registries)}.", file=sys.stderr)
            return 2
    families = [args.family] if args.family else list(registries)
    for family in families:
        registry = registries[family]
        rows = registry.table_rows(args.pattern)
        if args.family is None and not rows and args.pattern != "*":
            continue
        print(f"\n{family}: {registry.contract}")
        print(tabulate(rows, headers=["name", "defined in", "description"], tablefmt="github") if rows else "(none)")
    return 0


def _check(args) -> int:
    from .checks import ContractError
    from .core import UnknownNameError

    try:
        options = _parse_options(args.option)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    if args.family == "datasets":
        from flexcore.data.check import check_dataset

        run = lambda: check_dataset(args.name, root=args.root, **options)  # noqa: E731
    else:
        from flexcore.layers.check import check_kernel_net, check_mask

        checker = check_kernel_net if args.family == "kernel_nets" else check_mask
        run = lambda: checker(args.name, **options)  # noqa: E731
    try:
        report = run()
    except UnknownNameError as exc:
        print(exc, file=sys.stderr)
        return 2
    except ContractError as exc:
        print(exc, file=sys.stderr)
        return 1
    if args.verbose:
        print("\n".join(f"  ok  {line}" for line in report.passed))
    for note in report.notes:
        print(f"  note  {note}")
    print(f"{report.component}: the {args.family} contract holds ({len(report.passed)} checks).")
    return 0


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
        load_plugins(args.plugins_before + args.plugins_after)
        import_builtins()
    except PluginError as exc:  # the message already holds the plugin's own traceback
        print(f"Plugin error: {exc}", file=sys.stderr)
        return 2
    return _list(args) if args.command == "list" else _check(args)


if __name__ == "__main__":
    sys.exit(main())

"""``python -m flexcore.registry list [FAMILY] [PATTERN] [--plugin P]``: print the registries."""
import argparse
import sys

from tabulate import tabulate

from . import PluginError, all_registries, import_builtins, load_plugins


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m flexcore.registry",
        description="List registered flexcore components (built-ins and loaded plugins).",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    lister = sub.add_parser("list", help="print a table per registry family")
    lister.add_argument("family", nargs="?", default=None, help="e.g. kernel_nets (default: all)")
    lister.add_argument("pattern", nargs="?", default="*", help="wildcard on names, e.g. '*gabor*'")
    lister.add_argument("--plugin", action="append", default=[], help="module or .py file to load first")
    args = parser.parse_args(argv)

    try:
        load_plugins(args.plugin)
        import_builtins()
    except PluginError as exc:  # the message already holds the plugin's own traceback
        print(f"Plugin error: {exc}", file=sys.stderr)
        return 2
    registries = all_registries()
    if args.family is not None:
        if args.family not in registries:
            # a single word may be a pattern over every family: `list '*gabor*'`
            if any(ch in args.family for ch in "*?[") and args.pattern == "*":
                args.pattern, args.family = args.family, None
            else:
                print(
                    f"Unknown registry family {args.family!r}. Families: {', '.join(registries)}.",
                    file=sys.stderr,
                )
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


if __name__ == "__main__":
    sys.exit(main())

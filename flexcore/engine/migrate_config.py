"""``flexcore-migrate-config`` / ``tools/migrate_config.py``: rename the flat ``Trainer.*``
settings of earlier releases in gin files to their groups (``Trainer.epochs`` ->
``Schedule.epochs``, ``Trainer.schedule`` -> ``Solver.lr_schedule``).

    flexcore-migrate-config my_experiment.gin            # show the changes as a diff
    flexcore-migrate-config --write configs/*.gin        # rewrite the files
    flexcore-migrate-config --check configs/*.gin        # exit 1 if any file needs it (for CI)

Only binding lines change (their scope and comment stay); ``Trainer.extra_hooks`` is still a
``Trainer`` argument. ``--gin`` strings in scripts are not rewritten: the run's warning lists
them with their new names.
"""
from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import List, Optional, Sequence, Tuple

from flexcore.engine.trainer_config import FIELD_GROUP, RENAMED, new_name
from flexcore.utils.file_io import atomic_open

__all__ = ["migrate_text", "main"]

_BINDING = re.compile(r"^(?P<lead>\s*(?:[\w.]+/)*)(?:engine\.)?(?P<configurable>\w+)\.(?P<name>\w+)(?P<rest>\s*=.*)$")


def migrate_text(text: str, configurable: str = "Trainer") -> Tuple[str, List[Tuple[int, str, str]]]:
    """``text`` with each flat ``configurable.<setting> = ...`` binding renamed; and
    ``(line number, old selector, new selector)`` per change."""
    lines, changes = text.splitlines(keepends=True), []
    for number, line in enumerate(lines, start=1):
        body = line.rstrip("\r\n")
        match = _BINDING.match(body)
        if not match or match["configurable"] != configurable:
            continue
        name = match["name"]
        if name not in FIELD_GROUP and name not in RENAMED:
            continue
        old_length = len(body) - len(match["lead"]) - len(match["rest"])  # with an ``engine.`` prefix if any
        rest = _keep_comment_column(match["rest"], len(new_name(name)) - old_length)
        lines[number - 1] = match["lead"] + new_name(name) + rest + line[len(body):]
        changes.append((number, f"{configurable}.{name}", new_name(name)))
    return "".join(lines), changes


def _comment_start(text: str) -> int:
    """Index of the ``#`` that starts a comment outside quotes, or -1."""
    quote = None
    for i, char in enumerate(text):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#":
            return i
    return -1


def _keep_comment_column(rest: str, shift: int) -> str:
    """``rest`` with the gap before a trailing ``# comment`` resized so the comment keeps its column."""
    hash_at = _comment_start(rest)
    code = rest[:hash_at].rstrip(" ") if hash_at > 0 else ""
    if not code or shift == 0 or hash_at - len(code) < 2:
        return rest
    return code + " " * max(2, hash_at - len(code) - shift) + rest[hash_at:]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Rename the flat Trainer.* settings of earlier flexcore releases in gin files "
        "to their groups (Data, Solver, Schedule, Runtime, Checkpoints, Outputs).",
    )
    parser.add_argument("files", nargs="+", metavar="FILE.gin", help="gin files to migrate")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help="rewrite the files in place")
    mode.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file needs migrating")
    parser.add_argument("--configurable", default="Trainer",
                        help="the gin name whose flat settings to rename (a Trainer subclass's; default Trainer)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    texts = {}
    for path in args.files:  # all read first: an unreadable file stops the run before anything is written
        try:
            with open(path, encoding="utf-8") as f:
                texts[path] = f.read()
        except OSError as exc:
            print(f"error: cannot read {path}: {exc.strerror}", file=sys.stderr)
            return 2
    pending = 0
    for path, text in texts.items():
        new_text, changes = migrate_text(text, args.configurable)
        if not changes:
            continue
        pending += 1
        if args.write:
            with atomic_open(path, "w") as f:
                f.write(new_text)
            print(f"{path}: renamed {len(changes)} setting(s)")
        elif args.check:
            print(f"{path}: {len(changes)} setting(s) to rename, e.g. line {changes[0][0]}: "
                  f"{changes[0][1]} -> {changes[0][2]}")
        else:
            sys.stdout.writelines(difflib.unified_diff(text.splitlines(keepends=True), new_text.splitlines(keepends=True),
                                                       fromfile=path, tofile=path))
    if not pending:
        print("Nothing to migrate." if len(args.files) > 1 else f"{args.files[0]}: nothing to migrate.")
    return 1 if args.check and pending else 0

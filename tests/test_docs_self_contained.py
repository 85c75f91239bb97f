"""Shipped text cites only what a reader has: the paper, the original code, or the fact itself.

The team's internal notes (a technical reference with numbered sections, an issue tracker)
are not part of the repository, so a section sign or the word "issue" followed by a number in
a docstring, config comment or doc is a dead end for a user. Say the fact in place, or name
the paper's table / the original code's file it comes from.
"""
from __future__ import annotations

import os
import re
from typing import Iterator, List, Tuple

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCANNED_DIRS = ("flexcore", "registry", "gin_configs", "tools", "projects", "docs", "tests")
SCANNED_TOP_FILES = ("README.md", "setup.py", "conftest.py", "pytest.ini")
TEXT_SUFFIXES = (".py", ".gin", ".md", ".txt", ".cfg", ".ini", ".toml", ".json", ".yaml", ".yml", ".sh", ".rst")

# Written so that this file, which is scanned too, does not match itself.
SECTION_SIGN = "\u00a7"
INTERNAL_CITATIONS: Tuple[Tuple[str, "re.Pattern[str]"], ...] = (
    ("the internal reference", re.compile(r"\breference\s+" + SECTION_SIGN, re.IGNORECASE)),
    ("a numbered section of the internal reference", re.compile(SECTION_SIGN + r"\s*\d")),
    ("the internal issue tracker", re.compile(r"\bissues?\s+#?\d+\b", re.IGNORECASE)),
)


def _text_files() -> Iterator[str]:
    for name in SCANNED_TOP_FILES:
        if os.path.isfile(os.path.join(REPO, name)):
            yield name
    for root in SCANNED_DIRS:
        for dirpath, dirnames, filenames in os.walk(os.path.join(REPO, root)):
            dirnames[:] = sorted(d for d in dirnames if d != "__pycache__" and not d.startswith("."))
            for name in sorted(filenames):
                if name.endswith(TEXT_SUFFIXES):
                    yield os.path.relpath(os.path.join(dirpath, name), REPO).replace(os.sep, "/")


def internal_citations(rel_path: str, text: str) -> List[str]:
    """``path:line: what it cites: the line`` for each line citing an internal document."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        for what, pattern in INTERNAL_CITATIONS:
            if pattern.search(line):
                found.append(f"{rel_path}:{number}: cites {what}: {line.strip()[:120]}")
                break
    return found


def test_the_patterns_catch_internal_citations_and_nothing_else():
    cited = [f"see reference {SECTION_SIGN}4.1", f"({SECTION_SIGN}5.1)", f"target of Issue {9}",
             f"issues {3} and 5", f"issue #{12}", f"reference {SECTION_SIGN} 9"]
    plain = ["the paper's Table 3", "an issue with 2 GPUs", "the reference's Cutout", f"tissue {4}"]
    assert all(internal_citations("x", line) for line in cited)
    assert not any(internal_citations("x", line) for line in plain)


def test_shipped_text_cites_no_internal_document():
    found = []
    for rel in _text_files():
        with open(os.path.join(REPO, rel), encoding="utf-8", errors="replace") as f:
            found.extend(internal_citations(rel, f.read()))
    assert not found, (
        f"{len(found)} line(s) cite documents a user does not have (the team's reference notes or "
        "issue tracker); say the fact in place, or cite the paper (its table/section) or the "
        "original code's file instead:\n" + "\n".join(found)
    )

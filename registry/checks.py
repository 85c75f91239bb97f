"""Collects the findings of a component contract check into one clear error.

The family-specific checkers (``flexcore.data.check_dataset``,
``flexcore.layers.check.check_kernel_net`` / ``check_mask``) run every probe they can,
record what held and what did not (with the fix), and raise :class:`ContractError` listing
all violations at once, so a plugin author fixes them in one round.
"""
from __future__ import annotations

import traceback
from typing import List

__all__ = ["ContractError", "ContractReport"]


class ContractError(ValueError):
    """A component breaks its registry family's contract; the message lists each violation and its fix."""

    def __init__(self, component: str, family: str, problems: List[str]):
        self.component, self.family, self.problems = component, family, list(problems)
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(
            f"{component} breaks the {family} contract ({len(problems)} problem(s); see docs/contracts.md):\n{lines}"
        )


class ContractReport:
    """What held (``passed``) and what did not (``problems``) for one component."""

    def __init__(self, component: str, family: str):
        self.component, self.family = component, family
        self.passed: List[str] = []
        self.problems: List[str] = []
        self.notes: List[str] = []  # allowed but worth knowing (e.g. normalisation across the grid)

    def check(self, ok: bool, what: str, problem: str, fix: str) -> bool:
        """Record ``what`` as held if ``ok``, else ``problem`` with its ``fix``; returns ``ok``."""
        if ok:
            self.passed.append(what)
        else:
            self.fail(problem, fix)
        return ok

    def fail(self, problem: str, fix: str) -> None:
        self.problems.append(f"{problem}. Fix: {fix}")

    def crashed(self, step: str, exc: BaseException, fix: str) -> None:
        """A probe raised: name the step, the exception and where it came from."""
        frame = traceback.extract_tb(exc.__traceback__)[-1] if exc.__traceback__ else None
        where = f" at {frame.filename}:{frame.lineno}" if frame else ""
        self.fail(f"{step} raised {type(exc).__name__}: {exc}{where}", fix)

    def finish(self) -> "ContractReport":
        """This report, once every check held; raises :class:`ContractError` if any failed."""
        if self.problems:
            raise ContractError(self.component, self.family, self.problems)
        return self

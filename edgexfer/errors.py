"""Errors a user can cause. The CLI prints each as one line and exits with its code."""

from __future__ import annotations


class EdgexferError(Exception):
    """A problem the user can fix: one line naming the problem and the fix.

    ``exit_code`` 2 is bad input (missing path, wrong shape, unusable runtime…).
    """

    exit_code = 2

    def __init__(self, problem: str, fix: str | None = None):
        self.problem = problem.rstrip(".")
        self.fix = fix.rstrip(".") if fix else None
        super().__init__(self.line())

    def line(self) -> str:
        return f"{self.problem}. {self.fix}." if self.fix else f"{self.problem}."


class Interrupted(EdgexferError):
    """Ctrl-C (SIGINT) ended the command: exit 130 (128 + SIGINT, what shells report), never 1, which says
    that a gate failed. What the commands write is whole or absent, so running the command again is safe."""

    exit_code = 130

    def __init__(self) -> None:
        super().__init__("interrupted (Ctrl-C); nothing half-written was left",
                         "run the same command again (finetune and compare resume where they stopped)")


class GateFailed(EdgexferError):
    """The accuracy gate broke: a precision lost more than its threshold against FP32 (exit 1)."""

    exit_code = 1

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
    """The accuracy gate broke: a precision was shown to lose more than its threshold against FP32, or is below
    a floor, or the model itself is not usable (exit 1)."""

    exit_code = 1


class GateInconclusive(EdgexferError):
    """The accuracy gate could not decide: nothing was shown to lose too much, but some precision was not shown
    to stay within its threshold on these images (exit 3, never 0). The message names what would decide."""

    exit_code = 3


#: exit codes of a verdict (bench, demo, compare): pass, fail, inconclusive; 2 is bad input
EXIT_PASS, EXIT_FAIL, EXIT_INCONCLUSIVE = 0, 1, 3

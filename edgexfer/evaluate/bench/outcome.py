"""The bench's verdict: ``BenchOutcome`` (results, what broke, what is undecided and what would settle it) and
the errors a verdict other than pass raises once every output is written (exit 1 failed, 3 inconclusive)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgexfer.errors import GateFailed, GateInconclusive
from edgexfer.evaluate.bench.judge import Undecided
from edgexfer.evaluate.gate import Breach, ModelCheck, breach_table, undecided_table, verdict_of
from edgexfer.evaluate.stats import PairedDecision


@dataclass
class BenchOutcome:
    """What a bench wrote (``results``: results.json as written, in ``out_dir``) and what its gate found."""

    results: dict[str, Any]
    out_dir: Path
    breaches: list[Breach]
    model_check: ModelCheck | None = None
    undecided: list[Undecided] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """pass, fail or inconclusive over every row (the exit code: 0, 1, 3)."""
        return verdict_of(self.breaches, [u.decision for u in self.undecided], self.model_check)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def settle_line(self) -> str:
        """Which precision is inconclusive and what would decide it, in one line: per artifact and runtime,
        the most images any undecided threshold needs overall and per class (rows needing the same merge)."""
        parts = []
        if self.model_check is not None and self.model_check.verdict == "inconclusive":
            parts.append(f"the model check: {self.model_check.reason}")
        needs: dict[tuple[str, str], dict[str, PairedDecision]] = {}
        for u in self.undecided:
            slot = needs.setdefault((u.artifact, u.runtime), {})
            key = u.decision.population
            if key not in slot or (u.decision.images_needed or 0) > (slot[key].images_needed or 0):
                slot[key] = u.decision
        texts: dict[str, list[str]] = {}
        for (artifact, runtime), slot in needs.items():
            text = ", ".join(d.settle_text() for d in slot.values())
            texts.setdefault(text, []).append(f"{artifact} on {runtime}")
        parts += [f"{' and '.join(rows)}: {text}" for text, rows in texts.items()]
        return "; ".join(parts)


class BenchGateFailed(GateFailed):
    """The gate broke (exit 1) after every output was written: ``table`` says what broke, ``outcome`` holds all."""

    def __init__(self, problem: str, fix: str, *, outcome: BenchOutcome):
        super().__init__(problem, fix)
        self.outcome = outcome
        self.table = breach_table(outcome.breaches)


class BenchGateInconclusive(GateInconclusive):
    """Nothing broke but something is undecided (exit 3) after every output was written: ``table`` lists the
    undecided thresholds and how many images would decide each, ``outcome`` holds all."""

    def __init__(self, problem: str, fix: str, *, outcome: BenchOutcome):
        super().__init__(problem, fix)
        self.outcome = outcome
        self.table = undecided_table([(u.artifact, u.precision, u.runtime, u.decision) for u in outcome.undecided])


#: either verdict that is not a pass (both carry ``.outcome`` and ``.table``)
BenchVerdictError = (BenchGateFailed, BenchGateInconclusive)


def raise_unless_passed(outcome: BenchOutcome) -> BenchOutcome:
    """The outcome of a pass; for a fail or an inconclusive verdict, the error that says which rows and what
    would decide them, carrying the outcome (raised after every output was written)."""
    model, out_dir = outcome.model_check, outcome.out_dir
    if outcome.verdict == "inconclusive":
        rows_undecided = sorted({f"{u.artifact} on {u.runtime}" for u in outcome.undecided})
        what = ", ".join(rows_undecided) if rows_undecided else "every precision"
        raise BenchGateInconclusive(
            f"accuracy gate inconclusive for {what}: too few images to show the loss is within the thresholds "
            f"({outcome.settle_line()})",
            "bench on more labelled images (--data), or add unlabeled images (--unlabeled) for the agreement with "
            f"FP32, to decide; see {out_dir / 'report.md'}", outcome=outcome)
    if outcome.verdict == "fail":
        broken = sorted({f"{b.artifact} on {b.runtime}" for b in outcome.breaches})
        if model is not None and model.verdict == "not_usable":
            problem = f"accuracy gate failed: the model itself is not usable ({model.reason})"
            fix = f"fine-tune a model that learns (see the run's metrics.json) before exporting; {out_dir / 'report.md'}"
        else:
            problem = f"accuracy gate failed for {', '.join(broken)} ({len(outcome.breaches)} threshold(s) broken)"
            # true from the command (which prints the table first) and from Python (which prints nothing)
            fix = (f"what broke is in the table of this error (.table in Python; printed above by the command) and in "
                   f"{out_dir / 'report.md'}")
        raise BenchGateFailed(problem, fix, outcome=outcome)
    return outcome

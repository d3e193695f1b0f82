"""Does a model beat always answering one class? The run's sanity check and the bench's model check: a one-sided
exact binomial test (scipy), a Wilson upper bound, and how many images would tell."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgexfer.evaluate.stats.intervals import wilson_interval

#: below this many points above the baseline (upper 95% bound) a model counts as no better than it
MIN_LIFT = 0.05
ALPHA = 0.05


@dataclass(frozen=True)
class BaselineEvidence:
    """``outcome``: "beats" (one-sided exact binomial test, p <= 0.05), "no_better" (accuracy not above the
    baseline, or its Wilson 95% upper bound less than ``MIN_LIFT`` above it: even the best case is no real
    gain) or "too_few" (neither can be shown on these images; ``images_needed`` at this accuracy would)."""

    outcome: str
    accuracy: float
    baseline: float
    n: int
    p_value: float
    upper: float
    images_needed: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def baseline_evidence(correct: int, n: int, baseline: float, alpha: float = ALPHA) -> BaselineEvidence:
    from scipy.stats import binom, binomtest

    if n <= 0:
        return BaselineEvidence("too_few", 0.0, baseline, 0, 1.0, 1.0, None)
    p0 = min(max(baseline, 1e-9), 1 - 1e-9)
    accuracy = correct / n
    p = float(binomtest(int(correct), int(n), p0, alternative="greater").pvalue)
    interval = wilson_interval(correct, n)
    upper = interval[1] if interval else 1.0
    if p <= alpha:
        return BaselineEvidence("beats", accuracy, baseline, n, p, upper, None)
    if accuracy <= baseline + 1e-12 or upper < baseline + MIN_LIFT:
        return BaselineEvidence("no_better", accuracy, baseline, n, p, upper, None)
    sizes = np.arange(n + 1, 100_001)
    k = np.round(accuracy * sizes)
    pvalues = binom.sf(k - 1, sizes, p0)
    hits = np.nonzero(pvalues <= alpha)[0]
    needed = int(sizes[hits[0]]) if hits.size else None
    return BaselineEvidence("too_few", accuracy, baseline, n, p, upper, needed)


def fmt_p(p: float) -> str:
    """A p-value as text: two decimals (0.06), or two significant digits below 0.01."""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.2g}"


def baseline_name(counts: dict[str, int], chosen: str | None = None) -> str:
    """How to name the "always answer one class" baseline: the majority class, or, when classes tie for
    the most images, the fact that answering any of them scores the same."""
    if not counts:
        return "always answering one class"
    top = max(counts.values())
    tied = [c for c, k in counts.items() if k == top]
    if len(tied) == 1:
        return f"always answering the majority class '{chosen or tied[0]}'"
    if len(tied) == len(counts):
        return f"always answering any one class: the {len(counts)} classes are equally frequent"
    return f"always answering any one of the equally most frequent classes {', '.join(repr(c) for c in tied)}"

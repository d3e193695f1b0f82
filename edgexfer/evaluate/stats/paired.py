"""Paired comparisons against FP32 on the same images: McNemar's exact test (statsmodels), the images each
threshold's figure lost and gained, and the paired non-inferiority decision of a proportion (Tango's score
interval of the drop: pass, fail or inconclusive, with the images that would decide)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgexfer.evaluate.stats.intervals import CONFIDENCE, z_value
from edgexfer.evaluate.stats.sample_size import MAX_IMAGES, images_to_decide


@dataclass(frozen=True)
class PairedTest:
    """McNemar's exact test of a candidate against the reference on the same images."""

    n: int
    both_right: int
    lost: int  # reference right, candidate wrong
    gained: int  # reference wrong, candidate right
    both_wrong: int
    p_value: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_exact(reference_right: np.ndarray, candidate_right: np.ndarray) -> PairedTest:
    """McNemar's exact (binomial) test on the discordant pairs (statsmodels ``mcnemar(exact=True)``)."""
    from statsmodels.stats.contingency_tables import mcnemar

    ref = np.asarray(reference_right, dtype=bool)
    cand = np.asarray(candidate_right, dtype=bool)
    both_right = int(np.sum(ref & cand))
    lost = int(np.sum(ref & ~cand))
    gained = int(np.sum(~ref & cand))
    both_wrong = int(np.sum(~ref & ~cand))
    table = [[both_right, lost], [gained, both_wrong]]
    p_value = 1.0 if lost + gained == 0 else float(mcnemar(table, exact=True).pvalue)
    return PairedTest(int(ref.size), both_right, lost, gained, both_wrong, p_value)


def flips_by_metric(labels: np.ndarray, reference_pred: np.ndarray, candidate_pred: np.ndarray,
                    classes: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(lost, gained) images against the reference, overall (accuracy, f1) and within each class (recall)."""
    y = np.asarray(labels, dtype=np.int64)
    ref_right = np.asarray(reference_pred) == y
    cand_right = np.asarray(candidate_pred) == y
    overall = (int(np.sum(ref_right & ~cand_right)), int(np.sum(~ref_right & cand_right)))
    out = {"accuracy": overall, "f1": overall}
    for k, name in enumerate(classes):
        mask = y == k
        out[f"recall[{name}]"] = (int(np.sum(ref_right[mask] & ~cand_right[mask])),
                                  int(np.sum(~ref_right[mask] & cand_right[mask])))
    return out


# ------------------------------------------------------------------------------------------------------------------
# Paired non-inferiority: is the loss against FP32 on the same images within the allowed drop?
#
# A precision and FP32 classify the same images, so the evidence about a drop is in the discordant pairs:
# ``lost`` (FP32 right, this one wrong) and ``gained`` (the other way). The drop of a proportion (accuracy, or
# the recall of one class over that class's images) is exactly (lost - gained) / n. Its confidence interval
# is Tango's asymptotic score interval for the difference of paired proportions:
#   Tango T. (1998) Equivalence test and confidence interval for the difference in proportions for the
#   paired-sample design. Statistics in Medicine 17: 891-908;
# recommended by Fagerland, Lydersen & Laake (2014) Recommended tests and confidence intervals for paired
# binomial proportions, Statistics in Medicine 33: 2850-2875 (the implementations in R's PropCIs ``scoreci.mp``,
# contingencytables ``Tango_asymptotic_score_CI_paired_2x2`` and ratesci ``pairbinci(skew=FALSE, bcf=FALSE)``).
# The decision is the usual non-inferiority reading of a two-sided 95% interval (each side at 2.5%, ICH E9):
#   pass          the upper bound of the drop is within the limit (the loss is shown to be small enough);
#   fail          the lower bound is above the limit (the loss is shown to be too large);
#   inconclusive  otherwise: these images cannot tell, and ``images_needed`` says how many would.

OUTCOMES = ("pass", "fail", "inconclusive")
PAIRED_METHOD = "Tango (1998) asymptotic score interval for the paired difference, 95%"


def _constrained_p21(b: float, c: float, n: float, delta: float) -> float:
    """Tango's restricted maximum-likelihood estimate of the ``gained`` cell probability when the drop
    (p_lost - p_gained) is ``delta`` (the positive root of Tango's quadratic, his equation (6))."""
    a_ = 2.0 * n
    b_ = -b - c + (2.0 * n - b + c) * delta
    c_ = -c * delta * (1.0 - delta)
    return (math.sqrt(max(b_ * b_ - 4.0 * a_ * c_, 0.0)) - b_) / (2.0 * a_)


def _tango_score(b: float, c: float, n: float, delta: float) -> float:
    """Tango's score statistic for H0: drop = ``delta`` (decreasing in ``delta``)."""
    variance = n * (2.0 * _constrained_p21(b, c, n, delta) + delta * (1.0 - delta))
    if variance <= 0.0:
        return math.copysign(math.inf, b - c - n * delta) if b - c - n * delta else 0.0
    return (b - c - n * delta) / math.sqrt(variance)


def tango_interval(lost: float, gained: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Tango's score interval for the drop (lost - gained) / n of a proportion measured twice on the same
    ``n`` images (lost: right before, wrong now; gained: the other way). Counts may be fractional (the
    sample-size search scales them). ``n`` must be positive."""
    from scipy.optimize import brentq

    if n <= 0:
        raise ValueError("the paired interval needs at least one image")
    z = z_value(confidence)
    estimate = (lost - gained) / n
    tol = 1e-10
    lower = -1.0 if estimate <= -1.0 else brentq(lambda d: _tango_score(lost, gained, n, d) - z, -1 + tol, 1 - tol,
                                                  xtol=1e-12)
    upper = 1.0 if estimate >= 1.0 else brentq(lambda d: _tango_score(lost, gained, n, d) + z, -1 + tol, 1 - tol,
                                                xtol=1e-12)
    return float(lower), float(upper)


@dataclass(frozen=True)
class PairedDecision:
    """One relative threshold judged on the same images as FP32: ``drop`` = reference - value = (lost -
    gained) / n, its 95% ``interval``, and the ``outcome`` (pass, fail, inconclusive). ``images_needed``: for an
    inconclusive outcome, about how many images (of ``population``: every test image, or one class's) would
    decide it at the discordance seen here."""

    metric: str
    reference: float
    value: float
    drop: float
    limit: float
    n: int
    lost: int
    gained: int
    interval: tuple[float, float]
    outcome: str
    method: str
    population: str = "test images"
    images_needed: int | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["interval"] = list(self.interval)
        return record

    def settle_text(self) -> str:
        """What would settle an inconclusive decision, e.g. "about 310 images of class 'pneumonia' (have 75)"."""
        if self.note and self.images_needed is None:
            return self.note
        if self.images_needed is None:
            return f"no number of {self.population}: the drop seen equals the limit"
        more = "more than " if self.images_needed >= MAX_IMAGES else "about "
        return f"{more}{self.images_needed} {self.population} (have {self.n})"

    def reason(self) -> str:
        lo, hi = self.interval
        head = (f"{self.metric} dropped {self.drop * 100:.2f} points ({self.reference:.4f} -> {self.value:.4f}; "
                f"95% interval of the drop {lo * 100:.2f} to {hi * 100:.2f} points, limit {self.limit * 100:.2f}; "
                f"{self.lost} image(s) FP32 got right now wrong, {self.gained} the other way, of {self.n})")
        if self.outcome == "inconclusive":
            return f"{head}: too few images to tell; {self.settle_text()} would decide"
        return head


def decide_drop(metric: str, reference: float, value: float, lost: int, gained: int, n: int, limit: float, *,
                population: str = "test images", confidence: float = CONFIDENCE) -> PairedDecision:
    """The paired non-inferiority decision of one proportion (accuracy, or a class's recall)."""
    if n <= 0:
        return PairedDecision(metric, reference, value, 0.0, limit, 0, 0, 0, (-1.0, 1.0), "inconclusive",
                              PAIRED_METHOD, population, None, f"no {population} to measure it on")
    lo, hi = tango_interval(lost, gained, n, confidence)
    drop = (lost - gained) / n
    if hi <= limit + 1e-12:
        outcome = "pass"
    elif lo > limit + 1e-12:
        outcome = "fail"
    else:
        outcome = "inconclusive"
    needed = images_to_decide(lost, gained, n, limit, confidence) if outcome == "inconclusive" else None
    return PairedDecision(metric, float(reference), float(value), drop, limit, int(n), int(lost), int(gained),
                          (lo, hi), outcome, PAIRED_METHOD, population, needed)

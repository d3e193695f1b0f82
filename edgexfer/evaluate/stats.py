"""How sure a bench verdict is: Wilson 95% intervals and McNemar's exact test against FP32 (statsmodels).

A test split of a few dozen images cannot tell a 1-point drop from noise. Each artifact gets a 95%
confidence interval for its accuracy and for each class's recall, and a paired test against FP32 on the
same images (McNemar's exact test on the discordant pairs: images one model gets right and the other
wrong). `resolution_warnings` says when one image moves a figure by more than its allowed drop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95


def wilson_interval(successes: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (statsmodels ``proportion_confint``); None when ``total`` is 0."""
    if total <= 0:
        return None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(int(successes), int(total), alpha=1.0 - confidence, method="wilson")
    return float(low), float(high)


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


def confidence_intervals(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """95% Wilson intervals: ``{"method", "confidence", "accuracy": [lo, hi], "recall": {class: [lo, hi] | None}}``."""
    y = np.asarray(labels, dtype=np.int64)
    pred = np.asarray(predictions, dtype=np.int64)
    recall = {}
    for k, name in enumerate(classes):
        mask = y == k
        interval = wilson_interval(int(np.sum(pred[mask] == k)), int(mask.sum()))
        recall[name] = list(interval) if interval else None
    accuracy = wilson_interval(int(np.sum(pred == y)), int(y.size))
    return {"method": "wilson", "confidence": CONFIDENCE, "accuracy": list(accuracy) if accuracy else None,
            "recall": recall}


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


def resolution_warnings(class_counts: dict[str, int], n: int, max_accuracy_drop: float,
                        max_recall_drop: float) -> list[str]:
    """Where the test split is too small for a threshold: one image moves the figure by more than it allows."""
    warnings = []
    if n and 1.0 / n > max_accuracy_drop:
        warnings.append(f"one image moves accuracy by {100.0 / n:.2f} points ({n} test images), more than the "
                        f"allowed drop of {max_accuracy_drop * 100:g} point(s): a single flipped image breaks the gate")
    small = {c: k for c, k in class_counts.items() if k and 1.0 / k > max_recall_drop}
    if small:
        listed = ", ".join(f"{c} ({k} images: {100.0 / k:.1f} points)" for c, k in small.items())
        warnings.append(f"one image moves the recall of {listed} by more than the allowed drop of "
                        f"{max_recall_drop * 100:g} points: a single flipped image breaks the gate; "
                        "bench on more test images (--data) for a meaningful verdict")
    return warnings

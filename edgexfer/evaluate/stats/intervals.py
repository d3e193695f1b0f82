"""Wilson 95% intervals of a proportion (statsmodels ``proportion_confint``): each artifact's accuracy and each
class's recall, and the normal quantile the other intervals and sample sizes use."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

CONFIDENCE = 0.95


def z_value(confidence: float) -> float:
    """The standard normal quantile of a two-sided ``confidence`` interval (1.96 at 95%)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_interval(successes: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (statsmodels ``proportion_confint``); None when ``total`` is 0."""
    if total <= 0:
        return None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(int(successes), int(total), alpha=1.0 - confidence, method="wilson")
    return float(low), float(high)


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

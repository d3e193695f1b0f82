"""Probability calibration per precision: the expected calibration error of the top-1 probability."""

from __future__ import annotations

from typing import Any

import numpy as np

# Probability calibration per precision: expected calibration error (Guo, Pleiss, Sun & Weinberger 2017, "On
# Calibration of Modern Neural Networks", ICML): the top-1 confidence in equal-width bins, ECE = sum over bins of
# (share of images) x |accuracy - mean confidence|. Quantization can leave the answers alone and still move the
# probabilities a clinical threshold reads.

CALIBRATION_BINS = 10
ECE_METHOD = ("expected calibration error of the top-1 probability, 10 equal-width bins (Guo et al. 2017), on "
              "the labelled test images")


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """``{"ece", "bins": [{"lo", "hi", "n", "confidence", "accuracy"}]}`` (empty bins have null figures)."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    confidence = p.max(axis=1) if p.size else np.zeros(0)
    right = (p.argmax(axis=1) == y) if p.size else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        conf = float(confidence[mask].mean()) if n else None
        acc = float(right[mask].mean()) if n else None
        if n and conf is not None and acc is not None:
            ece += n / y.size * abs(acc - conf)
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n, "confidence": conf, "accuracy": acc})
    return {"ece": float(ece) if y.size else None, "bins": out}

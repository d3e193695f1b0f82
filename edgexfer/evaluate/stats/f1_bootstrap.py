"""Macro F1's drop against FP32: a paired bootstrap interval (F1 has no paired-proportion form), and its
decision, which passes only with the accuracy decision."""

from __future__ import annotations

import numpy as np

from edgexfer.evaluate.stats.intervals import CONFIDENCE
from edgexfer.evaluate.stats.paired import PairedDecision

F1_METHOD = ("paired bootstrap of the macro-F1 drop (2000 resamples of the images, percentile 95% interval); "
             "it passes only with the accuracy decision, which bounds how many images may change class")
BOOTSTRAP_RESAMPLES = 2000


def _macro_f1_rows(y: np.ndarray, pred: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Macro F1 (over all ``k`` classes, 0 where undefined, as scikit-learn with zero_division=0) of each
    resample: ``idx`` is (resamples, n) indices into the images."""
    counts = np.zeros((idx.shape[0], k * k), dtype=np.int64)
    codes = y[idx] * k + pred[idx]
    for r in range(idx.shape[0]):
        counts[r] = np.bincount(codes[r], minlength=k * k)
    cm = counts.reshape(-1, k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(np.float64)
    fp = cm.sum(axis=1) - tp
    fn = cm.sum(axis=2) - tp
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.mean(axis=1)


def f1_drop_interval(labels: np.ndarray, reference_pred: np.ndarray, candidate_pred: np.ndarray, n_classes: int,
                     confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the macro-F1 drop (reference - candidate), resampling images with both models'
    answers kept together (paired). Seeded: the same predictions give the same interval."""
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0:
        return (-1.0, 1.0)
    rng = np.random.default_rng(seed)
    ref, cand = np.asarray(reference_pred, np.int64), np.asarray(candidate_pred, np.int64)
    chunk = max(1, min(resamples, 2_000_000 // y.size))  # at most ~16 MB of indices at a time
    parts = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, y.size, size=(min(chunk, resamples - start), y.size))
        parts.append(_macro_f1_rows(y, ref, idx, n_classes) - _macro_f1_rows(y, cand, idx, n_classes))
    drops = np.concatenate(parts)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(drops, [tail, 1.0 - tail])
    return float(lo), float(hi)


def decide_f1(reference: float, value: float, interval: tuple[float, float], limit: float,
              accuracy: PairedDecision) -> PairedDecision:
    """Macro F1 has no paired-proportion form: its drop gets a paired bootstrap interval. It fails when that
    interval lies above the limit; it passes when the interval is within the limit AND the accuracy decision
    passes (the bootstrap only resamples flips it saw; the accuracy interval bounds the flips it did not);
    otherwise it is inconclusive and the accuracy's image count is what would settle it."""
    lo, hi = interval
    drop = float(reference) - float(value)
    if lo > limit + 1e-12:
        outcome = "fail"
    elif hi <= limit + 1e-12 and accuracy.outcome == "pass":
        outcome = "pass"
    else:
        outcome = "inconclusive"
    needed = accuracy.images_needed if outcome == "inconclusive" else None
    note = ""
    if outcome == "inconclusive" and accuracy.outcome == "pass":
        note = "the bootstrap interval of the F1 drop reaches past the limit on these images"
    return PairedDecision("f1", float(reference), float(value), drop, limit, accuracy.n, accuracy.lost,
                          accuracy.gained, (lo, hi), outcome, F1_METHOD, "test images", needed, note)

"""Step 3 of the INT8 stage: how often an INT8 candidate makes FP32's top-1 decision, on enough images that one
image does not decide, with a Wilson 95% interval (`edgexfer.evaluate.stats.wilson_interval`, statsmodels).

Agreement needs no labels, so the judging images are every validation image the export loaded plus train images
that are NOT in the calibration set (the ranges were fitted on those), chosen with a fixed seed and capped so that
their FP32 and INT8 predictions stay cheap. The test split is left alone: it judges the bench, and choosing the
fallback round on it would bias that verdict. Train images may flatter agreement (the model is sure of them), so
the record keeps the count and the agreement of each source apart.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgexfer.data.calibration import pixel_hash
from edgexfer.data.splits import Split
from edgexfer.evaluate.stats import wilson_interval

VAL = "val"
TRAIN_UNSEEN = "train_not_calibration"
#: how the export's messages name each source
SOURCE_NAMES = {VAL: "validation", TRAIN_UNSEEN: "train (not calibration)"}


@dataclass(frozen=True)
class JudgingImages:
    """Images (uint8 NHWC) in consecutive blocks by source, and FP32's probabilities on them."""

    images: np.ndarray
    sources: tuple[tuple[str, int], ...]
    reference: np.ndarray

    @property
    def counts(self) -> dict[str, int]:
        return dict(self.sources)


@dataclass(frozen=True)
class Agreement:
    """Top-1 agreement of a candidate with FP32: ``agreed`` of ``n`` images, per source too, the largest
    probability difference and the Wilson 95% interval of the rate."""

    agreed: int
    n: int
    max_abs_diff: float
    by_source: tuple[tuple[str, int, int], ...]  # (source, agreed, n)

    @property
    def rate(self) -> float:
        return self.agreed / self.n if self.n else 0.0

    @property
    def interval(self) -> tuple[float, float]:
        return wilson_interval(self.agreed, self.n) or (0.0, 1.0)

    def against(self, bar: float) -> str:
        """``met`` when the whole interval is at or above ``bar``, ``missed`` when it is all below, else
        ``inconclusive`` (these images cannot tell)."""
        low, high = self.interval
        if low >= bar:
            return "met"
        return "missed" if high < bar else "inconclusive"

    def better_than(self, other: Agreement) -> bool:
        return self.agreed > other.agreed

    def text(self) -> str:
        low, high = self.interval
        return f"{self.rate * 100:.1f}% (95% CI {low * 100:.1f}-{high * 100:.1f}%) on {self.n} images"

    def record(self) -> dict[str, Any]:
        low, high = self.interval
        return {"against": "fp32", "agreement": self.rate, "max_abs_diff": self.max_abs_diff, "n": self.n,
                "agreed": self.agreed, "interval": [round(low, 4), round(high, 4)], "interval_method": "Wilson 95%",
                "by_source": {source: {"agreed": a, "n": n} for source, a, n in self.by_source}}


def judge(judging: JudgingImages, candidate: np.ndarray) -> Agreement:
    """How ``candidate``'s probabilities (on ``judging.images``) agree with FP32's."""
    reference = np.asarray(judging.reference, dtype=np.float64)
    probs = np.asarray(candidate, dtype=np.float64)
    same = reference.argmax(1) == probs.argmax(1)
    by_source, start = [], 0
    for source, count in judging.sources:
        by_source.append((source, int(same[start : start + count].sum()), int(count)))
        start += count
    return Agreement(int(same.sum()), int(len(same)), float(np.max(np.abs(reference - probs))) if probs.size else 0.0,
                     tuple(by_source))


def unseen_train_images(split: Split, calset: Any, image_size: Sequence[int], limit: int, seed: int) -> np.ndarray:
    """Up to ``limit`` train images of ``split`` that the calibration set ``calset`` does not hold (neither by
    reference nor, for a set drawn elsewhere, by pixels), chosen with ``seed``, in the split's order."""
    h, w = int(image_size[0]), int(image_size[1])
    empty = np.zeros((0, h, w, 3), dtype=np.uint8)
    if limit <= 0 or "train" not in split.splits:
        return empty
    calibrated = set(calset.record.refs)
    train = [s for s in split.samples("train") if s.ref not in calibrated]
    picked = np.sort(np.random.default_rng(seed).permutation(len(train))[:limit])
    if not len(picked):
        return empty
    subset = Split(split.source, {"train": [train[i] for i in picked]}, split.seed, split.fractions)
    images, _ = subset.load_arrays("train", (h, w))
    hashes = set(calset.record.pixel_sha1 or ())
    return images[[pixel_hash(img) not in hashes for img in images]] if hashes else images


def judging_images(val_images: np.ndarray, val_reference: np.ndarray, train_images: np.ndarray,
                   train_reference: np.ndarray) -> JudgingImages:
    sources = ((VAL, len(val_images)),) + (((TRAIN_UNSEEN, len(train_images)),) if len(train_images) else ())
    return JudgingImages(np.concatenate([val_images, train_images]), sources,
                         np.concatenate([val_reference, train_reference]))

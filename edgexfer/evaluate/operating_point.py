"""Clinical operating points: one class against the rest, at a decision threshold chosen on the validation
split, judged per precision on the test images.

A binary task (the positive class: the second of the model's classes unless ``--positive-class`` names one) or
``--positive-class NAME`` (that class against the rest) gets a threshold on FP32's probability of the positive
class, chosen on the run's validation images (never the test images it is judged on):

- ``--target-sensitivity S``: the highest threshold whose sensitivity on the validation images is at least S
  (the most specific point that still finds S of the positives);
- otherwise Youden's J (Youden 1950): the threshold that maximises sensitivity + specificity - 1.

The ROC points come from scikit-learn's ``roc_curve``. Every precision is then read at the same threshold on the
test images: sensitivity (over the positives) and specificity (over the negatives) with Wilson 95% intervals, and
each is a paired non-inferiority decision against FP32 at that threshold (``stats.decide_drop``: Tango's score
interval, limit ``--max-recall-drop``). TensorFlow-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgexfer.errors import EdgexferError
from edgexfer.evaluate.stats import CONFIDENCE, PairedDecision, decide_drop, wilson_interval

METHODS = ("target_sensitivity", "youden")


@dataclass(frozen=True)
class OperatingPoint:
    """The chosen threshold on P(positive class) and FP32's sensitivity/specificity where it was chosen."""

    positive_class: str
    positive_index: int
    method: str
    target_sensitivity: float | None
    threshold: float
    chosen_on: str
    n_positive: int
    n_negative: int
    sensitivity: float
    specificity: float
    source: str = "bench"  # who chose it: "export" (recorded in the manifest, served) or "bench"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_record(cls, record: Any, classes: Sequence[str], where: str) -> OperatingPoint | None:
        """From a manifest's ``operating_point`` (None when absent); a record that does not fit the model's
        classes is one line (exit 2)."""
        if record is None:
            return None
        try:
            point = cls(**{k: record[k] for k in cls.__dataclass_fields__ if k in record})
            threshold, index = float(point.threshold), int(point.positive_index)
        except (TypeError, KeyError, ValueError):
            raise EdgexferError(f"the operating point in {where} is not readable", "re-export the model") from None
        if not (0 <= index < len(classes) and classes[index] == point.positive_class and np.isfinite(threshold)):
            raise EdgexferError(f"the operating point in {where} names class {point.positive_class!r} at index "
                                f"{index}, not one of the model's classes ({', '.join(classes)})",
                                "re-export the model")
        return point

    def label(self) -> str:
        return f"{self.positive_class}@{self.threshold:.4g}"


def positive_index(classes: Sequence[str], positive_class: str | None) -> int | None:
    """The positive class's index: the named one (an unknown name is one line, exit 2), the second of two
    classes for a binary task, else None (no operating point)."""
    if positive_class is not None:
        if positive_class not in classes:
            raise EdgexferError(f"--positive-class {positive_class!r} is not a class of the model",
                                f"the model's classes are: {', '.join(classes)}")
        return list(classes).index(positive_class)
    return 1 if len(classes) == 2 else None


def choose_threshold(labels: np.ndarray, scores: np.ndarray, positive: int, classes: Sequence[str],
                     target_sensitivity: float | None, chosen_on: str) -> OperatingPoint | None:
    """The operating point on these (validation) images; None when they lack positives or negatives."""
    from sklearn.metrics import roc_curve

    y = np.asarray(labels, dtype=np.int64) == positive
    s = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    fpr, tpr, thresholds = roc_curve(y, s, drop_intermediate=False)
    finite = np.isfinite(thresholds)
    fpr, tpr, thresholds = fpr[finite], tpr[finite], thresholds[finite]
    if target_sensitivity is not None:
        reach = np.flatnonzero(tpr >= target_sensitivity - 1e-12)
        i = int(reach[0]) if reach.size else len(thresholds) - 1  # roc_curve's thresholds fall: the first is highest
        method = "target_sensitivity"
    else:
        i = int(np.argmax(tpr - fpr))
        method = "youden"
    threshold = float(thresholds[i])
    predicted = s >= threshold
    return OperatingPoint(str(classes[positive]), positive, method, target_sensitivity, threshold, chosen_on, n_pos,
                          n_neg, float(predicted[y].mean()), float((~predicted[~y]).mean()))


def read_at(labels: np.ndarray, scores: np.ndarray, point: OperatingPoint) -> dict[str, Any]:
    """Sensitivity and specificity at the point's threshold, with Wilson 95% intervals."""
    y = np.asarray(labels, dtype=np.int64) == point.positive_index
    predicted = np.asarray(scores, dtype=np.float64) >= point.threshold
    found, cleared = int(predicted[y].sum()), int((~predicted[~y]).sum())
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    sens, spec = wilson_interval(found, n_pos), wilson_interval(cleared, n_neg)
    return {"threshold": point.threshold, "positives": n_pos, "negatives": n_neg,
            "sensitivity": found / n_pos if n_pos else None, "specificity": cleared / n_neg if n_neg else None,
            "sensitivity_ci95": list(sens) if sens else None, "specificity_ci95": list(spec) if spec else None}


def decide_at(labels: np.ndarray, reference_scores: np.ndarray, candidate_scores: np.ndarray,
              point: OperatingPoint, limit: float, confidence: float = CONFIDENCE) -> list[PairedDecision]:
    """Paired decisions of the sensitivity and specificity drops against FP32 at the same threshold."""
    y = np.asarray(labels, dtype=np.int64) == point.positive_index
    ref = np.asarray(reference_scores, dtype=np.float64) >= point.threshold
    cand = np.asarray(candidate_scores, dtype=np.float64) >= point.threshold
    out = []
    for name, mask, right_ref, right_cand in (("sensitivity", y, ref, cand), ("specificity", ~y, ~ref, ~cand)):
        n = int(mask.sum())
        if n == 0:
            continue
        lost = int(np.sum(right_ref[mask] & ~right_cand[mask]))
        gained = int(np.sum(~right_ref[mask] & right_cand[mask]))
        population = (f"images of class '{point.positive_class}'" if name == "sensitivity"
                      else f"images not of class '{point.positive_class}'")
        out.append(decide_drop(f"{name}[{point.label()}]", float(right_ref[mask].mean()),
                               float(right_cand[mask].mean()), lost, gained, n, limit, population=population,
                               confidence=confidence))
    return out


@dataclass(frozen=True)
class DecisionRule:
    """How a served model answers at an operating point: the positive class when its probability reaches the
    threshold, else the most probable of the other classes (what Predictor applies and a Triton client must)."""

    positive_class: str
    positive_index: int
    threshold: float
    source: str = ""  # where it came from: the export manifest, or the bench results

    @classmethod
    def from_point(cls, point: OperatingPoint, source: str) -> DecisionRule:
        return cls(point.positive_class, point.positive_index, float(point.threshold), source)

    @classmethod
    def from_record(cls, record: Any, source: str = "") -> DecisionRule | None:
        """From a results.json ``operating_point`` (None when absent or when no threshold was chosen)."""
        if not isinstance(record, dict) or record.get("threshold") is None:
            return None
        return cls(str(record["positive_class"]), int(record["positive_index"]), float(record["threshold"]), source)

    def answer(self, probabilities: np.ndarray) -> np.ndarray:
        """The class index of each row of ``probabilities`` under this rule."""
        p = np.asarray(probabilities, dtype=np.float64)
        others = p.copy()
        others[:, self.positive_index] = -np.inf
        return np.where(p[:, self.positive_index] >= self.threshold, self.positive_index, others.argmax(axis=1))

    def describe(self) -> str:
        return (f"'{self.positive_class}' when its probability is at least {self.threshold:.6g}, else the most "
                "probable other class")

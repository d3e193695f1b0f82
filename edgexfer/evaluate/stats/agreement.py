"""Agreement with FP32 without labels: how often a precision changes FP32's answer, overall and per class FP32
gave, and the bounds of the accuracy and recall drops that it gives the gate."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgexfer.evaluate.stats.intervals import wilson_interval

# Bounds the gate may use, needing no label (lost <= the images whose answer changed):
#   accuracy drop <= disagreement rate;
#   recall drop of class k <= P(FP32 says k and the precision does not) / P(class k)
#                           = (disagreement among images FP32 calls k) x (share FP32 calls k) / (share of class k),
# the last ratio estimated on the labelled images. With the Wilson 95% upper bound of the disagreement, a
# threshold the labelled images leave undecided passes when the bound is within it.

AGREEMENT_METHOD = ("disagreement with FP32 on every usable image (labelled test, validation, --unlabeled; "
                    "never train or calibration images), Wilson 95% upper bound; a bound on the drop")


@dataclass(frozen=True)
class AgreementBound:
    """An upper bound of a drop from agreement alone: ``bound`` (95%), and the sentence saying how."""

    metric: str
    bound: float
    text: str


def agreement_evidence(reference_pred: np.ndarray, candidate_pred: np.ndarray, sources: Sequence[str],
                       classes: Sequence[str]) -> dict[str, Any]:
    """Disagreement with FP32 over the pool: ``{"method", "n", "disagree", "rate", "interval", "by_source":
    {source: {"n", "disagree"}}, "per_class": {class FP32 gave: {"n", "disagree", "rate", "interval"}}}``."""
    ref = np.asarray(reference_pred, dtype=np.int64)
    cand = np.asarray(candidate_pred, dtype=np.int64)
    src = np.asarray(list(sources))
    differ = ref != cand
    n = int(ref.size)
    overall = wilson_interval(int(differ.sum()), n)
    by_source = {str(s): {"n": int((src == s).sum()), "disagree": int(differ[src == s].sum())}
                 for s in dict.fromkeys(src.tolist())}
    per_class: dict[str, Any] = {}
    for k, name in enumerate(classes):
        mask = ref == k
        total = int(mask.sum())
        interval = wilson_interval(int(differ[mask].sum()), total)
        per_class[name] = {"n": total, "disagree": int(differ[mask].sum()),
                           "rate": float(differ[mask].mean()) if total else None,
                           "interval": list(interval) if interval else None}
    return {"method": AGREEMENT_METHOD, "n": n, "disagree": int(differ.sum()),
            "rate": float(differ.mean()) if n else None, "interval": list(overall) if overall else None,
            "by_source": by_source, "per_class": per_class}


def agreement_bounds(evidence: dict[str, Any], labels: np.ndarray, reference_pred_labelled: np.ndarray,
                     classes: Sequence[str]) -> dict[str, AgreementBound]:
    """The bounds of the accuracy drop and of each class's recall drop that ``evidence`` gives (see above);
    the share FP32 calls each class against the share of the class comes from the labelled images."""
    out: dict[str, AgreementBound] = {}
    interval = evidence.get("interval")
    if interval:
        out["accuracy"] = AgreementBound(
            "accuracy", float(interval[1]),
            f"FP32's answer changed on {evidence['disagree']} of {evidence['n']} images "
            f"(95% upper bound {interval[1] * 100:.2f}%), and the accuracy drop is at most that")
    y = np.asarray(labels, dtype=np.int64)
    ref = np.asarray(reference_pred_labelled, dtype=np.int64)
    for k, name in enumerate(classes):
        record = evidence["per_class"].get(name) or {}
        true_k = int((y == k).sum())
        if not record.get("interval") or true_k == 0:
            continue
        ratio = int((ref == k).sum()) / true_k
        bound = float(record["interval"][1]) * ratio
        out[f"recall[{name}]"] = AgreementBound(
            f"recall[{name}]", bound,
            f"of {record['n']} images FP32 calls '{name}', {record['disagree']} changed (95% upper bound "
            f"{record['interval'][1] * 100:.2f}%), times {ratio:.2f} (FP32's '{name}' answers per '{name}' image): "
            f"the recall drop is at most {bound * 100:.2f} points")
    return out

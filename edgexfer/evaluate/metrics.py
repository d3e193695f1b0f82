"""Classification metrics from scikit-learn, in the one schema every stage writes.

Used by finetune (metrics.json on the test split) and bench (per artifact × runtime), so a
Keras run and its ONNX export are measured by the same code.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn import metrics as skm


def classification_metrics(
    y_true: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
) -> dict[str, Any]:
    """Metrics of predicted class probabilities against integer labels.

    Keys: accuracy, loss (cross-entropy), precision_macro, recall_macro, f1 (all macro), auc (macro
    one-vs-rest; plain AUC for two classes; None when a class is absent from y_true),
    confusion_matrix (rows = true class), per_class {name: precision, recall, specificity, f1,
    support}, n.
    """
    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    k = len(class_names)
    if p.ndim != 2 or p.shape[1] != k or p.shape[0] != y.shape[0]:
        raise ValueError(f"probabilities of shape {p.shape} do not fit {y.shape[0]} labels and {k} classes")
    labels = list(range(k))
    pred = p.argmax(axis=1)
    cm = skm.confusion_matrix(y, pred, labels=labels)
    prec, rec, f1, support = skm.precision_recall_fscore_support(y, pred, labels=labels, zero_division=0)
    per_class: dict[str, dict[str, float | int]] = {}
    total = cm.sum()
    for i, name in enumerate(class_names):
        tp = cm[i, i]
        fp = cm[:, i].sum() - tp
        fn = cm[i, :].sum() - tp
        tn = total - tp - fp - fn
        per_class[name] = {
            "precision": float(prec[i]),
            "recall": float(rec[i]),
            "specificity": float(tn / (tn + fp)) if (tn + fp) else 0.0,
            "f1": float(f1[i]),
            "support": int(support[i]),
        }
    return {
        "accuracy": float(skm.accuracy_score(y, pred)),
        "loss": float(skm.log_loss(y, _clip_rows(p), labels=labels)),
        "precision_macro": float(skm.precision_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "recall_macro": float(skm.recall_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "f1": float(skm.f1_score(y, pred, labels=labels, average="macro", zero_division=0)),
        "auc": roc_auc(y, p),
        "confusion_matrix": cm.astype(int).tolist(),
        "per_class": per_class,
        "n": int(y.shape[0]),
    }


def _clip_rows(p: np.ndarray) -> np.ndarray:
    """Clip away zeros for the log, then renormalize: float32 softmax rows sum to 1 only within 1e-7,
    which scikit-learn's log_loss warns about."""
    clipped = np.clip(p, 1e-7, 1.0)
    return clipped / clipped.sum(axis=1, keepdims=True)


def roc_auc(y_true: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Plain AUC for two classes, macro one-vs-rest for more; None when it is undefined."""
    k = probabilities.shape[1]
    if len(np.unique(y_true)) < k:
        return None  # a class absent from y_true leaves its ROC curve undefined
    if k == 2:
        return float(skm.roc_auc_score(y_true, probabilities[:, 1]))
    # renormalize: sklearn's multiclass AUC checks that rows sum to 1 exactly
    p = probabilities / probabilities.sum(axis=1, keepdims=True)
    return float(skm.roc_auc_score(y_true, p, multi_class="ovr", average="macro", labels=list(range(k))))


def agreement(reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Top-1 agreement and max abs probability difference of ``candidate`` against ``reference``."""
    ref = np.asarray(reference, dtype=np.float64)
    cand = np.asarray(candidate, dtype=np.float64)
    return {
        "agreement": float(np.mean(ref.argmax(1) == cand.argmax(1))),
        "max_abs_diff": float(np.max(np.abs(ref - cand))) if ref.size else 0.0,
    }

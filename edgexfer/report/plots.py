"""Plots of a run and of a bench: training curves, confusion matrices, ROC curves.

matplotlib's object API with the Agg canvas (no pyplot state, no display needed); every function
writes one PNG atomically and returns its path. No TensorFlow here: bench reuses these on the edge.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.io import atomic_path


def _figure(width: float = 6.0, height: float = 4.5):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: str | os.PathLike[str]) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", bbox_inches="tight")
    return Path(path)


def training_curves(history: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str]) -> list[Path]:
    """``accuracy.png`` and ``loss.png`` over the epochs of both phases, with phase/stage boundaries.

    ``history`` rows hold ``epoch_global``, ``stage`` and metrics such as ``accuracy`` and ``val_accuracy``.
    """
    out = Path(out_dir)
    written = []
    epochs = [int(r["epoch_global"]) for r in history]
    for metric in ("accuracy", "loss"):
        fig = _figure()
        ax = fig.add_subplot(1, 1, 1)
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = [_float(r.get(key)) for r in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], marker="o", markersize=3, label=label)
        previous = None
        for r in history:
            if previous is not None and r["stage"] != previous:
                ax.axvline(int(r["epoch_global"]) - 0.5, color="grey", linestyle="--", linewidth=0.8)
                ax.annotate(str(r["stage"]), (int(r["epoch_global"]) - 0.5, 1.0), xycoords=("data", "axes fraction"),
                            fontsize=7, color="grey", rotation=90, va="top", ha="right")
            previous = r["stage"]
        ax.set_xlabel("epoch")
        ax.set_ylabel(metric)
        ax.set_title(f"training {metric}")
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend()
        written.append(_save(fig, out / f"{metric}.png"))
    return written


def confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    normalize: bool = False,
    title: str | None = None,
) -> Path:
    """A confusion matrix (rows = true class) in counts, or normalized per true class."""
    cm = np.asarray(matrix, dtype=np.float64)
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    k = len(class_names)
    fig = _figure(1.2 + 0.9 * k + 1.5, 1.2 + 0.9 * k)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(cm, cmap="Blues", vmin=0, vmax=1 if normalize else max(cm.max(), 1))
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), labels=list(class_names), rotation=45, ha="right")
    ax.set_yticks(range(k), labels=list(class_names))
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    threshold = (1 if normalize else cm.max()) / 2
    for i in range(k):
        for j in range(k):
            text = f"{cm[i, j]:.2f}" if normalize else f"{int(cm[i, j])}"
            ax.text(j, i, text, ha="center", va="center", color="white" if cm[i, j] > threshold else "black")
    ax.set_title(title or ("confusion matrix (normalized by true class)" if normalize else "confusion matrix"))
    return _save(fig, path)


def roc_curves(
    y_true: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    title: str | None = None,
) -> Path:
    """One-vs-rest ROC curve per class (the positive class only for two classes), with its AUC."""
    from sklearn.metrics import auc, roc_curve

    y = np.asarray(y_true, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    k = len(class_names)
    fig = _figure(5.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    for c in ([1] if k == 2 else range(k)):
        positives = y == c
        if positives.all() or not positives.any():
            continue  # a curve needs both positives and negatives
        fpr, tpr, _ = roc_curve(positives.astype(int), p[:, c])
        ax.plot(fpr, tpr, label=f"{class_names[c]} (AUC {auc(fpr, tpr):.3f})")
    ax.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=0.8)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("false positive rate (1 - specificity)")
    ax.set_ylabel("true positive rate (sensitivity)")
    ax.set_title(title or "ROC (one vs rest)")
    ax.grid(alpha=0.3)
    if ax.lines[:-1]:
        ax.legend(loc="lower right")
    return _save(fig, path)


def classification_plots(
    y_true: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    prefix: str = "",
    title: str | None = None,
) -> list[Path]:
    """``confusion_matrix.png``, ``confusion_matrix_normalized.png`` and ``roc.png`` (names after ``prefix``)."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    out = Path(out_dir)
    y = np.asarray(y_true, dtype=np.int64)
    cm = sk_confusion(y, np.asarray(probabilities).argmax(axis=1), labels=list(range(len(class_names))))
    suffix = f" — {title}" if title else ""
    return [
        confusion_matrix(cm, class_names, out / f"{prefix}confusion_matrix.png", title=f"confusion matrix{suffix}"),
        confusion_matrix(cm, class_names, out / f"{prefix}confusion_matrix_normalized.png", normalize=True,
                         title=f"confusion matrix, normalized{suffix}"),
        roc_curves(y, probabilities, class_names, out / f"{prefix}roc.png", title=f"ROC (one vs rest){suffix}"),
    ]


def _float(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None

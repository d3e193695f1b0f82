"""Plain-text tables of a run's results (TensorFlow-free)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def metrics_table(metrics: dict[str, Any], classes: Sequence[str]) -> str:
    """The test metrics: per class precision/recall/specificity/F1/support, then the macro figures."""
    width = max(12, *(len(c) for c in classes)) + 2
    lines = [f"test split ({metrics['n']} images)",
             f"{'class':<{width}}{'precision':>10}{'recall':>10}{'specif.':>10}{'F1':>10}{'support':>9}"]
    for name in classes:
        m = metrics["per_class"][name]
        lines.append(f"{name:<{width}}{m['precision']:>10.3f}{m['recall']:>10.3f}{m['specificity']:>10.3f}"
                     f"{m['f1']:>10.3f}{m['support']:>9d}")
    auc = "n/a" if metrics.get("auc") is None else f"{metrics['auc']:.3f}"
    lines.append(f"{'macro':<{width}}{metrics['precision_macro']:>10.3f}{metrics['recall_macro']:>10.3f}{'':>10}"
                 f"{metrics['f1']:>10.3f}{metrics['n']:>9d}")
    lines.append(f"accuracy {metrics['accuracy']:.3f}   AUC {auc}   loss {metrics['loss']:.4f}")
    return "\n".join(lines)

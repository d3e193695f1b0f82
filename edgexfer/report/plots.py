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

from edgexfer.report.formats import figure, save_figure


def stage_name(key: str) -> str:
    """A stage key of the history (``phase1``, ``phase2_stage1``) in words: "phase 1", "phase 2, stage 1"."""
    import re

    match = re.fullmatch(r"phase(\d+)(?:[_-]stage(\d+))?", key)
    if not match:
        return key
    return f"phase {match[1]}" + (f", stage {match[2]}" if match[2] else "")


def training_curves_figures(history: Sequence[Mapping[str, Any]], *, stage_labels: Mapping[str, str] | None = None,
                            saved_epoch: int | None = None, monitor: str | None = None) -> dict[str, Any]:
    """The two training-curve Figures (``accuracy``, ``loss``) over the epochs of every phase.

    Each phase/stage is named in words above the frame (``stage_labels`` by stage key, e.g. "phase 1: all
    layers"; else "phase 1", "phase 2, stage 1"), where no curve can cross its label, and a dashed line marks
    where the next one began. ``saved_epoch`` (overall numbering), the epoch whose weights were saved, gets a
    star on the validation curve and a legend entry naming ``monitor``.
    """
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    epochs = [int(r["epoch_global"]) for r in history]
    names = dict(stage_labels or {})
    figures = {}
    for metric in ("accuracy", "loss"):
        fig = figure()
        ax = fig.add_subplot(1, 1, 1)
        for key, label in ((metric, "train"), (f"val_{metric}", "validation")):
            values = [_float(r.get(key)) for r in history]
            if any(v is not None for v in values):
                ax.plot(epochs, [np.nan if v is None else v for v in values], marker="o", markersize=3, label=label)
        starts = [(int(r["epoch_global"]), str(r["stage"])) for i, r in enumerate(history)
                  if i == 0 or r["stage"] != history[i - 1]["stage"]]
        for i, (epoch, stage) in enumerate(starts):
            if i:
                ax.axvline(epoch - 0.5, color="0.4", linestyle="--", linewidth=0.9)
            # above the frame: readable, and never crossed by a curve
            ax.annotate(names.get(stage, stage_name(stage)), (epoch - (0.5 if i else 0.0), 1.0),
                        xycoords=("data", "axes fraction"), xytext=(3, 3), textcoords="offset points",
                        fontsize=8.5, color="0.15", va="bottom", ha="left")
        saved = next((r for r in history if int(r["epoch_global"]) == saved_epoch), None)
        value = _float(saved.get(f"val_{metric}")) if saved is not None else None
        if value is not None:
            ax.plot([saved_epoch], [value], linestyle="", marker="*", markersize=14, color="tab:red", zorder=4,
                    label=f"saved model (epoch {saved_epoch}" + (f", best {monitor})" if monitor else ")"))
        if metric == "accuracy":
            ax.set_ylim(0, 1.0)
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch (counted over all phases)")
        ax.set_ylabel("accuracy (%)" if metric == "accuracy" else metric)
        ax.set_title(f"Training {metric} per epoch: train and validation splits", pad=22 if starts else 6)
        ax.grid(alpha=0.3)
        if ax.lines:
            ax.legend(loc="lower right" if metric == "accuracy" else "upper right", fontsize=8.5)
        figures[metric] = fig
    return figures


def training_curves(history: Sequence[Mapping[str, Any]], out_dir: str | os.PathLike[str], *,
                    stage_labels: Mapping[str, str] | None = None, saved_epoch: int | None = None,
                    monitor: str | None = None) -> list[Path]:
    """``accuracy.png`` and ``loss.png`` over the epochs of both phases, with phase/stage boundaries.

    ``history`` rows hold ``epoch_global``, ``stage`` and metrics such as ``accuracy`` and ``val_accuracy``.
    """
    out = Path(out_dir)
    figures = training_curves_figures(history, stage_labels=stage_labels, saved_epoch=saved_epoch, monitor=monitor)
    return [save_figure(fig, out / f"{metric}.png") for metric, fig in figures.items()]


# bench plots: one marker per precision, drawn largest first and hollow where they could hide another
_PRECISION_STYLE = {"fp32": ("o", 150, True), "fp16": ("s", 95, True), "int8": ("^", 55, False)}


def _bench_label(row: Mapping[str, Any]) -> str:
    return f"{row['artifact']} ({row['runtime']})"


def _verdict(row: Mapping[str, Any]) -> str:
    """pass, fail or inconclusive (a row of a bench before three-outcome verdicts: from ``passed``)."""
    gate = row.get("gate") or {}
    verdict = gate.get("verdict")
    if verdict in ("pass", "fail", "inconclusive"):
        return str(verdict)
    return "pass" if gate.get("passed", True) else "fail"


def _reference_row(rows: Sequence[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The gate's FP32 reference: FP32 on ONNX Runtime CPU where it ran, else the first FP32 ONNX row."""
    fp32 = [r for r in rows if r.get("precision") == "fp32" and r.get("runtime") != "keras"]
    return next((r for r in fp32 if r.get("runtime") == "ort-cpu"), fp32[0] if fp32 else None)


#: markers closer than this (points, on the drawn axes) would cover each other: they are set side by side
_NEAR_PT = 13.0


def _spread(points: list[tuple[float, float]]) -> list[float]:
    """A horizontal offset in points for each of ``points`` (positions on the drawn figure, in points) so that
    markers that would cover each other sit side by side, ``_NEAR_PT`` apart, centred on where they were:
    accuracy is exact, while a few percent of latency is within its noise."""
    offsets = [0.0] * len(points)
    groups: list[list[int]] = []
    for i in sorted(range(len(points)), key=lambda k: points[k]):
        x, y = points[i]
        group = next((g for g in groups if any(abs(x - points[k][0]) < _NEAR_PT and abs(y - points[k][1]) < _NEAR_PT
                                               for k in g)), None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    for group in groups:
        centre = sum(points[k][0] for k in group) / len(group)
        for n, k in enumerate(sorted(group, key=lambda k: points[k][0])):
            offsets[k] = centre + (n - (len(group) - 1) / 2) * _NEAR_PT - points[k][0]
    return offsets


def accuracy_vs_latency_figure(rows: Sequence[Mapping[str, Any]], batch_size: int,
                               max_accuracy_drop: float | None = None):
    """Test accuracy (%) against p50 latency at ``batch_size``, one point per artifact × runtime.

    The accuracy axis is zoomed to the points; a shaded band shows the accuracy drop the gate allows below the
    FP32 reference (``max_accuracy_drop``, a fraction), so a 0.3-point difference reads against the 1 point
    allowed rather than as a cliff. Marker shape and size follow the precision, colour the point; points on
    one spot are set side by side (a few points apart, horizontally), so FP32 never hides under FP16. A red cross
    marks a failed gate, an orange ring an inconclusive one, and the title says so only when one is."""
    from matplotlib import colormaps
    from matplotlib.lines import Line2D
    from matplotlib.transforms import offset_copy

    fig = figure(7.5, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    key = str(batch_size)
    points = [r for r in rows if key in r.get("latency_ms", {})]
    cmap = colormaps["tab10"]
    colors = {id(r): cmap(i % 10) for i, r in enumerate(points)}  # one colour per point: the legend names it
    failed = [r for r in points if _verdict(r) == "fail"]
    undecided = [r for r in points if _verdict(r) == "inconclusive"]
    latencies = [float(r["latency_ms"][key]["p50"]) for r in points]
    log_x = bool(latencies) and min(latencies) > 0 and max(latencies) / min(latencies) > 5
    accuracies = [float(r["accuracy"]) * 100 for r in points]
    reference = _reference_row(points)
    band = None
    if reference is not None and max_accuracy_drop is not None:
        top = float(reference["accuracy"]) * 100
        band = (top - max_accuracy_drop * 100, top)
        ax.axhspan(*band, color="tab:green", alpha=0.12, zorder=0, linewidth=0)
        ax.axhline(top, color="tab:green", linewidth=0.8, linestyle="--", zorder=1)
    # the axes are fixed before the points are drawn, so that where each marker lands is known
    if accuracies:
        low = min(accuracies + ([band[0]] if band else []))
        high = max(accuracies + ([band[1]] if band else []))
        pad = max(0.5, 0.15 * (high - low))
        ax.set_ylim(max(0.0, low - pad), min(100.0, high + pad))
    if log_x:
        # a Keras point 10× slower would squeeze every ONNX point into one spot on a linear axis
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        ax.set_xlim(min(latencies) / 1.6, max(latencies) * 1.6)
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    else:
        ax.set_xlim(0, max(latencies) * 1.15 if latencies and max(latencies) > 0 else 1.0)
    order = sorted(points, key=lambda r: -_PRECISION_STYLE.get(str(r["precision"]), ("D", 70, False))[1])
    to_pt = 72.0 / fig.dpi
    drawn = [ax.transData.transform((float(r["latency_ms"][key]["p50"]), float(r["accuracy"]) * 100)) * to_pt
             for r in order]
    shifts = _spread([(float(x), float(y)) for x, y in drawn])
    for r, dx in zip(order, shifts, strict=True):
        marker, size, hollow = _PRECISION_STYLE.get(str(r["precision"]), ("D", 70, False))
        x, y = float(r["latency_ms"][key]["p50"]), float(r["accuracy"]) * 100
        color = colors[id(r)]
        where = offset_copy(ax.transData, fig=fig, x=dx, units="points") if dx else ax.transData
        ax.scatter(x, y, s=size, marker=marker, facecolor="none" if hollow else color, edgecolor=color,
                   linewidth=1.6, zorder=3, clip_on=False, label=_bench_label(r), transform=where)
        if any(r is f for f in failed):
            # behind the point and larger, so the precision's own marker stays visible on top
            ax.scatter(x, y, s=260, marker="x", color="tab:red", linewidth=1.4, zorder=2, clip_on=False,
                       transform=where)
        elif any(r is u for u in undecided):
            ax.scatter(x, y, s=300, marker="o", facecolor="none", edgecolor="tab:orange", linewidth=1.2,
                       linestyle=":", zorder=2, clip_on=False, transform=where)
    ax.set_xlabel(f"p50 latency of one batch of {batch_size} (ms"
                  + (", log scale" if ax.get_xscale() == "log" else "") + ") — lower is better")
    ax.set_ylabel("test accuracy (%, axis zoomed) — higher is better")
    marks = (["red ×: gate failed"] if failed else []) + (["orange ring: inconclusive"] if undecided else [])
    ax.set_title(f"Accuracy versus latency at batch {batch_size}" + (f" ({'; '.join(marks)})" if marks else ""))
    ax.grid(alpha=0.3)
    handles, _labels = ax.get_legend_handles_labels()
    if band is not None and reference is not None and max_accuracy_drop is not None:
        from matplotlib.patches import Patch

        handles.append(Patch(color="tab:green", alpha=0.25, label=f"allowed drop ({max_accuracy_drop * 100:g} pt "
                                                                  f"below {reference['artifact']})"))
    if failed:
        handles.append(Line2D([], [], marker="x", linestyle="", color="tab:red", markersize=8, label="gate failed"))
    if undecided:
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="tab:orange",
                              markersize=10, label="gate inconclusive"))
    ax.legend(handles=handles, fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
              title="artifact (runtime)", title_fontsize=8)
    return fig


#: how much higher a p50 must be than FP32's to be called slower: a margin timing noise does not cross
SLOWER_MARGIN = 1.05


def slower_than_fp32(rows: Sequence[Mapping[str, Any]], row: Mapping[str, Any]) -> list[int]:
    """The batch sizes at which ``row`` (not FP32) had a p50 over ``SLOWER_MARGIN`` times FP32's on the same
    runtime (else the gate's FP32 reference): where its precision costs time on this device instead of saving it."""
    if row.get("precision") == "fp32":
        return []
    same = [r for r in rows if r.get("precision") == "fp32" and r.get("runtime") == row.get("runtime")]
    fp32 = same[0] if same else _reference_row(rows)
    if fp32 is None:
        return []
    mine, theirs = row.get("latency_ms", {}), fp32.get("latency_ms", {})
    return sorted(int(b) for b in mine
                  if b in theirs and float(mine[b]["p50"]) > SLOWER_MARGIN * float(theirs[b]["p50"]))


def latency_by_batch_figure(rows: Sequence[Mapping[str, Any]]):
    """p50 latency per image (one batch's p50 divided by its size) against batch size, one line per
    artifact × runtime: how much batching buys. A precision slower than FP32 at some batch size says so in
    its legend entry, and the title counts them. The report's table gives the same figures per batch."""
    fig = figure(7.5, 4.8)
    ax = fig.add_subplot(1, 1, 1)
    slower = 0
    for r in rows:
        sizes = sorted(int(b) for b in r.get("latency_ms", {}))
        if not sizes:
            continue
        marker, _size, hollow = _PRECISION_STYLE.get(str(r["precision"]), ("D", 70, False))
        behind = slower_than_fp32(rows, r)
        slower += bool(behind)
        label = _bench_label(r) + (f": slower than FP32 at batch {', '.join(map(str, behind))}" if behind else "")
        ax.plot(sizes, [float(r["latency_ms"][str(b)]["p50"]) / b for b in sizes], marker=marker,
                markerfacecolor="none" if hollow else None, linestyle=":" if behind else "-", label=label)
    ax.set_xscale("log", base=2)
    from matplotlib.ticker import FuncFormatter

    ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
    ax.set_ylim(bottom=0)
    ax.set_xlabel("batch size")
    ax.set_ylabel("p50 ms per image (batch p50 ÷ batch size)")
    ax.set_title("Latency per image by batch size (p50 of a batch ÷ its size)"
                 + (f"\n{slower} precision(s) slower than FP32 on this device at some batch size (dotted)"
                    if slower else ""), fontsize=11)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False,
                  title="artifact (runtime)", title_fontsize=8)
    return fig


def reliability_figure(calibration: Sequence[Mapping[str, Any]]):
    """Reliability diagram: accuracy against mean top-1 confidence per confidence bin, one line per
    artifact × runtime, the diagonal being perfect calibration; the legend gives each one's ECE."""
    fig = figure(6.5, 5.0)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="perfectly calibrated")
    for entry in calibration:
        points = [(b["confidence"], b["accuracy"]) for b in entry.get("bins", []) if b.get("n")]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        ece = entry.get("ece")
        ax.plot(xs, ys, marker="o", label=f"{entry['artifact']} ({entry['runtime']})"
                + (f", ECE {ece:.3f}" if ece is not None else ""))
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xlabel("mean top-1 probability in the bin")
    ax.set_ylabel("accuracy in the bin")
    ax.set_title("Reliability of the probabilities (test images, 10 bins)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", frameon=False)
    return fig


def reliability_diagram(calibration: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    return save_figure(reliability_figure(calibration), path)


def accuracy_vs_latency(rows: Sequence[Mapping[str, Any]], batch_size: int, path: str | os.PathLike[str],
                        max_accuracy_drop: float | None = None) -> Path:
    return save_figure(accuracy_vs_latency_figure(rows, batch_size, max_accuracy_drop), path)


def latency_by_batch(rows: Sequence[Mapping[str, Any]], path: str | os.PathLike[str]) -> Path:
    return save_figure(latency_by_batch_figure(rows), path)


def confusion_matrix(
    matrix: Sequence[Sequence[int]] | np.ndarray,
    class_names: Sequence[str],
    path: str | os.PathLike[str],
    *,
    normalize: bool = False,
    title: str | None = None,
) -> Path:
    """A confusion matrix (rows = true class) in counts, or normalized per true class; the title (``title``:
    what and on which split) gets a second line saying which of the two it is."""
    cm = np.asarray(matrix, dtype=np.float64)
    if normalize:
        totals = cm.sum(axis=1, keepdims=True)
        cm = np.divide(cm, totals, out=np.zeros_like(cm), where=totals > 0)
    k = len(class_names)
    fig = figure(1.2 + 0.9 * k + 1.5, 1.2 + 0.9 * k)
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
    how = ("normalized by true class: each row sums to 1" if normalize
           else "counts of images: rows = true class")
    ax.set_title(f"{title}\n({how})" if title else f"confusion matrix\n({how})", fontsize=10)
    return save_figure(fig, path)


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
    fig = figure(5.5, 5.0)
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
    ax.set_title(title or "ROC, one vs rest", fontsize=10)
    ax.grid(alpha=0.3)
    if ax.lines[:-1]:
        ax.legend(loc="lower right")
    return save_figure(fig, path)


def classification_plots(
    y_true: Sequence[int] | np.ndarray,
    probabilities: np.ndarray,
    class_names: Sequence[str],
    out_dir: str | os.PathLike[str],
    *,
    prefix: str = "",
    title: str | None = None,
) -> list[Path]:
    """``confusion_matrix.png``, ``confusion_matrix_normalized.png`` and ``roc.png`` (names after ``prefix``);
    ``title`` says which images they are on (e.g. "test split, 375 images")."""
    from sklearn.metrics import confusion_matrix as sk_confusion

    out = Path(out_dir)
    y = np.asarray(y_true, dtype=np.int64)
    cm = sk_confusion(y, np.asarray(probabilities).argmax(axis=1), labels=list(range(len(class_names))))
    where = f" — {title}" if title else ""
    return [
        confusion_matrix(cm, class_names, out / f"{prefix}confusion_matrix.png", title=f"confusion matrix{where}"),
        confusion_matrix(cm, class_names, out / f"{prefix}confusion_matrix_normalized.png", normalize=True,
                         title=f"confusion matrix{where}"),
        roc_curves(y, probabilities, class_names, out / f"{prefix}roc.png", title=f"ROC, one vs rest{where}"),
    ]


def _float(value: Any) -> float | None:
    try:
        return None if value is None or value == "" else float(value)
    except (TypeError, ValueError):
        return None

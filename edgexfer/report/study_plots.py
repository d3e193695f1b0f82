"""The study report's plots: accuracy vs latency (Pareto front, recommendation), training curves, confusion
matrices and learning curves, drawn with matplotlib's object API on the Agg canvas (no pyplot state, no
display needed). Each returns the PNG it wrote, or None when the study has nothing to draw."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.contracts.study import REFERENCE_RUNTIMES
from edgexfer.report.formats import figure as _new_figure
from edgexfer.report.formats import finite as _finite
from edgexfer.report.formats import num as _num
from edgexfer.report.formats import save_figure

PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8": 2}
_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}
#: a row's test: does it count as deployable (passed the gate, beats the baseline, device runtime)? The studies
#: side decides (``edgexfer.studies.recommend.is_deployable``); the report only draws the answer
Deployable = Callable[[dict[str, Any]], bool]


@dataclass(frozen=True)
class StudyPlots:
    """The PNGs drawn for a study's report (None: nothing to draw)."""

    pareto: Path | None = None
    training: Path | None = None
    confusion: Path | None = None
    learning: Path | None = None

    def items(self) -> Iterator[tuple[str, Path | None]]:
        """(name, path) of each plot, in the order the report shows them."""
        return ((f.name, getattr(self, f.name)) for f in fields(self))


def _figure(width: float, height: float) -> Any:
    return _new_figure(width, height, dpi=110, layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    return save_figure(fig, path, tight=False)


def _colors(names: Sequence[str]) -> dict[str, Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return {name: cmap(i % 10) for i, name in enumerate(names)}


def plot_pareto(rows: list[dict[str, Any]], recommendation: dict[str, Any] | None, budget_ms: float | None,
                path: Path, deployable: Deployable) -> Path | None:
    """Accuracy against batch-1 p50 latency, every backbone and precision, with the front drawn."""
    measured = [r for r in rows if r.get("runtime") not in REFERENCE_RUNTIMES
                and _finite(r.get("latency_p50_ms")) and _finite(r.get("accuracy"))]
    if not measured:
        return None
    backbones = list(dict.fromkeys(r["backbone"] for r in measured))
    colors = _colors(backbones)
    fig = _figure(8.0, 5.0)
    ax = fig.subplots()
    for r in measured:
        x, y = float(r["latency_p50_ms"]), float(r["accuracy"])
        marker = _MARKERS.get(str(r.get("precision")), "D")
        if deployable(r):
            ax.scatter(x, y, s=60, marker=marker, color=colors[r["backbone"]], edgecolor="black", linewidth=0.6, zorder=3)
        else:  # broke the gate: shown hollow, never on the front
            ax.scatter(x, y, s=60, marker=marker, facecolor="none", edgecolor=colors[r["backbone"]], linewidth=1.2, zorder=3)
    front = sorted((r for r in measured if r.get("pareto")), key=lambda r: float(r["latency_p50_ms"]))
    if front:
        xs = [float(r["latency_p50_ms"]) for r in front]
        ys = [float(r["accuracy"]) for r in front]
        ax.step(xs, ys, where="post", color="0.35", linestyle="--", linewidth=1.2, zorder=2, label="Pareto front")
        for r in front:
            ax.annotate(f"{r['backbone']} {r.get('precision')}", (float(r["latency_p50_ms"]), float(r["accuracy"])),
                        textcoords="offset points", xytext=(6, -11), fontsize=8, color="0.25")
    if budget_ms is not None:
        ax.axvline(budget_ms, color="tab:red", linewidth=1.0, linestyle=":", label=f"budget {budget_ms:g} ms")
    if recommendation and recommendation.get("status") == "ok":
        # a hollow ring around the point and a star with an arrow off to the side: nothing filled is drawn over
        # the recommended point or its neighbours
        at = (float(recommendation["latency_p50_ms"]), float(recommendation["accuracy"]))
        ax.scatter(*at, s=260, marker="o", facecolor="none", edgecolor="goldenrod", linewidth=2.0, zorder=2.5,
                   label="recommended")
        ax.annotate("★ recommended", at, textcoords="offset points", xytext=(18, 22), fontsize=8.5,
                    color="darkgoldenrod", arrowprops={"arrowstyle": "->", "color": "darkgoldenrod", "lw": 1.0})
    # the budget line is part of the picture: a far budget would otherwise squeeze the points together
    latencies = [float(r["latency_p50_ms"]) for r in measured] + ([budget_ms] if budget_ms is not None else [])
    if min(latencies) > 0 and max(latencies) / min(latencies) > 20:
        from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

        ax.set_xscale("log")
        # plain numbers at 1-2-5 steps: the default minor labels (2×10⁻¹ …) overlap on short ranges
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda value, _pos: f"{value:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("batch-1 latency, p50 (ms) — lower is better")
    ax.set_ylabel("test accuracy (%) — higher is better")
    # the whole 0–100 % scale: a zoomed axis makes a 0.3-point difference look like a cliff
    from matplotlib.ticker import PercentFormatter

    ax.set_ylim(0, 1.0)
    ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    for collection in ax.collections:
        collection.set_clip_on(False)  # a point at 100 % stays whole
    ax.grid(True, alpha=0.3)
    # legend: colour = backbone, marker = precision
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], marker="o", linestyle="", color=colors[b], markeredgecolor="black", label=b)
               for b in backbones]
    precisions = sorted({str(r.get("precision")) for r in measured}, key=lambda p: PRECISION_ORDER.get(p, 9))
    handles += [Line2D([], [], marker=_MARKERS.get(p, "D"), linestyle="", color="0.6", markeredgecolor="black", label=p)
                for p in precisions]
    if any(not deployable(r) for r in measured):
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="0.3",
                              label="broke the gate"))
    extra_handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + extra_handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8.5, frameon=False)
    ax.set_title("Accuracy versus latency, all backbones and precisions")
    return _save(fig, path)


def weights_name(weights: Any) -> str:
    """A weights choice as shown in the report: a file by its name, not its full path."""
    text = str(weights)
    return ", ".join(Path(w.strip()).name if ("/" in w or "\\" in w) else w.strip() for w in text.split(","))


def _history_series(history: list[dict[str, Any]], key: str) -> list[float]:
    return [_num(row.get(key)) for row in history]


def plot_training_curves(backbones: list[dict[str, Any]], path: Path) -> Path | None:
    """Accuracy and loss per epoch (train and validation), one column per backbone."""
    entries = [b for b in backbones if b.get("history")]
    if not entries:
        return None
    ncols = min(len(entries), 4)
    nblocks = math.ceil(len(entries) / ncols)
    fig = _figure(max(3.3 * ncols + 0.6, 6.0), 5.2 * nblocks)
    axes = np.atleast_2d(fig.subplots(2 * nblocks, ncols, squeeze=False))
    for i in range(nblocks * ncols):
        block, col = divmod(i, ncols)
        ax_acc, ax_loss = axes[2 * block, col], axes[2 * block + 1, col]
        if i >= len(entries):
            ax_acc.set_visible(False)
            ax_loss.set_visible(False)
            continue
        entry = entries[i]
        history = entry["history"]
        epochs = list(range(1, len(history) + 1))
        for ax, metric in ((ax_acc, "accuracy"), (ax_loss, "loss")):
            train, val = _history_series(history, metric), _history_series(history, f"val_{metric}")
            if any(math.isfinite(v) for v in train):
                ax.plot(epochs, train, marker=".", label="train")
            if any(math.isfinite(v) for v in val):
                ax.plot(epochs, val, marker=".", label="validation")
            phases = [str(row.get("phase", "")) for row in history]
            for k in range(1, len(phases)):
                if phases[k] != phases[k - 1]:
                    ax.axvline(k + 0.5, color="0.5", linestyle=":", linewidth=1)
            ax.grid(True, alpha=0.3)
            ax.set_xlabel("epoch")
            ax.set_ylabel(metric)
            if len(epochs) <= 12:
                ax.set_xticks(epochs)
        ax_acc.set_title(entry["name"])
        ax_acc.legend(fontsize=8, loc="best")
    return _save(fig, path)


def plot_confusion_matrices(rows: list[dict[str, Any]], classes: Sequence[str], path: Path) -> Path | None:
    """Row-normalized confusion matrices with counts, backbones down, precisions across."""
    cells: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        if r.get("runtime") in REFERENCE_RUNTIMES or not r.get("confusion_matrix"):
            continue
        cells.setdefault((str(r["backbone"]), str(r.get("precision"))), r)  # first runtime listed per precision
    if not cells:
        return None
    backbones = list(dict.fromkeys(b for b, _ in cells))
    precisions = sorted({p for _, p in cells}, key=lambda p: PRECISION_ORDER.get(p, 9))
    k = len(classes)
    side = max(2.3, 0.55 * k + 1.2)
    fig = _figure(side * len(precisions) + 0.4, side * len(backbones) + 0.3)
    axes = np.atleast_2d(fig.subplots(len(backbones), len(precisions), squeeze=False))
    for bi, backbone in enumerate(backbones):
        for pi, precision in enumerate(precisions):
            ax = axes[bi, pi]
            row = cells.get((backbone, precision))
            if row is None:
                ax.set_visible(False)
                continue
            cm = np.asarray(row["confusion_matrix"], dtype=float)
            norm = cm / np.maximum(cm.sum(axis=1, keepdims=True), 1)
            ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
            for (t, p), count in np.ndenumerate(cm):
                ax.text(p, t, f"{int(count)}", ha="center", va="center", fontsize=8,
                        color="white" if norm[t, p] > 0.6 else "black")
            ax.set_xticks(range(k), labels=list(classes), rotation=45, ha="right", fontsize=7.5)
            ax.set_yticks(range(k), labels=list(classes), fontsize=7.5)
            ax.set_title(f"{backbone} · {precision}", fontsize=9)
            if pi == 0:
                ax.set_ylabel("true", fontsize=8)
            if bi == len(backbones) - 1:
                ax.set_xlabel("predicted", fontsize=8)
    return _save(fig, path)


def plot_learning_curves(limited: dict[str, Any], path: Path) -> Path | None:
    """Accuracy and F1 against the number of training images, with and without transfer."""
    points = [p for p in limited.get("points", []) if _finite(p.get("accuracy"))]
    if not points:
        return None
    fig = _figure(10.0, 4.2)
    axes = fig.subplots(1, 2)
    series = list(dict.fromkeys((p["backbone"], p["weights"]) for p in points))
    colors = _colors(list(dict.fromkeys(b for b, _ in series)))
    for ax, metric, title in ((axes[0], "accuracy", "Test accuracy"), (axes[1], "f1", "Test F1 (macro)")):
        for backbone, weights in series:
            pts = sorted((p for p in points if p["backbone"] == backbone and p["weights"] == weights),
                         key=lambda p: p["n_train"])
            transfer = any(p.get("transfer") for p in pts)
            ax.plot([p["n_train"] for p in pts], [_num(p.get(metric)) for p in pts],
                    marker="o" if transfer else "s", linestyle="-" if transfer else "--", color=colors[backbone],
                    label=f"{backbone} · {'transfer (' + weights_name(weights) + ')' if transfer else 'from scratch'}")
        ax.set_xscale("log")
        ax.set_xlabel("training images (log scale)")
        ax.set_title(title)
        ax.grid(True, alpha=0.3, which="both")
        ns = sorted({p["n_train"] for p in points})
        ax.set_xticks(ns, labels=[str(n) for n in ns])
        ax.minorticks_off()
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncols=min(len(labels), 4), fontsize=8.5, frameon=False)
    return _save(fig, path)

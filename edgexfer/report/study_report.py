"""The study report: results.json of a study → plots, report.md and a self-contained report.html.

TensorFlow-free, so a study is re-rendered on any machine from its ``results.json`` alone. This module
only renders: the Pareto marks, the recommendation and which rows are deployable are decided in
``edgexfer.studies.recommend`` and handed in (``edgexfer.studies.render.render_report`` routes a folder).

Study ``results.json`` is described in docs/contracts.md section 7 (``edgexfer.contracts.study``).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.contracts.study import REFERENCE_RUNTIMES, row_key
from edgexfer.contracts.study import row_label as _label
from edgexfer.io import write_text
from edgexfer.report.bench_report import write_bench_report
from edgexfer.report.formats import (
    DASH,
    fmt,
    fmt_duration,
    fmt_ms,
    fmt_size,
    md,
    md_code,
    md_url,
    save_figure,
)
from edgexfer.report.formats import figure as _new_figure
from edgexfer.report.formats import finite as _finite
from edgexfer.report.formats import num as _num
from edgexfer.report.html import write_html_report

_PRECISION_ORDER = {"fp32": 0, "fp16": 1, "int8": 2}
_MARKERS = {"fp32": "o", "fp16": "s", "int8": "^"}
#: a row's test: does it count as deployable (passed the gate, beats the baseline, device runtime)? The studies
#: side decides (``edgexfer.studies.recommend.is_deployable``); the report only draws the answer
Deployable = Callable[[dict[str, Any]], bool]


# ---------------------------------------------------------------------------------------------
# Plots (matplotlib's object API with the Agg canvas: no pyplot state, no display needed)


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
    precisions = sorted({str(r.get("precision")) for r in measured}, key=lambda p: _PRECISION_ORDER.get(p, 9))
    handles += [Line2D([], [], marker=_MARKERS.get(p, "D"), linestyle="", color="0.6", markeredgecolor="black", label=p)
                for p in precisions]
    if any(not deployable(r) for r in measured):
        handles.append(Line2D([], [], marker="o", linestyle="", markerfacecolor="none", markeredgecolor="0.3",
                              label="broke the gate"))
    extra_handles, _ = ax.get_legend_handles_labels()
    ax.legend(handles=handles + extra_handles, loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8.5, frameon=False)
    ax.set_title("Accuracy versus latency, all backbones and precisions")
    return _save(fig, path)


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
    precisions = sorted({p for _, p in cells}, key=lambda p: _PRECISION_ORDER.get(p, 9))
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
                    label=f"{backbone} · {'transfer (' + _weights_name(weights) + ')' if transfer else 'from scratch'}")
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


# ---------------------------------------------------------------------------------------------
# Markdown


def _cell(value: Any) -> str:
    # a pipe already escaped (by md/md_code) stays as it is: escaping it twice would show the backslash
    return re.sub(r"(?<!\\)\|", r"\\|", str(value)).replace("\n", " ")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A pipe table; ``align`` is one letter per column: l, r or c."""
    align = align or "l" * len(headers)
    marks = {"l": ":--", "r": "--:", "c": ":-:"}
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "|" + "|".join(marks[a] for a in align) + "|"]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"




def _sorted_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    order = {name: i for i, name in enumerate(dict.fromkeys(r["backbone"] for r in rows))}
    # per backbone: device artifacts by precision, then the Keras reference
    return sorted(rows, key=lambda r: (order[r["backbone"]], r.get("runtime") in REFERENCE_RUNTIMES,
                                       _PRECISION_ORDER.get(str(r.get("precision")), 9),
                                       str(r.get("artifact")), str(r.get("runtime"))))


def _results_table(rows: list[dict[str, Any]], recommendation: dict[str, Any]) -> str:
    rec_key = row_key(recommendation) if recommendation.get("status") == "ok" else None
    body = []
    for r in _sorted_rows(rows):
        notes = []
        if rec_key and row_key(r) == rec_key:
            notes.append("**recommended**")
        if r.get("pareto"):
            notes.append("Pareto")
        gate = (DASH if r.get("gate_passed") is None else "pass" if r["gate_passed"]
                else "*inconclusive*" if r.get("gate_verdict") == "inconclusive" else "**FAIL**")
        model = _model_name(r)
        body.append([
            md(r["backbone"]), md(model), md(r.get("runtime")), gate, ", ".join(notes), fmt(r.get("accuracy")),
            fmt(r.get("loss")), fmt(r.get("precision_macro")), fmt(r.get("recall_macro")), fmt(r.get("f1")),
            fmt(r.get("auc")), fmt_ms(r.get("latency_p50_ms")), fmt(r.get("throughput_ips"), 1),
            fmt_size(r.get("size_bytes")),
        ])
    headers = ["backbone", "model", "runtime", "gate", "choice", "accuracy", "loss", "precision", "recall", "F1", "AUC",
               "p50 ms", "images/s", "size"]
    return md_table(headers, body, "lllllrrrrrrrrr")


def _model_name(row: dict[str, Any]) -> str:
    """The artifact name, with its precision when the name alone does not say it (engines, variants)."""
    artifact, precision = row.get("artifact"), row.get("precision")
    return str(artifact) if artifact == precision or precision is None else f"{artifact} ({precision})"


def _recommendation_text(rec: dict[str, Any]) -> str:
    if rec.get("status") == "ok":
        return (
            f"> **Recommended: {md(rec['backbone'])} · {md(_model_name(rec))} on "
            f"{md(rec.get('runtime'))}** — test accuracy {fmt(rec.get('accuracy'))}, F1 {fmt(rec.get('f1'))}, "
            f"batch-1 p50 latency {fmt_ms(rec.get('latency_p50_ms'))} ms, size {fmt_size(rec.get('size_bytes'))}.\n>\n"
            f"> Why: {md(rec['reason'])}.\n"
        )
    budget = rec.get("budget_ms")
    head = f"No model qualifies under the {budget:g} ms budget" if budget is not None else "No model qualifies"
    reason = str(rec.get("reason", ""))
    return f"> **{head}.** {md(reason[:1].upper() + reason[1:])}.\n"


def _tuning_section(tuning: dict[str, Any]) -> list[str]:
    out = ["## Hyperparameter tuning\n"]
    for backbone, t in tuning.items():
        trials = t.get("trials", [])
        best = t.get("best") or {}
        out.append(f"### {md(backbone)}\n")
        out.append(
            f"KerasTuner {t.get('tuner')} search, objective `{t.get('objective')}` (validation split), "
            f"{len(trials)} trial(s) of a budget of {t.get('max_trials')}, up to {t.get('epochs')} epoch(s) each.\n"
        )
        names = list(dict.fromkeys(k for tr in trials for k in (tr.get("hyperparameters") or {})))
        body = []
        for tr in sorted(trials, key=lambda tr: -_num(tr.get("score")) if _finite(tr.get("score")) else math.inf):
            hps = tr.get("hyperparameters") or {}
            mark = " **best**" if tr.get("trial_id") == best.get("trial_id") else ""
            body.append([f"{tr.get('trial_id')}{mark}", *[_hp(hps.get(n)) for n in names], fmt(tr.get("score")),
                         tr.get("status", "")])
        out.append(md_table(["trial", *names, str(t.get("objective")), "status"], body,
                            "l" + "r" * len(names) + "rl"))
        if best:
            chosen = ", ".join(md_code(f"{k}={_hp(v)}") for k, v in (best.get("options") or {}).items())
            out.append(f"\nBest: trial {best.get('trial_id')}, {t.get('objective')} {fmt(best.get('score'))}. "
                       f"Used for the final fine-tune, as the options {chosen}"
                       + (" (unfreeze depth 0: no fine-tuning phase)" if (best.get("options") or {}).get(
                           "fine_tune_epochs") == 0 else "") + ".\n")
    return out


def _hp(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return DASH if value is None else str(value)


def _weights_name(weights: Any) -> str:
    """A weights choice as shown in the report: a file by its name, not its full path."""
    text = str(weights)
    return ", ".join(Path(w.strip()).name if ("/" in w or "\\" in w) else w.strip() for w in text.split(","))


def _limited_data_section(limited: dict[str, Any], plot: Path | None, study_dir: Path) -> list[str]:
    out = ["## Limited-data study\n"]
    fractions = ", ".join(f"{f:g}" for f in limited.get("fractions", []))
    transfer = _weights_name(limited.get("transfer_weights") or "none")
    out.append(
        f"Each backbone was trained on stratified, seeded subsets of the training split (fractions {fractions}) "
        + (f"with transfer (weights {md_code(transfer)}) and from scratch (weights `none`)" if transfer != "none"
           else "from scratch only (weights `none`: there were no pretrained weights to transfer)")
        + "; validation and test splits are the same at every size, so the points compare directly.\n"
    )
    if limited.get("note"):
        out.append(f"{md(limited['note'])}\n")
    if plot is not None:
        out.append(f"![Learning curves]({md_url(plot.relative_to(study_dir).as_posix())})\n")
    points = limited.get("points", [])
    body = []
    for key in sorted({(p["backbone"], p["fraction"]) for p in points}, key=lambda k: (k[0], k[1])):
        at = [p for p in points if (p["backbone"], p["fraction"]) == key]
        with_t = next((p for p in at if p.get("transfer")), None)
        without = next((p for p in at if not p.get("transfer")), None)
        gain = (_num(with_t.get("accuracy")) - _num(without.get("accuracy"))) if with_t and without else None
        n_train = (with_t or without or {}).get("n_train")
        body.append([md(key[0]), f"{key[1]:g}", n_train,
                     fmt(with_t.get("accuracy")) if with_t else DASH, fmt(with_t.get("f1")) if with_t else DASH,
                     fmt(without.get("accuracy")) if without else DASH, fmt(without.get("f1")) if without else DASH,
                     f"{gain:+.3f}" if gain is not None and math.isfinite(gain) else DASH])
    out.append(md_table(["backbone", "fraction", "training images", "accuracy (transfer)", "F1 (transfer)",
                         "accuracy (scratch)", "F1 (scratch)", "accuracy gain from transfer"], body, "lrrrrrrr"))
    return out


def study_markdown(results: dict[str, Any], study_dir: Path, plots: dict[str, Path | None]) -> str:
    """The report's markdown from a study's results and the plots drawn for it."""
    rel = {k: (p.relative_to(study_dir).as_posix() if p is not None else None) for k, p in plots.items()}
    data = results.get("data", {})
    classes = data.get("classes", [])
    counts = data.get("counts", {})
    backbones = results.get("backbones", [])
    rows = results.get("results", [])
    rec = results.get("recommendation") or {"status": "none", "reason": "the study has no benchmark results"}
    budget = results.get("latency_budget_ms")
    out = [f"# {md(results.get('title') or 'Backbone comparison')}\n"]
    source = data.get("source") or {}
    where = source.get("root") or source.get("path") or data.get("path") or DASH
    out.append(
        f"{len(backbones)} backbone(s) ({', '.join(md(b['name']) for b in backbones)}) fine-tuned, exported and "
        f"benchmarked on the same split of {md_code(where)}: {len(classes)} classes ({', '.join(map(md, classes))}); "
        f"{counts.get('train', '—')} training, {counts.get('val', '—')} validation and {counts.get('test', '—')} test "
        f"images. Results written {results.get('created', '—')}.\n"
    )
    out.append("## Recommendation\n")
    out.append(_recommendation_text(rec))
    out.append(
        "\nCandidates are ONNX or TensorRT artifacts that pass the accuracy gate against their FP32 export"
        + (f" and run within {budget:g} ms at batch 1 (p50)" if budget is not None else "")
        + "; Keras rows are the training-side reference and are not candidates.\n"
    )
    failed = [b for b in backbones if b.get("status") != "done"]
    if failed:
        out.append("\n**Incomplete:** " + "; ".join(f"{md(b['name'])}: {md(b.get('error') or b.get('status'))}" for b in failed)
                   + ". Run the same command again to resume.\n")
    out.append("## Results by backbone and precision\n")
    if rows:
        out.append(_results_table(rows, rec))
        threads = sorted({r.get("threads") for r in rows if r.get("threads") is not None})
        machine = results.get("machine") or {}
        out.append(
            "\nMetrics on the test split; precision, recall and F1 are macro averages over the classes. "
            "Latency (p50 ms) and images/s: batch 1, median of timed runs after warm-up, inputs already in "
            f"host memory{', ' + '/'.join(map(str, threads)) + ' thread(s)' if threads else ''}, on "
            f"{md(machine.get('processor', 'this machine'))}{_gpu_text(machine.get('gpu'))}. "
            "Gate: drop against the FP32 ONNX of the same backbone (accuracy, F1, per-class recall).\n"
        )
        broken = [r for r in rows if r.get("gate_passed") is False and r.get("gate_reasons")]
        if broken:
            out.append("\nGate failures and undecided gates (too few test images to tell):\n")
            out += [f"- {md(_label(r))}: {'; '.join(map(md, r['gate_reasons']))}" for r in _sorted_rows(broken)]
            out.append("")
    else:
        out.append("No benchmark results yet.\n")
    if rel.get("pareto"):
        out.append("## Accuracy versus latency\n")
        out.append(f"![Accuracy versus latency]({md_url(rel['pareto'])})\n")
        front = _sorted_rows([r for r in rows if r.get("pareto")])
        front.sort(key=lambda r: float(r["latency_p50_ms"]))
        if front:
            out.append("Pareto front (no other artifact that passes the gate is both faster and more accurate):\n")
            out.append(md_table(["backbone", "model", "runtime", "accuracy", "F1", "p50 ms", "size"],
                                [[md(r["backbone"]), md(_model_name(r)), md(r.get("runtime")), fmt(r.get("accuracy")),
                                  fmt(r.get("f1")), fmt_ms(r.get("latency_p50_ms")), fmt_size(r.get("size_bytes"))]
                                 for r in front], "lllrrrr"))
    if rel.get("training"):
        out.append("## Training curves\n")
        scratch = all(_weights_name(b.get("weights", "none")) == "none" for b in backbones)
        out.append("Accuracy and loss per epoch on the training and validation splits; a dotted line marks where "
                   + ("the next training stage began (trained from scratch: every layer trained from the first "
                      "epoch, nothing was unfrozen).\n" if scratch else
                      "fine-tuning started unfreezing the backbone (or where its next stage began).\n"))
        out.append(f"![Training curves]({md_url(rel['training'])})\n")
        body = []
        for b in backbones:
            m = b.get("test_metrics") or {}
            body.append([md(b["name"]), md(_weights_name(b.get("weights", DASH))), "×".join(map(str, b.get("image_size") or [])) or DASH,
                         len(b.get("history") or []), fmt(m.get("accuracy")), fmt(m.get("loss")), fmt(m.get("f1")),
                         fmt(m.get("auc")), fmt_duration(b.get("durations_s", {}).get("finetune"))])
        out.append("Keras model on the test split, before export:\n")
        out.append(md_table(["backbone", "weights", "input", "epochs", "accuracy", "loss", "F1", "AUC",
                             "fine-tune time"], body, "lllrrrrrr"))
    if rel.get("confusion"):
        out.append("## Confusion matrices\n")
        out.append("Rows are the true class, columns the prediction; colour is the row-normalized rate, "
                   "numbers are counts on the test split.\n")
        out.append(f"![Confusion matrices]({md_url(rel['confusion'])})\n")
    if results.get("tuning"):
        out += _tuning_section(results["tuning"])
    if results.get("limited_data"):
        out += _limited_data_section(results["limited_data"], plots.get("learning"), study_dir)
    out.append("## Runs and artifacts\n")
    body = []
    for b in backbones:
        d = b.get("durations_s") or {}
        body.append([md(b["name"]), md(b.get("status", DASH)), _path(b.get("run_dir")), _path(b.get("export_dir")),
                     _path(b.get("bench_dir")), fmt_duration(d.get("finetune")), fmt_duration(d.get("export")),
                     fmt_duration(d.get("bench"))])
    out.append(md_table(["backbone", "status", "run", "export", "bench", "fine-tune", "export", "bench"], body,
                        "lllllrrr"))
    skipped = [(b["name"], s) for b in backbones for s in b.get("skipped_runtimes") or []]
    if skipped:
        out.append("\nRuntimes skipped: " + "; ".join(
            f"{md(name)}: {md(s.get('runtime'))} ({md(s.get('reason'))})" for name, s in skipped) + ".\n")
    versions = results.get("versions") or {}
    if versions:
        shown = ", ".join(f"{md(k)} {md(v)}" for k, v in versions.items() if v)
        out.append(f"\nVersions: {shown}.\n")
    out.append("\n---\nRendered by `edgexfer report` from `results.json`; re-render with another budget with "
               "`edgexfer report STUDY_DIR --latency-budget-ms X`.\n")
    return "\n".join(out)


def _gpu_text(gpu: Any) -> str:
    name = gpu.get("name") if isinstance(gpu, dict) else gpu
    return f" with {md(name)}" if name else ""


def _path(value: Any) -> str:
    return md_code(value, table=True) if value else DASH


# ---------------------------------------------------------------------------------------------
# Entry points


def render_study_report(study_dir: str | Path, results: dict[str, Any], deployable: Deployable) -> dict[str, Path]:
    """Draw the plots and write report.md and report.html of a study from its results (decisions made)."""
    study = Path(study_dir)
    plots_dir = study / "plots"
    rows = results.get("results", [])
    plots = {
        "pareto": plot_pareto(rows, results.get("recommendation"), results.get("latency_budget_ms"),
                              plots_dir / "accuracy_vs_latency.png", deployable),
        "training": plot_training_curves(results.get("backbones", []), plots_dir / "training_curves.png"),
        "confusion": plot_confusion_matrices(rows, results.get("data", {}).get("classes", []),
                                             plots_dir / "confusion_matrices.png"),
        "learning": (plot_learning_curves(results["limited_data"], plots_dir / "learning_curves.png")
                     if results.get("limited_data") else None),
    }
    md_path = write_text(study / "report.md", study_markdown(results, study, plots))
    html_path = write_html_report(md_path, study / "report.html")
    out = {"markdown": md_path, "html": html_path, "results": study / "results.json"}
    out.update({f"plot_{k}": p for k, p in plots.items() if p is not None})
    return out


def render_bench_dir(bench_dir: str | Path, results: dict[str, Any]) -> dict[str, Path]:
    """Re-render a bench directory with the bench's own renderer, then add the HTML."""
    bench = Path(bench_dir)

    md_path = write_bench_report(results, bench)
    html_path = write_html_report(md_path, bench / "report.html")
    return {"markdown": md_path, "html": html_path, "results": bench / "results.json"}

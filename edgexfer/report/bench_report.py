"""report.md and plots/ of a bench directory, from results.json alone (so it can be redrawn later).

Plots: accuracy versus latency (batch 1), latency by batch size, one confusion matrix per precision, drawn
by ``edgexfer.report.plots``; numbers formatted by ``edgexfer.report.formats`` like the study report's.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from edgexfer.io import write_text
from edgexfer.report.formats import DASH, fmt, fmt_ms, fmt_size
from edgexfer.report.plots import confusion_matrix
from edgexfer.report.summary import bench_title


def write_bench_report(results: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write plots/, report.md and its self-contained twin report.html into ``out_dir``; return the report path."""
    from edgexfer.report.html import write_html_report

    out = Path(out_dir)
    plots = write_bench_plots(results, out / "plots")
    from edgexfer.explain import gradcam_markdown  # TensorFlow-free: overlays written by `edgexfer explain`

    markdown = bench_markdown(results, {k: p.relative_to(out) for k, p in plots.items()}) + gradcam_markdown(out)
    report = write_text(out / "report.md", markdown)
    write_html_report(report)
    return report


# ---------------------------------------------------------------------------------------------- markdown


def _row_label(row: dict[str, Any]) -> str:
    return f"{row['artifact']} ({row['runtime']})"


def bench_markdown(results: dict[str, Any], plots: dict[str, Path] | None = None) -> str:
    plots = plots or {}
    rows = results["results"]
    machine = results["machine"]
    data = results["data"]
    settings = results.get("settings", {})
    thresholds = results["thresholds"]
    export = results.get("export", {})
    batch_sizes = sorted({int(b) for r in rows for b in r["latency_ms"]})
    failed = [r for r in rows if not r["gate"]["passed"]]
    gpu = machine.get("gpu") or {}
    lines = [
        f"# {bench_title(results)}",
        "",
        f"- Export: `{export.get('path', '')}` — created {results.get('created', '')}",
        f"- Machine: {machine.get('cpu') or machine.get('processor')}, {machine.get('cores_usable') or machine.get('cores')} "
        f"usable cores; GPU: {gpu.get('name') or 'none'} ({gpu.get('reason', '')})",
        f"- Data: {data.get('n')} images ("
        + (f"the run's test split, `{data.get('split_file')}`" if data.get("kind") == "split"
           else f"`{data.get('path')}`, part `{data.get('split')}`") + "), "
        f"classes {', '.join(f'{c} ({n})' for c, n in (data.get('class_counts') or {}).items())}, "
        f"{data.get('image_size', ['?', '?'])[0]}×{data.get('image_size', ['?', '?'])[1]} px"
        + (f"; {len(data['skipped'])} unreadable file(s) skipped" if data.get("skipped") else ""),
        f"- Latency: {settings.get('warmup')} warm-up then {settings.get('iterations')} timed calls per batch size; "
        "inputs already decoded and in host memory (GPU runtimes synchronize before the clock stops); "
        "`e2e` is one image from its file: decode + resize + predict at batch 1. "
        f"ONNX Runtime threads: {settings.get('threads') or 'library default'}."
        + (f" Sessions: {settings['latency_method']}." if settings.get("latency_method") else ""),
        f"- Gate (each precision against `fp32` ONNX, reference runtime `{results.get('reference_runtime', '')}`): "
        f"accuracy drop ≤ {thresholds['max_accuracy_drop'] * 100:g} pt, macro F1 drop ≤ {thresholds['max_f1_drop'] * 100:g} pt, "
        f"recall drop of any class ≤ {thresholds['max_recall_drop'] * 100:g} pt"
        + _floors_text(thresholds)
        + "; and the FP32 model must beat the majority-class baseline.",
        "",
        f"**Gate: {'FAILED' if failed else 'passed'}**"
        + (f" — {', '.join(_row_label(r) for r in failed)}" if failed else ""),
        "",
    ]
    model = results.get("model_check") or {}
    if model and not model.get("usable", True):
        lines += [f"**The model itself is not usable: {model.get('reason')}.** Every precision fails the gate "
                  "whatever it does against FP32.", ""]
    elif model:
        lines += [f"- Baseline: FP32 accuracy {fmt(model.get('accuracy'))} beats the majority-class baseline "
                  f"{fmt(model.get('baseline_accuracy'))} (always '{model.get('majority_class')}').", ""]
    warnings = (results.get("statistics") or {}).get("resolution_warnings") or []
    if warnings:
        lines += ["**The test split is too small for the thresholds:**", ""]
        lines += [f"- {w}" for w in warnings]
        lines.append("")
    lines += [
        "## Models",
        "",
    ]
    lat_cols = [f"p50 ms @{b}" for b in batch_sizes]
    header = (["Artifact", "Precision", "Runtime", "Size", "Accuracy", "Δ acc vs ref (pt)", "F1", "AUC", "Agreement",
               "Max \\|Δp\\|"] + lat_cols + [f"img/s @{batch_sizes[-1]}" if batch_sizes else "img/s", "e2e ms", "Peak RSS MB", "Gate"])
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 3 + ["---:"] * (len(header) - 4) + [":---:"]) + "|"]
    by_key = {(r["artifact"], r["runtime"]): r for r in rows}
    for r in rows:
        ref = r.get("reference") or {}
        ref_row = by_key.get((ref.get("artifact"), ref.get("runtime")))
        delta = (r["accuracy"] - ref_row["accuracy"]) * 100 if ref_row else None
        cells = [f"`{r['artifact']}`", r["precision"], f"{r['runtime']}", fmt_size(r["size_bytes"]),
                 fmt(r["accuracy"]), "ref" if r["gate"].get("reference") else (DASH if delta is None else f"{delta:+.2f}"), fmt(r["f1"]),
                 fmt(r["auc"]), fmt(r["agreement"]), fmt(r["max_abs_diff"], 4)]
        cells += [fmt_ms(r["latency_ms"].get(str(b), {}).get("p50")) for b in batch_sizes]
        last = r["throughput_ips"].get(str(batch_sizes[-1])) if batch_sizes else None
        cells += [fmt(last, 1), fmt_ms(r.get("end_to_end_ms")), fmt(r.get("peak_rss_mb"), 0),
                  "ref" if r["gate"].get("reference") else ("pass" if r["gate"]["passed"] else "**FAIL**")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Peak RSS is the process peak so far (runtimes run one after another in one process).", ""]

    lines += _statistics_section(rows)

    classes = list(rows[0]["per_class"])
    lines += ["## Per class: recall (sensitivity) / specificity", "",
              "| Artifact | Runtime | " + " | ".join(classes) + " |",
              "|---|---|" + "|".join(["---:"] * len(classes)) + "|"]
    for r in rows:
        cells = [f"{r['per_class'][c]['recall']:.4f} / {r['per_class'][c]['specificity']:.4f}" for c in classes]
        lines.append(f"| `{r['artifact']}` | {r['runtime']} | " + " | ".join(cells) + " |")
    lines.append("")

    lines += ["## Latency by batch size (ms per batch: p50 / p90 / p99 / mean; images per second)", "",
              "| Artifact | Runtime | Batch | p50 | p90 | p99 | mean | img/s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for b in batch_sizes:
            s = r["latency_ms"].get(str(b))
            if s:
                lines.append(f"| `{r['artifact']}` | {r['runtime']} | {b} | {fmt_ms(s['p50'])} | {fmt_ms(s['p90'])} | "
                             f"{fmt_ms(s['p99'])} | {fmt_ms(s['mean'])} | {fmt(r['throughput_ips'][str(b)], 1)} |")
    lines.append("")

    lines += _execution_section(rows)

    # INT8 where it pays, and only there: say so when an INT8 artifact is not faster than FP32 on a runtime
    slow_int8 = []
    for r in rows:
        fp32_row = by_key.get(("fp32", r["runtime"]))
        if r["precision"] != "int8" or fp32_row is None or not batch_sizes:
            continue
        first = str(batch_sizes[0])
        mine, ref = r["latency_ms"].get(first, {}).get("p50"), fp32_row["latency_ms"].get(first, {}).get("p50")
        if mine and ref and mine >= ref:
            slow_int8.append(f"- `{r['artifact']}` on {r['runtime']}: {fmt_ms(mine)} ms vs FP32 {fmt_ms(ref)} ms at batch {first}. "
                             "INT8 is slower than FP32 here: use FP32/FP16.")
    if slow_int8:
        lines += ["## INT8 that does not pay", "", *slow_int8, ""]

    if failed:
        lines += ["## What broke the gate", "",
                  "Lost: images FP32 classified right that this artifact gets wrong; gained: the other way round.", "",
                  "| Artifact | Precision | Runtime | Metric | Kind | FP32 | Value | Drop | Limit | Images | Lost | Gained |",
                  "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in failed:
            for b in r["gate"].get("breaches", []):
                images = f"{b['images']} of {b['out_of']}" if b.get("images") is not None else DASH
                kind = {"floor": "below floor", "model": "model not usable"}.get(b.get("kind", "drop"), "drop vs FP32")
                lines.append(f"| `{b['artifact']}` | {b['precision']} | {b['runtime']} | {b['metric']} | {kind} | "
                             f"{b['reference']:.4f} | {b['value']:.4f} | {b['drop']:.4f} | {b['limit']:.4f} | {images} | "
                             f"{fmt(b.get('lost'))} | {fmt(b.get('gained'))} |")
        lines.append("")
    if results.get("skipped"):
        lines += ["## Skipped", ""]
        for s in results["skipped"]:
            what = f"{s['runtime']}" + (f" / {s['artifact']}" if s.get("artifact") else "")
            lines.append(f"- {what}: {s['reason']}")
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        for key, path in plots.items():
            lines += [f"![{key}]({path.as_posix()})", ""]
    libs = machine.get("libraries") or {}
    shown = {k: v for k, v in libs.items() if v}
    lines += ["## Versions", "", ", ".join(f"{k} {v}" for k, v in shown.items()), ""]
    return "\n".join(lines) + "\n"


def _execution_section(rows: list[dict[str, Any]]) -> list[str]:
    """What a runtime reported it executed (OpenVINO: the precision hint it was given, its threads, and each layer
    type of the compiled model with the precision it ran in); nothing for runtimes that do not report it."""
    reported = [r for r in rows if r.get("execution")]
    if not reported:
        return []
    lines = ["## What the runtime executed", "",
             "The precision hint is set explicitly (f32 except the bf16 row); layers are the compiled model's, by "
             "type, with the precision each ran in.", "",
             "| Artifact | Runtime | Precision hint | Threads | Layers (type: precision count) |", "|---|---|---|---:|---|"]
    for r in reported:
        e = r["execution"]
        layers = "; ".join(f"{layer}: " + ", ".join(f"{p} {n}" for p, n in sorted(counts.items()))
                           for layer, counts in sorted((e.get("layer_precisions") or {}).items())
                           if layer not in ("Input", "Output"))
        lines.append(f"| `{r['artifact']}` | {r['runtime']} | {e.get('precision_hint')} | {fmt(e.get('threads'))} | "
                     f"{layers or DASH} |")
    return lines + [""]


def _floors_text(thresholds: dict[str, Any]) -> str:
    parts = []
    if thresholds.get("min_accuracy") is not None:
        parts.append(f"accuracy ≥ {thresholds['min_accuracy']:g}")
    if thresholds.get("min_f1") is not None:
        parts.append(f"macro F1 ≥ {thresholds['min_f1']:g}")
    for cls, value in (thresholds.get("min_recall") or {}).items():
        parts.append(f"recall of {'every class' if cls == '*' else cls} ≥ {value:g}")
    return ("; floors for every artifact: " + ", ".join(parts)) if parts else ""


def _interval(ci: Any) -> str:
    return DASH if not ci else f"{ci[0]:.3f}–{ci[1]:.3f}"


def _p(value: Any) -> str:
    if value is None:
        return DASH
    return f"{value:.3g}" if value >= 1e-3 else f"{value:.1e}"


def _statistics_section(rows: list[dict[str, Any]]) -> list[str]:
    """95% Wilson intervals of accuracy and each class's recall; McNemar's exact test against FP32."""
    if not any(r.get("ci95") for r in rows):
        return []
    classes = list(rows[0]["per_class"])
    lines = ["## How sure: 95% intervals and the paired test against FP32", "",
             "Wilson score intervals (statsmodels). McNemar's exact test compares each artifact with FP32 on the "
             "same images: lost = FP32 right, this one wrong; gained = the other way; a small p says the "
             "difference is not chance.", "",
             "| Artifact | Runtime | Accuracy | 95% CI | " + " | ".join(f"recall {c} 95% CI" for c in classes)
             + " | Lost | Gained | McNemar p |",
             "|---|---|---:|---:|" + "|".join(["---:"] * len(classes)) + "|---:|---:|---:|"]
    for r in rows:
        ci = r.get("ci95") or {}
        paired = r.get("vs_reference") or {}
        recall = ci.get("recall") or {}
        cells = [f"`{r['artifact']}`", r["runtime"], fmt(r["accuracy"]), _interval(ci.get("accuracy"))]
        cells += [_interval(recall.get(c)) for c in classes]
        if paired:
            cells += [str(paired.get("lost")), str(paired.get("gained")), _p(paired.get("p_value"))]
        else:
            cells += ["ref", "ref", DASH]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    return lines


# ---------------------------------------------------------------------------------------------- plots


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_bench_plots(results: dict[str, Any], plots_dir: str | os.PathLike[str]) -> dict[str, Path]:
    from edgexfer.report.plots import accuracy_vs_latency, latency_by_batch

    out = Path(plots_dir)
    rows = results["results"]
    written: dict[str, Path] = {}

    # accuracy versus latency at the smallest batch size measured; latency per image by batch size
    batch_sizes = sorted({int(b) for r in rows for b in r["latency_ms"]})
    if batch_sizes:
        written["accuracy_vs_latency"] = accuracy_vs_latency(rows, batch_sizes[0], out / "accuracy_vs_latency.png")
        written["latency_by_batch"] = latency_by_batch(rows, out / "latency_by_batch.png")

    # one confusion matrix per artifact (precision), from the first runtime that ran it
    classes = list(rows[0]["per_class"])
    seen: set[str] = set()
    for r in rows:
        if r["artifact"] in seen:
            continue
        seen.add(r["artifact"])
        written[f"confusion_{r['artifact']}"] = confusion_matrix(
            r["confusion_matrix"], classes, out / f"confusion_{_safe(r['artifact'])}.png",
            title=f"{r['artifact']} ({r['runtime']}): accuracy {r['accuracy'] * 100:.2f}%")
    return written

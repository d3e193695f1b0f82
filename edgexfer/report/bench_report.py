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
from edgexfer.report.formats import DASH, fmt, fmt_ms, fmt_size, md, md_code, md_url
from edgexfer.report.gradcam import gradcam_markdown
from edgexfer.report.html import write_html_report
from edgexfer.report.plots import accuracy_vs_latency, confusion_matrix, latency_by_batch, reliability_diagram
from edgexfer.report.summary import bench_title


def write_bench_report(results: dict[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Write plots/, report.md and its self-contained twin report.html into ``out_dir``; return the report path."""

    out = Path(out_dir)
    plots = write_bench_plots(results, out / "plots")

    markdown = bench_markdown(results, {k: p.relative_to(out) for k, p in plots.items()}) + gradcam_markdown(out)
    report = write_text(out / "report.md", markdown)
    write_html_report(report)
    return report


# ---------------------------------------------------------------------------------------------- markdown


def _row_label(row: dict[str, Any]) -> str:
    return f"{md(row['artifact'])} ({md(row['runtime'])})"


def _outcome(row: dict[str, Any]) -> str:
    """A row's gate verdict: pass, fail or inconclusive (rows written before verdicts: from ``passed``)."""
    gate = row.get("gate") or {}
    return str(gate.get("verdict") or ("pass" if gate.get("passed") else "fail"))


def _undecided_section(rows: list[dict[str, Any]]) -> list[str]:
    """The thresholds these images could not decide, with the interval of each drop and what would decide it."""
    items = [(r, d) for r in rows for d in (r.get("gate") or {}).get("inconclusive", [])]
    if not items:
        return []
    lines = ["## Undecided: too few images to tell", "",
             "The 95% interval of the drop (Tango's score interval on the images FP32 and this artifact both "
             "classified) straddles the limit: these images can show neither that the loss is within it nor that "
             "it is beyond it. The last column is the sample size that would decide it if the rates seen here held "
             "(80% power).", "",
             "| Artifact | Runtime | Metric | Drop (pt) | 95% interval (pt) | Limit (pt) | Lost | Gained | Would decide |",
             "|---|---|---|---:|---:|---:|---:|---:|---|"]
    for r, d in items:
        lo, hi = d["interval"]
        needed = (f"about {d['images_needed']} {d['population']} (have {d['n']})" if d.get("images_needed")
                  else d.get("note") or DASH)
        lines.append(f"| `{r['artifact']}` | {r['runtime']} | {d['metric']} | {d['drop'] * 100:.2f} | "
                     f"{lo * 100:.2f} to {hi * 100:.2f} | {d['limit'] * 100:.2f} | {d['lost']} | {d['gained']} | "
                     f"{needed} |")
    return [*lines, ""]


def _operating_point_section(results: dict[str, Any]) -> list[str]:
    """The clinical operating point: where its threshold was chosen, and every precision's sensitivity and
    specificity at it on the test images."""
    point = results.get("operating_point")
    if not point:
        return []
    lines = ["## Clinical operating point", ""]
    if point.get("threshold") is None:
        return [*lines, f"{md_code(point.get('positive_class'))} against the rest: {md(point.get('note'))}.", ""]
    how = (f"the highest threshold reaching sensitivity {point['target_sensitivity']:g}" if point.get("method") ==
           "target_sensitivity" else "Youden's J (sensitivity + specificity − 1 at its largest)")
    lines += [f"{md_code(point['positive_class'])} against the rest, P({md(point['positive_class'])}) ≥ "
              f"{point['threshold']:.4g}: {how}, chosen on {point['chosen_on']} with FP32 (there: sensitivity "
              f"{point['sensitivity']:.3f}, specificity {point['specificity']:.3f})"
              + ("; recorded by the export, so it is the threshold predict and package serve"
                 if point.get("source") == "export" else "")
              + ". Each precision is read at the same "
              "threshold on the test images; its sensitivity and specificity drops are paired decisions against "
              "FP32 like the recalls.", "",
              "| Artifact | Runtime | Sensitivity | 95% interval | Specificity | 95% interval |",
              "|---|---|---:|---:|---:|---:|"]
    for r in results["results"]:
        at = (r.get("gate") or {}).get("operating_point")
        if not at:
            continue
        sens, spec = at.get("sensitivity_ci95") or [None, None], at.get("specificity_ci95") or [None, None]
        lines.append(f"| `{r['artifact']}` | {r['runtime']} | {fmt(at.get('sensitivity'))} | "
                     f"{fmt(sens[0])}–{fmt(sens[1])} | {fmt(at.get('specificity'))} | {fmt(spec[0])}–{fmt(spec[1])} |")
    return [*lines, ""]


def _calibration_section(results: dict[str, Any]) -> list[str]:
    """Expected calibration error per precision (the reliability diagram is plots/reliability.png)."""
    calibration = results.get("calibration") or {}
    entries = calibration.get("rows") or []
    if not entries:
        return []
    lines = ["## Calibration of the probabilities", "",
             f"{str(calibration.get('method', ''))[:1].upper()}{str(calibration.get('method', ''))[1:]}. A precision can keep every answer and still "
             "move the probabilities a clinical threshold reads; the reliability diagram is in the plots.", "",
             "| Artifact | Runtime | ECE |", "|---|---|---:|"]
    lines += [f"| `{e['artifact']}` | {e['runtime']} | {fmt(e.get('ece'), 4)} |" for e in entries]
    return [*lines, ""]


def _agreement_section(results: dict[str, Any]) -> list[str]:
    """Agreement with FP32 on every usable image (no labels needed), what each source contributed, and per
    class FP32 gave the share of answers that changed with its 95% upper bound."""
    pool = results.get("agreement_pool") or {}
    rows = [r for r in results["results"] if (r.get("gate") or {}).get("agreement")]
    if not pool or not rows:
        return []
    sources = pool.get("sources") or {}
    contributed = ", ".join(f"{name} {count}" for name, count in sources.items() if count)
    lines = ["## Agreement with FP32 (no labels needed)", "",
             f"Images: {pool.get('n')} ({contributed}). Train images are never used: the model is most confident "
             "on the images it was fitted to, so a precision's flips would be under-counted there. "
             f"Calibration: {pool.get('calibration_check')}"
             + (f"; {pool['left_out_calibration']} calibration image(s) left out" if pool.get("left_out_calibration")
                else "")
             + (f"; {pool['left_out_duplicates']} duplicate(s) left out" if pool.get("left_out_duplicates") else "")
             + "." + "".join(f" {note}." for note in pool.get("notes") or []), "",
             "A changed answer bounds the loss without a label: the accuracy drop is at most the share of changed "
             "answers, and a class's recall drop at most the changed share of the answers FP32 gave for that class "
             "(times FP32's answers per image of the class). A threshold the labelled images leave undecided "
             "passes when that bound (95%) is within it.", ""]
    classes = list(rows[0]["gate"]["agreement"]["per_class"])
    header = ["Artifact", "Runtime", "Changed", "95% interval", *[f"FP32 said {md(c)}" for c in classes],
              *[f"from {s}" for s, k in sources.items() if k]]
    lines += ["| " + " | ".join(header) + " |", "|---|---|" + "|".join(["---:"] * (len(header) - 2)) + "|"]
    for r in rows:
        a = r["gate"]["agreement"]
        interval = a.get("interval") or [None, None]
        cells = [f"`{r['artifact']}`", r["runtime"], f"{a['disagree']} of {a['n']}",
                 f"{fmt(interval[0], 4)}–{fmt(interval[1], 4)}" if interval[0] is not None else DASH]
        for c in classes:
            pc = a["per_class"].get(c) or {}
            upper = (pc.get("interval") or [None, None])[1]
            cells.append(f"{pc.get('disagree', 0)}/{pc.get('n', 0)} (≤ {upper * 100:.2f}%)" if upper is not None
                         else DASH)
        for s, k in sources.items():
            if k:
                part = (a.get("by_source") or {}).get(s) or {}
                cells.append(f"{part.get('disagree', 0)}/{part.get('n', 0)}")
        lines.append("| " + " | ".join(cells) + " |")
    return [*lines, ""]


def bench_markdown(results: dict[str, Any], plots: dict[str, Path] | None = None) -> str:
    plots = plots or {}
    rows = results["results"]
    machine = results["machine"]
    data = results["data"]
    settings = results.get("settings", {})
    thresholds = results["thresholds"]
    export = results.get("export", {})
    batch_sizes = sorted({int(b) for r in rows for b in r["latency_ms"]})
    failed = [r for r in rows if _outcome(r) == "fail"]
    undecided = [r for r in rows if _outcome(r) == "inconclusive"]
    gpu = machine.get("gpu") or {}
    lines = [
        f"# {md(bench_title(results))}",
        "",
        f"- Export: {md_code(export.get('path', ''))} — created {md(results.get('created', ''))}",
        f"- Machine: {md(machine.get('cpu') or machine.get('processor'))}, {machine.get('cores_usable') or machine.get('cores')} "
        f"usable cores; GPU: {md(gpu.get('name') or 'none')} ({md(gpu.get('reason', ''))})",
        f"- Data: {data.get('n')} images ("
        + (f"the run's test split, {md_code(data.get('split_file'))}" if data.get("kind") == "split"
           else f"{md_code(data.get('path'))}, part {md_code(data.get('split'))}") + "), "
        f"classes {', '.join(f'{md(c)} ({n})' for c, n in (data.get('class_counts') or {}).items())}, "
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
        + "; and the FP32 model must beat the majority-class baseline. Each drop is a paired decision on the "
        "same images (Tango's score interval; macro F1 by paired bootstrap): pass when its 95% interval is within "
        "the limit, fail when it lies above it, inconclusive when these images cannot tell.",
        "",
        f"**Gate: {'FAILED' if failed else 'INCONCLUSIVE' if undecided else 'passed'}**"
        + (f" — {', '.join(_row_label(r) for r in failed)}" if failed else "")
        + (f" — undecided: {', '.join(_row_label(r) for r in undecided)}" if undecided and not failed else ""),
        "",
    ]
    model = results.get("model_check") or {}
    model_verdict = model.get("verdict") or ("usable" if model.get("usable", True) else "not_usable")
    if model and model_verdict == "not_usable":
        lines += [f"**The model itself is not usable: {md(model.get('reason'))}.** Every precision fails the gate "
                  "whatever it does against FP32.", ""]
    elif model and model_verdict == "inconclusive":
        lines += [f"**The model check is inconclusive: {md(model.get('reason'))}.** No precision can pass until it is "
                  "decided.", ""]
    elif model:
        named = model.get("baseline") or f"always '{md(model.get('majority_class'))}'"
        lines += [f"- Baseline: FP32 accuracy {fmt(model.get('accuracy'))} beats the baseline "
                  f"{fmt(model.get('baseline_accuracy'))} ({md(named)}).", ""]
    warnings = (results.get("statistics") or {}).get("resolution_warnings") or []
    if warnings:
        lines += ["**The test split is too small for the thresholds:**", ""]
        lines += [f"- {md(w)}" for w in warnings]
        lines.append("")
    lines += [
        "## Models",
        "",
    ]
    lat_cols = [f"p50 ms @{b}" for b in batch_sizes]
    header = (["Artifact", "Precision", "Runtime", "sha256", "Size", "Accuracy", "Δ acc vs ref (pt)", "F1", "AUC", "Agreement",
               "Max \\|Δp\\|"] + lat_cols + [f"img/s @{batch_sizes[-1]}" if batch_sizes else "img/s", "e2e ms", "Session peak MB", "Gate"])
    lines += ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * 4 + ["---:"] * (len(header) - 5) + [":---:"]) + "|"]
    by_key = {(r["artifact"], r["runtime"]): r for r in rows}
    for r in rows:
        ref = r.get("reference") or {}
        ref_row = by_key.get((ref.get("artifact"), ref.get("runtime")))
        delta = (r["accuracy"] - ref_row["accuracy"]) * 100 if ref_row else None
        # the bytes this row judged (first 12 hex of the file's sha256; rows of edgexfer.bench/1 have none)
        sha = r.get("sha256")
        cells = [md_code(r["artifact"], table=True), md(r["precision"]), md(r["runtime"]),
                 md_code(sha[:12], table=True) if isinstance(sha, str) and sha else DASH, fmt_size(r["size_bytes"]),
                 fmt(r["accuracy"]), "ref" if r["gate"].get("reference") else (DASH if delta is None else f"{delta:+.2f}"), fmt(r["f1"]),
                 fmt(r["auc"]), fmt(r["agreement"]), fmt(r["max_abs_diff"], 4)]
        cells += [fmt_ms(r["latency_ms"].get(str(b), {}).get("p50")) for b in batch_sizes]
        last = r["throughput_ips"].get(str(batch_sizes[-1])) if batch_sizes else None
        cells += [fmt(last, 1), fmt_ms(r.get("end_to_end_ms")), fmt(r.get("session_peak_mb"), 0),
                  "ref" if r["gate"].get("reference") and _outcome(r) == "pass"
                  else {"pass": "pass", "inconclusive": "*inconclusive*"}.get(_outcome(r), "**FAIL**")]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Session peak: the most resident memory the artifact's session added over the process's memory just "
              "before it was opened (model, runtime buffers, activations up to the largest batch; sampled every 10 ms). "
              "A bench run before this measure shows —.", ""]

    lines += _statistics_section(rows)

    classes = list(rows[0]["per_class"])
    lines += ["## Per class: recall (sensitivity) / specificity", "",
              "| Artifact | Runtime | " + " | ".join(md(c) for c in classes) + " |",
              "|---|---|" + "|".join(["---:"] * len(classes)) + "|"]
    for r in rows:
        cells = [f"{r['per_class'][c]['recall']:.4f} / {r['per_class'][c]['specificity']:.4f}" for c in classes]
        lines.append(f"| {md_code(r['artifact'], table=True)} | {md(r['runtime'])} | " + " | ".join(cells) + " |")
    lines.append("")

    lines += ["## Latency by batch size (ms per batch: p50 / p90 / p99 / mean; images per second)", "",
              "| Artifact | Runtime | Batch | p50 | p90 | p99 | mean | img/s |", "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        for b in batch_sizes:
            s = r["latency_ms"].get(str(b))
            if s:
                lines.append(f"| {md_code(r['artifact'], table=True)} | {md(r['runtime'])} | {b} | {fmt_ms(s['p50'])} | {fmt_ms(s['p90'])} | "
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
            slow_int8.append(f"- {md_code(r['artifact'])} on {md(r['runtime'])}: {fmt_ms(mine)} ms vs FP32 {fmt_ms(ref)} ms at batch {first}. "
                             "INT8 is slower than FP32 here: use FP32/FP16.")
    if slow_int8:
        lines += ["## INT8 that does not pay", "", *slow_int8, ""]

    lines += _int8_layers_section(export.get("int8_layers") or [])

    if failed:
        lines += ["## What broke the gate", "",
                  "Lost: images FP32 classified right that this artifact gets wrong; gained: the other way round.", "",
                  "| Artifact | Precision | Runtime | Metric | Kind | FP32 | Value | Drop | Limit | Images | Lost | Gained |",
                  "|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|"]
        for r in failed:
            for b in r["gate"].get("breaches", []):
                images = f"{b['images']} of {b['out_of']}" if b.get("images") is not None else DASH
                kind = {"floor": "below floor", "model": "model not usable"}.get(b.get("kind", "drop"), "drop vs FP32")
                lines.append(f"| {md_code(b['artifact'], table=True)} | {md(b['precision'])} | {md(b['runtime'])} | "
                             f"{md(b['metric'])} | {kind} | "
                             f"{b['reference']:.4f} | {b['value']:.4f} | {b['drop']:.4f} | {b['limit']:.4f} | {images} | "
                             f"{fmt(b.get('lost'))} | {fmt(b.get('gained'))} |")
        lines.append("")
    lines += _undecided_section(rows)
    lines += _agreement_section(results)
    lines += _operating_point_section(results)
    lines += _calibration_section(results)
    if results.get("skipped"):
        lines += ["## Skipped", ""]
        for s in results["skipped"]:
            what = md(s["runtime"]) + (f" / {md(s['artifact'])}" if s.get("artifact") else "")
            lines.append(f"- {what}: {md(s['reason'])}")
        lines.append("")
    if plots:
        lines += ["## Plots", ""]
        for key, path in plots.items():
            lines += [f"![{md(key)}]({md_url(path.as_posix())})", ""]
    libs = machine.get("libraries") or {}
    shown = {k: v for k, v in libs.items() if v}
    lines += ["## Versions", "", ", ".join(f"{md(k)} {md(v)}" for k, v in shown.items()), ""]
    return "\n".join(lines) + "\n"


def _int8_layers_section(reports: list[dict[str, Any]]) -> list[str]:
    """The export's INT8 layer reports (``model_int8_<target>.layers.json``): where quantization loses signal,
    and which nodes the fallback kept in float and why."""
    if not reports:
        return []
    lines = ["## INT8 layers (the export's layer report)", "",
             "SQNR of each node's output in the INT8 model against FP32, in dB (higher is better; 60 = exact), on "
             "calibration images; drop: what the node loses over its worst input.", ""]
    for r in reports:
        if r.get("problem"):
            lines += [f"- `{r['artifact']}`: `{r['file']}` {r['problem']}; re-export to see it.", ""]
            continue
        lines += [f"`{r['artifact']}` — `{r['file']}`, {r['nodes']} nodes measured on {r['images']} images; "
                  f"the {len(r['worst'])} that lose the most:", "",
                  "| Node | Op | Output SQNR dB | Drop dB | Weight SQNR dB | In float |", "|---|---|---:|---:|---:|:---:|"]
        for n in r["worst"]:
            lines.append(f"| `{n['name']}` | {n['op_type']} | {n['output_sqnr_db']:.1f} | {n['sqnr_drop_db']:.1f} | "
                         f"{DASH if n['weight_sqnr_db'] is None else format(n['weight_sqnr_db'], '.1f')} | "
                         f"{'yes' if n['in_float'] else ''} |")
        kept = r.get("kept_in_float") or []
        lines += ["", f"Kept in float by the fallback: {len(kept)} node(s)" + (":" if kept else "."), ""]
        lines += [f"- `{k['name']}` ({k['op_type']}): {k['reason']}" for k in kept]
        if kept:
            lines.append("")
    return lines


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
        parts.append(f"recall of {'every class' if cls == '*' else md(cls)} ≥ {value:g}")
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
             "| Artifact | Runtime | Accuracy | 95% CI | " + " | ".join(f"recall {md(c)} 95% CI" for c in classes)
             + " | Lost | Gained | McNemar p |",
             "|---|---|---:|---:|" + "|".join(["---:"] * len(classes)) + "|---:|---:|---:|"]
    for r in rows:
        ci = r.get("ci95") or {}
        paired = r.get("vs_reference") or {}
        recall = ci.get("recall") or {}
        cells = [md_code(r["artifact"], table=True), md(r["runtime"]), fmt(r["accuracy"]), _interval(ci.get("accuracy"))]
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


def _images_named(results: dict[str, Any]) -> str:
    """Which images a bench ran on, in words: "the test split", or "the images of --data"."""
    data = results.get("data") or {}
    return f"the {data['split']} split" if data.get("kind") == "split" and data.get("split") else "the images of --data"


def write_bench_plots(results: dict[str, Any], plots_dir: str | os.PathLike[str]) -> dict[str, Path]:
    out = Path(plots_dir)
    rows = results["results"]
    written: dict[str, Path] = {}

    # accuracy versus latency at the smallest batch size measured; latency per image by batch size
    batch_sizes = sorted({int(b) for r in rows for b in r["latency_ms"]})
    if batch_sizes:
        written["accuracy_vs_latency"] = accuracy_vs_latency(
            rows, batch_sizes[0], out / "accuracy_vs_latency.png",
            (results.get("thresholds") or {}).get("max_accuracy_drop"))
        written["latency_by_batch"] = latency_by_batch(rows, out / "latency_by_batch.png")

    calibration = (results.get("calibration") or {}).get("rows") or []
    if calibration:
        written["reliability"] = reliability_diagram(calibration, out / "reliability.png")

    # one confusion matrix per artifact (precision), from the first runtime that ran it
    classes = list(rows[0]["per_class"])
    seen: set[str] = set()
    for r in rows:
        if r["artifact"] in seen:
            continue
        seen.add(r["artifact"])
        written[f"confusion_{r['artifact']}"] = confusion_matrix(
            r["confusion_matrix"], classes, out / f"confusion_{_safe(r['artifact'])}.png",
            title=f"{r['artifact']} ({r['runtime']}) on {_images_named(results)}, {sum(map(sum, r['confusion_matrix']))} "
                  f"images: accuracy {r['accuracy'] * 100:.2f}%")
    return written

"""The study report's text: report.md from a study's results and the plots drawn for it (tables, the
recommendation, tuning and limited-data sections). Every user string goes into markdown through
``edgexfer.report.formats`` (md, md_code, md_url), escaped."""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from edgexfer.contracts.study import REFERENCE_RUNTIMES, BackboneDeploy, row_key
from edgexfer.contracts.study import row_label as _label
from edgexfer.report.formats import (
    DASH,
    fmt,
    fmt_duration,
    fmt_ms,
    fmt_size,
    md,
    md_code,
    md_url,
)
from edgexfer.report.formats import finite as _finite
from edgexfer.report.formats import num as _num
from edgexfer.report.study_plots import PRECISION_ORDER, StudyPlots, weights_name


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
                                       PRECISION_ORDER.get(str(r.get("precision")), 9),
                                       str(r.get("artifact")), str(r.get("runtime"))))


def _results_table(rows: list[dict[str, Any]], recommendation: dict[str, Any],
                   deploys: dict[str, BackboneDeploy] | None = None) -> str:
    rec_key = row_key(recommendation) if recommendation.get("status") == "ok" else None
    deploy_keys = {name: d.key for name, d in (deploys or {}).items() if d.status == "ok"}
    body = []
    for r in _sorted_rows(rows):
        notes = []
        if rec_key and row_key(r) == rec_key:
            notes.append("**recommended**")
        if (r.get("artifact"), r.get("runtime")) == deploy_keys.get(r["backbone"]):
            notes.append("bench's pick")
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


def _deploys(backbones: Sequence[dict[str, Any]]) -> dict[str, BackboneDeploy]:
    return {str(b["name"]): BackboneDeploy.from_dict(b["deploy"]) for b in backbones if isinstance(b.get("deploy"), dict)}


def _deploy_section(backbones: Sequence[dict[str, Any]], rec: dict[str, Any]) -> list[str]:
    """One line per backbone: what its bench recommends (``backbones[].deploy``) and what the study made of it."""
    deploys = _deploys(backbones)
    if not deploys:
        return []
    notes = rec.get("deploy_notes") or {}
    body = []
    for b in backbones:
        name = str(b["name"])
        d = deploys.get(name)
        if d is None:
            body.append([md(name), md(f"failed: {b.get('error')}" if b.get("status") == "failed" else "not recorded"),
                         DASH, DASH])
            continue
        if rec.get("status") == "ok" and rec.get("backbone") == name and rec.get("bench_recommended"):
            study = "**the study's recommendation**"
        elif d.status == "ok":
            study = md(notes.get(name) or "a candidate")
        else:
            study = DASH
        speedup = f"{d.speedup_vs_reference:.2f}×" if d.status == "ok" and d.speedup_vs_reference else DASH
        body.append([md(name), md(d.line()), speedup, study])
    return ["## What to deploy, per backbone\n",
            "Each backbone's bench recommends the fastest artifact that passed its accuracy gate, across every "
            "runtime and precision it benched (p50 per batch at the smallest batch size timed); `edgexfer predict` "
            "and `edgexfer package` serve the same artifact from that export.\n",
            md_table(["backbone", "its bench recommends", "speed-up vs FP32", "in this study"], body, "llrl")]


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


def _limited_data_section(limited: dict[str, Any], plot: Path | None, study_dir: Path) -> list[str]:
    out = ["## Limited-data study\n"]
    fractions = ", ".join(f"{f:g}" for f in limited.get("fractions", []))
    transfer = weights_name(limited.get("transfer_weights") or "none")
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


def study_markdown(results: dict[str, Any], study_dir: Path, plots: StudyPlots) -> str:
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
        + "; Keras rows are the training-side reference and are not candidates. Each backbone's candidate is "
        "what its bench recommends, where the bench recorded it.\n"
    )
    out += _deploy_section(backbones, rec)
    failed = [b for b in backbones if b.get("status") != "done"]
    if failed:
        out.append("\n**Incomplete:** " + "; ".join(f"{md(b['name'])}: {md(b.get('error') or b.get('status'))}" for b in failed)
                   + ". Run the same command again to resume.\n")
    out.append("## Results by backbone and precision\n")
    if rows:
        out.append(_results_table(rows, rec, _deploys(backbones)))
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
        scratch = all(weights_name(b.get("weights", "none")) == "none" for b in backbones)
        out.append("Accuracy and loss per epoch on the training and validation splits; a dotted line marks where "
                   + ("the next training stage began (trained from scratch: every layer trained from the first "
                      "epoch, nothing was unfrozen).\n" if scratch else
                      "fine-tuning started unfreezing the backbone (or where its next stage began).\n"))
        out.append(f"![Training curves]({md_url(rel['training'])})\n")
        body = []
        for b in backbones:
            m = b.get("test_metrics") or {}
            body.append([md(b["name"]), md(weights_name(b.get("weights", DASH))), "×".join(map(str, b.get("image_size") or [])) or DASH,
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
        out += _limited_data_section(results["limited_data"], plots.learning, study_dir)
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

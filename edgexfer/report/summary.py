"""The end of `bench` and `demo`: one table (precision × runtime) and the verdict in one line.

Read from the bench's results (the ``results.json`` dictionary), so the console, the demo and a
later re-render say the same thing. Plain text with aligned columns: it reads the same on a
terminal, in a CI log and in a file.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from edgexfer.contracts.bench import bench_rows, recommend
from edgexfer.report.formats import fmt_ms


@dataclass(frozen=True)
class SummaryRow:
    artifact: str
    precision: str
    runtime: str
    accuracy: float
    f1: float
    worst_class: str
    worst_recall: float
    p50_ms: float | None  # at the smallest batch size timed
    gate: str  # "ref", "pass", "FAIL" or "INCONCLUSIVE"
    reasons: tuple[str, ...] = ()


def _smallest_batch(rows: Sequence[Mapping[str, Any]]) -> str | None:
    sizes = sorted({int(b) for r in rows for b in r.get("latency_ms", {})})
    return str(sizes[0]) if sizes else None


def summary_rows(results: Mapping[str, Any]) -> list[SummaryRow]:
    """One row per artifact × runtime, in the bench's order."""
    rows = results["results"]
    batch = _smallest_batch(rows)
    out = []
    for r in rows:
        recalls = {c: v["recall"] for c, v in r["per_class"].items()}
        worst = min(recalls, key=lambda c: (recalls[c], c))
        gate = r.get("gate") or {}
        outcome = gate.get("verdict") or ("pass" if gate.get("passed", True) else "fail")
        state = ("ref" if gate.get("reference") and outcome == "pass"
                 else {"pass": "pass", "inconclusive": "INCONCLUSIVE"}.get(outcome, "FAIL"))
        p50 = (r.get("latency_ms", {}).get(batch) or {}).get("p50") if batch else None
        out.append(SummaryRow(r["artifact"], r["precision"], r["runtime"], float(r["accuracy"]), float(r["f1"]),
                              worst, float(recalls[worst]), p50, state, tuple(gate.get("reasons") or ())))
    return out


def summary_table(results: Mapping[str, Any]) -> str:
    """The table as aligned plain text (accuracy, F1 and recall in %)."""
    rows = summary_rows(results)
    batch = _smallest_batch(results["results"])
    header = ["artifact", "precision", "runtime", "accuracy %", "F1 %", "worst-class recall %",
              f"p50 ms @{batch}" if batch else "p50 ms", "gate"]
    body = [[r.artifact, r.precision, r.runtime, f"{r.accuracy * 100:.2f}", f"{r.f1 * 100:.2f}",
             f"{r.worst_recall * 100:.2f} ({r.worst_class})", fmt_ms(r.p50_ms), r.gate] for r in rows]
    widths = [max(len(str(line[i])) for line in [header, *body]) for i in range(len(header))]
    numeric = {3, 4, 5, 6}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()

    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *(fmt(b) for b in body)])


def verdict(results: Mapping[str, Any]) -> str:
    """The bench's answer in one line: did every precision keep FP32's diagnoses, and what is fastest."""
    rows = summary_rows(results)
    model = results.get("model_check") or {}
    failed = [r for r in rows if r.gate == "FAIL"]
    if model and model.get("verdict", "usable" if model.get("usable", True) else "not_usable") == "not_usable":
        return f"FAILED: the FP32 model itself is not usable ({model.get('reason')}); no precision can pass."
    by_key = {(r.artifact, r.runtime): r for r in rows}
    refs = [r for r in rows if r.gate == "ref"]
    chosen = recommend(bench_rows(dict(results)))  # the rule of results.json's "recommended"
    fastest = next((r for r in rows if chosen is not None and (r.artifact, r.runtime) == (chosen.artifact, chosen.runtime)),
                   None)
    speed = ""
    if fastest is not None:
        ref = by_key.get(("fp32", fastest.runtime)) or (refs[0] if refs else None)
        ratio = (f", {ref.p50_ms / fastest.p50_ms:.1f}× FP32 on {ref.runtime}"
                 if ref is not None and ref.p50_ms and fastest.p50_ms and ref is not fastest else "")
        batch = _smallest_batch(results["results"])
        speed = f"; fastest that passes: {fastest.artifact} on {fastest.runtime}, {fmt_ms(fastest.p50_ms)} ms at batch {batch}{ratio}"
    if failed:
        # the first reason of each, without its figures in parentheses: the table and report.md have them
        broken = ", ".join(f"{r.artifact} on {r.runtime}" + (f" ({r.reasons[0].split(' (')[0]})" if r.reasons else "")
                           for r in failed)
        return f"FAILED: {broken} broke the accuracy gate against FP32{speed}."
    undecided = [r for r in rows if r.gate == "INCONCLUSIVE"]
    if model.get("verdict") == "inconclusive":
        return f"INCONCLUSIVE: {model.get('reason')}; no precision can be judged on these images{speed}."
    if undecided:
        listed = ", ".join(f"{r.artifact} on {r.runtime}" for r in undecided)
        return (f"INCONCLUSIVE: {listed} could not be shown to keep FP32's diagnoses within the gate on these "
                f"images, nor to lose more (report.md says how many images would decide){speed}.")
    judged = [r for r in rows if r.gate == "pass"]
    if not judged:
        return f"PASSED: only the FP32 reference was benched{speed}."
    worst_drop = max((by_key.get(("fp32", r.runtime)) or refs[0]).accuracy - r.accuracy for r in judged) if refs else 0.0
    names = sorted({r.artifact for r in judged})
    return (f"PASSED: {', '.join(names)} keep FP32's diagnoses within the gate (largest accuracy drop "
            f"{max(worst_drop, 0.0) * 100:.2f} pt){speed}.")


def closing_lines(results: Mapping[str, Any], out_dir: Any) -> str:
    """What `bench` and `demo` print last: the table, where the reports are, and the verdict."""
    from pathlib import Path

    out = Path(out_dir)
    html = out / "report.html"
    where = f"report: {out / 'report.md'}" + (f" and {html}" if html.exists() else "") + f"; data: {out / 'results.json'}"
    return "\n".join(["", summary_table(results), "", where, verdict(results)])


def bench_title(results: Mapping[str, Any]) -> str:
    """The bench report's title: the source run's name and backbone (the export folder is often just
    ``exported``), falling back to the export's name."""
    export = results.get("export") or {}
    run = export.get("source_run") or {}
    name = run.get("name") or export.get("name") or "export"
    return f"Bench: {name}" + (f" ({run['backbone']})" if run.get("backbone") else "")

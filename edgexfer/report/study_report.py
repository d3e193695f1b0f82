"""The study report: results.json of a study → plots, report.md and a self-contained report.html.

TensorFlow-free, so a study is re-rendered on any machine from its ``results.json`` alone. This module
TensorFlow-free, so a study is re-rendered on any machine from its ``results.json`` alone. This module
only renders: the Pareto marks, the recommendation and which rows are deployable are decided in
``edgexfer.studies.recommend`` and handed in (``edgexfer.studies.render.render_report`` routes a folder).
The plots are drawn in ``study_plots``, the text written in ``study_markdown``; this module runs both.

Study ``results.json`` is described in docs/contracts.md section 7 (``edgexfer.contracts.study``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from edgexfer.io import write_text
from edgexfer.report.bench_report import write_bench_report
from edgexfer.report.html import write_html_report
from edgexfer.report.study_markdown import study_markdown
from edgexfer.report.study_plots import (
    Deployable,
    StudyPlots,
    plot_confusion_matrices,
    plot_learning_curves,
    plot_pareto,
    plot_training_curves,
)


def render_study_report(study_dir: str | Path, results: dict[str, Any], deployable: Deployable) -> dict[str, Path]:
    """Draw the plots and write report.md and report.html of a study from its results (decisions made)."""
    study = Path(study_dir)
    plots_dir = study / "plots"
    rows = results.get("results", [])
    plots = StudyPlots(
        pareto=plot_pareto(rows, results.get("recommendation"), results.get("latency_budget_ms"),
                           plots_dir / "accuracy_vs_latency.png", deployable),
        training=plot_training_curves(results.get("backbones", []), plots_dir / "training_curves.png"),
        confusion=plot_confusion_matrices(rows, results.get("data", {}).get("classes", []),
                                          plots_dir / "confusion_matrices.png"),
        learning=(plot_learning_curves(results["limited_data"], plots_dir / "learning_curves.png")
                  if results.get("limited_data") else None),
    )
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

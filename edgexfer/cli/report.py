"""`edgexfer report DIR`: re-render a study's or a bench's report from its results.json."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("directory", type=click.Path(file_okay=False, path_type=str))
@click.option("--latency-budget-ms", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Study only: recompute the recommendation under this batch-1 p50 latency budget.")
def report(directory: str, latency_budget_ms: float | None) -> None:
    """Re-render report.md, report.html and the plots of a STUDY_DIR (edgexfer compare) or a
    BENCH_DIR (edgexfer bench) from its results.json, without re-running anything."""
    from edgexfer.studies.render import render_report

    paths = render_report(directory, latency_budget_ms=latency_budget_ms)
    click.echo(f"report: {paths['markdown']}")
    click.echo(f"html:   {paths['html']}")

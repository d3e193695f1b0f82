"""`edgexfer report DIR`: decide again (with another latency budget, if asked) and re-render a study or a bench
directory from its results.json alone; runs nothing else.

The decisions come from ``edgexfer.studies.recommend``, the drawing from ``edgexfer.report``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import edgexfer.contracts.bench as bench_contract
import edgexfer.contracts.study as study_contract
from edgexfer._folders import refuse_links_inside
from edgexfer.errors import EdgexferError
from edgexfer.report.study_report import render_bench_dir, render_study_report
from edgexfer.studies.recommend import is_deployable, refresh_decisions


def render_study(study_dir: str | Path, results: dict[str, Any], *, decide: bool = True,
                 latency_budget_ms: float | None = None) -> dict[str, Path]:
    """Draw a study's report. ``decide``: first mark the Pareto front and recommend (under
    ``latency_budget_ms`` when given) and write those decisions into results.json, so report and results
    agree; without it the decisions stored in ``results`` are drawn as they are."""

    if decide:
        refresh_decisions(results, latency_budget_ms)
        study_contract.write_study_results(study_dir, results)
    return render_study_report(study_dir, results, is_deployable)


def render_report(directory: str | Path, latency_budget_ms: float | None = None) -> dict[str, Path]:
    """Re-render the report of a study or bench directory from its results.json; runs nothing."""
    path = Path(directory)
    if not path.is_dir():
        raise EdgexferError(f"{path} is not a directory", "give a study directory (edgexfer compare --out) "
                                                          "or a bench directory (edgexfer bench --out)")
    refuse_links_inside(path)  # plots are redrawn in place: never through a link to somewhere else
    schema = study_contract.results_schema(path)
    if schema == study_contract.SCHEMA:
        results = study_contract.read_study_results(path)
        return render_study(path, results, decide=latency_budget_ms is not None, latency_budget_ms=latency_budget_ms)
    if schema in bench_contract.READABLE_SCHEMAS:  # an older bench still renders
        if latency_budget_ms is not None:
            raise EdgexferError("--latency-budget-ms applies to a study directory, not to a bench directory",
                                "drop the option, or point edgexfer report at the study directory")

        return render_bench_dir(path, bench_contract.load_results(path))
    raise EdgexferError(f"{study_contract.results_path(path)} has an unknown schema {schema!r}",
                        f"edgexfer report reads {study_contract.SCHEMA} (edgexfer compare) "
                        f"or {bench_contract.SCHEMA} (edgexfer bench)")

"""What a bench writes: results.json's record (docs/contracts.md section 6), the machine it ran on, and the
bench folder (results.json, report.md, plots/) built whole beside its place and swapped in."""

from __future__ import annotations

import os
import shutil
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgexfer._folders import staging_dir, swap_in
from edgexfer.contracts.bench import SCHEMA, BenchRow, recommend, write_results
from edgexfer.contracts.layers import layer_summaries
from edgexfer.evaluate.bench.config import BenchConfig
from edgexfer.evaluate.bench.judge import GateResult, PointChoice
from edgexfer.evaluate.bench.measure import LATENCY_METHOD, Measurements
from edgexfer.evaluate.bench_data import AgreementPool, BenchData
from edgexfer.evaluate.exported import ExportDir
from edgexfer.evaluate.stats import AGREEMENT_METHOD, ECE_METHOD, F1_METHOD, PAIRED_METHOD, reliability
from edgexfer.io import fix_modes
from edgexfer.report.bench_report import write_bench_report
from edgexfer.runtime import gpu_status
from edgexfer.versions import library_versions, machine_info


def results_record(config: BenchConfig, export: ExportDir, data: BenchData, pool: AgreementPool,
                   measured: Measurements, gate: GateResult, point: PointChoice, warnings: list[str],
                   skipped: list[dict[str, str]]) -> dict[str, Any]:
    """results.json's content, its rows still ``BenchRow``s (each carrying its gate), with the recommendation:
    the fastest row that passed the gate."""
    rows = measured.rows
    results = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "export": {"path": str(export.path), "name": export.name, "source_run": export.manifest["source_run"],
                   "int8_layers": layer_summaries(export.path, export.manifest["artifacts"])},
        "reference": "fp32",
        "reference_runtime": measured.reference_key[1],
        "thresholds": config.thresholds.as_dict(),
        "model_check": gate.model_check.as_dict(),
        "statistics": {"intervals": "Wilson score, 95% (statsmodels proportion_confint)",
                       "paired_test": "McNemar's exact test against FP32 on the same images (statsmodels mcnemar)",
                       "decision": {"proportions": PAIRED_METHOD, "f1": F1_METHOD, "agreement": AGREEMENT_METHOD,
                                    "rule": "pass: the interval of the drop is within the limit; fail: it lies "
                                            "above the limit (or a floor is broken, or the model is not usable); "
                                            "inconclusive: otherwise"},
                       "resolution_warnings": warnings},
        "settings": {"batch_sizes": list(config.batch_sizes), "warmup": config.warmup,
                     "iterations": config.iterations, "threads": config.threads,
                     "end_to_end_images": min(config.end_to_end_images, len(data.refs)),
                     "inputs": "host memory (decoded, resized uint8 NHWC); end_to_end_ms adds decode + resize",
                     "latency_method": LATENCY_METHOD},
        "machine": machine_record(),
        "data": data.description,
        "agreement_pool": pool.description,
        "operating_point": point.record,
        "calibration": {"method": ECE_METHOD,
                        "rows": [{"artifact": r.artifact, "runtime": r.runtime,
                                  **reliability(data.labels, measured.probabilities[r.key])} for r in rows]},
        "skipped": skipped,
        "results": rows,
    }
    recommended = recommend(rows)  # after the gate: the fastest row that passed it
    results["recommended"] = recommended.to_dict() if recommended is not None else None
    return results


def write_bench(out_dir: Path, results: dict[str, Any], rows: list[BenchRow]) -> dict[str, Any]:
    """results.json, report.md and plots/ in ``out_dir``; the results as written (schema first, rows as dicts)."""
    # built whole beside out_dir and swapped in: a full disk or a kill leaves the previous bench (or nothing)
    staging = staging_dir(out_dir)
    try:
        write_results(staging, results)
        results = {"schema": SCHEMA, **results, "results": [r.to_dict() for r in rows]}
        write_bench_report(results, staging)
        fix_modes(staging)
        swap_in(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return results


def machine_record() -> dict[str, Any]:
    info: dict[str, Any] = dict(machine_info())
    info["cpu"] = info.get("processor")
    info["cores_usable"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["gpu"] = gpu_status().as_dict()
    info["libraries"] = library_versions()
    return info

"""The results.json of a bench (docs/contracts.md section 6): schema check and reading.

Scripts rely on these keys; ``validate_results`` fails loudly when the bench would write, or a
reader is given, something else.
"""

from __future__ import annotations

import os
from typing import Any

from edgexfer.errors import EdgexferError
from edgexfer.io import read_json

SCHEMA = "edgexfer.bench/1"
TOP_KEYS = ("schema", "reference", "thresholds", "machine", "data", "skipped", "results")
ROW_KEYS = ("artifact", "precision", "runtime", "provider", "accuracy", "precision_macro", "recall_macro", "f1",
            "auc", "per_class", "confusion_matrix", "agreement", "max_abs_diff", "latency_ms", "throughput_ips",
            "end_to_end_ms", "size_bytes", "peak_rss_mb", "threads", "gate")
LATENCY_KEYS = ("p50", "p90", "p99", "mean")
THRESHOLD_KEYS = ("max_accuracy_drop", "max_f1_drop", "max_recall_drop")


def validate_results(results: Any) -> None:
    """Raise ValueError naming the first missing or mistyped key."""
    if not isinstance(results, dict):
        raise ValueError(f"results must be an object, not {type(results).__name__}")
    for key in TOP_KEYS:
        if key not in results:
            raise ValueError(f"results has no '{key}'")
    if results["schema"] != SCHEMA:
        raise ValueError(f"results schema is {results['schema']!r}, expected {SCHEMA!r}")
    for key in THRESHOLD_KEYS:
        if not isinstance(results["thresholds"].get(key), (int, float)):
            raise ValueError(f"thresholds.{key} is missing or not a number")
    if not isinstance(results["results"], list) or not results["results"]:
        raise ValueError("results.results must be a non-empty list")
    for i, row in enumerate(results["results"]):
        where = f"results[{i}] ({row.get('artifact')} on {row.get('runtime')})"
        for key in ROW_KEYS:
            if key not in row:
                raise ValueError(f"{where} has no '{key}'")
        for key in ("accuracy", "f1", "agreement"):
            value = row[key]
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{where}.{key} = {value!r} is not a fraction in [0, 1]")
        for batch, stats in row["latency_ms"].items():
            if not str(batch).isdigit():
                raise ValueError(f"{where}.latency_ms key {batch!r} is not a batch size")
            for key in LATENCY_KEYS:
                if not isinstance(stats.get(key), (int, float)):
                    raise ValueError(f"{where}.latency_ms[{batch}].{key} is missing")
            if batch not in row["throughput_ips"]:
                raise ValueError(f"{where}.throughput_ips has no batch {batch}")
        gate = row["gate"]
        if not isinstance(gate, dict) or not isinstance(gate.get("passed"), bool) or not isinstance(gate.get("reasons"), list):
            raise ValueError(f"{where}.gate must be {{'passed': bool, 'reasons': [...]}}")


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a results.json (a BENCH_DIR or the file itself)."""
    p = os.fspath(path)
    if os.path.isdir(p):
        p = os.path.join(p, "results.json")
    results = read_json(p, "bench results")
    try:
        validate_results(results)
    except ValueError as exc:
        raise EdgexferError(f"{p} is not a bench results file: {exc}", "re-run edgexfer bench") from exc
    return results

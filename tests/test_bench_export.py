"""The bench on a real export (H3's ``tiny_export``: a trained Keras run exported to FP32/FP16/INT8 ONNX)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_bench_real_export_with_keras_reference(tiny_export, tmp_path):
    from edgexfer.evaluate.bench import BenchConfig, BenchVerdictError, run_bench

    manifest = json.loads((tiny_export / "manifest.json").read_text())
    try:
        outcome = run_bench(BenchConfig(tiny_export, out=tmp_path / "bench", runtimes=["keras", "ort-cpu"],
                                        batch_sizes=(1, 4), warmup=1, iterations=3, progress=False,
                                        end_to_end_images=3))
    except BenchVerdictError as failure:  # 3 epochs, a small test split: any verdict, the outputs are written
        outcome = failure.outcome
    rows = {(r["artifact"], r["runtime"]): r for r in outcome.results["results"]}
    assert set(rows) == {("fp32", "ort-cpu"), ("fp16", "ort-cpu"), ("int8", "ort-cpu"), ("keras", "keras")}
    keras_row, fp32 = rows[("keras", "keras")], rows[("fp32", "ort-cpu")]
    # the ONNX model makes the Keras model's diagnoses on the run's own test split
    assert fp32["accuracy"] == keras_row["accuracy"]
    assert fp32["confusion_matrix"] == keras_row["confusion_matrix"]
    assert keras_row["agreement"] == 1.0 and keras_row["max_abs_diff"] < 1e-4
    metrics_file = Path(manifest["source_run"]["path"]) / "metrics.json"
    if metrics_file.is_file():  # a run written by finetune records its Keras test accuracy
        assert fp32["accuracy"] == pytest.approx(json.loads(metrics_file.read_text())["accuracy"])
    # the export carries the run's metrics.json, and with it the sanity record the gate reads
    exported_metrics = json.loads((tiny_export / "metrics.json").read_text())
    model = outcome.results["model_check"]
    assert model["sanity"] == exported_metrics.get("sanity")
    if model["usable"]:
        assert outcome.passed and all(r["gate"]["passed"] for r in rows.values())
    else:  # a model that did not learn fails at every precision, with the line that says so
        assert all(r["gate"]["reasons"][0].startswith("the model itself is not usable") for r in rows.values())
        assert not outcome.passed
    assert outcome.results["data"]["kind"] == "split" and fp32["n"] == outcome.results["data"]["n"]

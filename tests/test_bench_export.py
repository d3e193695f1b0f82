"""The bench on a real export (H3's ``tiny_export``: a trained Keras run exported to FP32/FP16/INT8 ONNX).

The fixture run trains tinycnn for 3 epochs with a fixed seed: it beats the majority-class baseline on its
12 test images (7 of 12 right), but its own sanity check says that is no better than chance (p=0.07). Both
paths of the gate are tested, each with a definite outcome: as exported, every precision fails because the
model itself is not usable; with the run's sanity record taken out of the export, the FP32 model beats the
baseline and every precision passes against it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgexfer.evaluate.bench import BenchConfig, BenchGateFailed, BenchOutcome, run_bench


def _bench(export: Path, out: Path) -> BenchConfig:
    return BenchConfig(export, out=out, runtimes=["keras", "ort-cpu"], batch_sizes=(1, 4), warmup=1, iterations=3,
                       progress=False, end_to_end_images=3)


def _rows(outcome: BenchOutcome) -> dict[tuple[str, str], dict]:
    rows = {(r["artifact"], r["runtime"]): r for r in outcome.results["results"]}
    assert set(rows) == {("fp32", "ort-cpu"), ("fp16", "ort-cpu"), ("int8", "ort-cpu"), ("keras", "keras")}
    return rows


def _onnx_makes_the_keras_diagnoses(outcome: BenchOutcome, export: Path) -> None:
    rows = _rows(outcome)
    keras_row, fp32 = rows[("keras", "keras")], rows[("fp32", "ort-cpu")]
    assert fp32["accuracy"] == keras_row["accuracy"]
    assert fp32["confusion_matrix"] == keras_row["confusion_matrix"]
    assert keras_row["agreement"] == 1.0 and keras_row["max_abs_diff"] < 1e-4
    manifest = json.loads((export / "manifest.json").read_text())
    recorded = json.loads((Path(manifest["source_run"]["path"]) / "metrics.json").read_text())["accuracy"]
    assert fp32["accuracy"] == pytest.approx(recorded)  # the Keras test accuracy finetune recorded
    assert outcome.results["data"]["kind"] == "split" and fp32["n"] == outcome.results["data"]["n"]


@pytest.mark.slow
def test_bench_real_export_fails_every_precision_when_the_run_says_the_model_learned_nothing(tiny_export, tmp_path):
    with pytest.raises(BenchGateFailed) as failure:
        run_bench(_bench(tiny_export, tmp_path / "bench"))
    outcome = failure.value.outcome
    _onnx_makes_the_keras_diagnoses(outcome, tiny_export)
    exported_metrics = json.loads((tiny_export / "metrics.json").read_text())
    model = outcome.results["model_check"]
    assert exported_metrics["sanity"]["verdict"] == "no_better_than_baseline"
    assert model["sanity"] == exported_metrics["sanity"] and model["usable"] is False
    assert model["accuracy"] > model["baseline_accuracy"]  # it is the run's own record that says no
    for row in _rows(outcome).values():
        assert not row["gate"]["passed"]
        assert row["gate"]["reasons"][0].startswith("the model itself is not usable: the run's sanity check says")


@pytest.mark.slow
def test_bench_real_export_passes_every_precision_against_a_usable_fp32(tiny_export, tmp_path):
    export = shutil.copytree(tiny_export, tmp_path / "export")
    metrics = json.loads((export / "metrics.json").read_text())
    del metrics["sanity"]  # a run without a sanity record: the gate's own baseline check decides
    (export / "metrics.json").write_text(json.dumps(metrics))
    outcome = run_bench(_bench(export, tmp_path / "bench"))
    _onnx_makes_the_keras_diagnoses(outcome, export)
    model = outcome.results["model_check"]
    assert model["usable"] is True and model["sanity"] is None
    assert outcome.passed and all(r["gate"]["passed"] for r in _rows(outcome).values())

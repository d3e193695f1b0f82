"""The bench on a real export (H3's ``tiny_export``: a trained Keras run exported to FP32/FP16/INT8 ONNX).

The fixture run trains tinycnn for 2 epochs with a fixed seed on the demo set (40 images per class, 12 of
them test images). Each path of the gate is tested with a definite outcome:
- on the run's own 12 test images nothing can be decided: the run's sanity check says the test split is too
  small to show the model beats the majority-class baseline, so every precision is INCONCLUSIVE (exit 3),
  saying so and how many images would decide;
- on all 120 images of the demo set (the light thresholds tests use), the FP32 model shows it beats the
  baseline and every precision passes against it: the happy path runs.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from edgexfer.evaluate.bench import BenchConfig, BenchGateInconclusive, BenchOutcome, run_bench


def _bench(export: Path, out: Path, **more) -> BenchConfig:
    return BenchConfig(export, out=out, runtimes=["keras", "ort-cpu"], batch_sizes=(1, 4), warmup=1, iterations=3,
                       progress=False, end_to_end_images=3, **more)


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
def test_bench_real_export_is_inconclusive_on_twelve_test_images(tiny_export, tmp_path):
    with pytest.raises(BenchGateInconclusive) as undecided:
        run_bench(_bench(tiny_export, tmp_path / "bench"))
    outcome = undecided.value.outcome
    _onnx_makes_the_keras_diagnoses(outcome, tiny_export)
    exported_metrics = json.loads((tiny_export / "metrics.json").read_text())
    model = outcome.results["model_check"]
    assert exported_metrics["sanity"]["verdict"] == "too_few_images"
    assert model["sanity"] == exported_metrics["sanity"] and model["verdict"] == "inconclusive"
    assert "too few test images to show the model beats the majority-class baseline (12 images" in str(undecided.value)
    for row in _rows(outcome).values():
        assert row["gate"]["passed"] is False
    assert {r["gate"]["verdict"] for r in _rows(outcome).values() if r["artifact"] != "fp32"} == {"inconclusive"}


@pytest.mark.slow
def test_bench_real_export_passes_every_precision_on_enough_images(tiny_export, demo_data_dir, tmp_path):
    from fixtures_handmade import LOOSE_DROPS

    from edgexfer.evaluate.gate import Thresholds

    export = shutil.copytree(tiny_export, tmp_path / "export")
    metrics = json.loads((export / "metrics.json").read_text())
    del metrics["sanity"]  # judged on other images than the run's test split: the gate's own baseline check decides
    (export / "metrics.json").write_text(json.dumps(metrics))
    outcome = run_bench(_bench(export, tmp_path / "bench", data=Path(demo_data_dir), thresholds=Thresholds(*LOOSE_DROPS)))
    rows = _rows(outcome)
    assert outcome.results["data"]["n"] == 120 and rows[("keras", "keras")]["agreement"] == 1.0
    model = outcome.results["model_check"]
    assert model["verdict"] == "usable" and model["sanity"] is None
    assert outcome.passed and all(r["gate"]["passed"] for r in rows.values())

"""The bench end to end on the hand-made export (``fixtures_handmade``): outputs, gate failures with their table,
the inconclusive verdict on 36 images, one-line refusals of bad input.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures_handmade import BIAS, CLASSES, FAST, LOOSE, SIZE, WEIGHTS, bench_outcome, break_int8
from PIL import Image


def test_bench_passes_and_writes_outputs(handmade_export, tmp_path):
    from click.testing import CliRunner

    from edgexfer.cli import cli
    from edgexfer.contracts.bench import load_results
    from edgexfer.evaluate.metrics import classification_metrics

    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(handmade_export), "--out", str(out), *FAST, *LOOSE, "--json"])
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    results = load_results(out)
    assert printed["results"] == results["results"]
    assert [r["artifact"] for r in results["results"]] == ["fp32", "fp16", "int8"]
    assert all(r["gate"]["passed"] for r in results["results"])
    assert (out / "report.md").is_file()
    for plot in ("accuracy_vs_latency.png", "latency_by_batch.png", "confusion_fp32.png", "confusion_int8.png"):
        assert (out / "plots" / plot).stat().st_size > 1000
    # the FP32 row's metrics are those of the model computed independently with numpy
    from edgexfer.data.sources import discover

    source = discover(handmade_export.parent / "data")
    images = np.stack([source.load(s.ref, (SIZE, SIZE)) for s in source.samples]).astype(np.float64)
    logits = images.mean(axis=(1, 2)) @ WEIGHTS + BIAS
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    expected = classification_metrics([s.label for s in source.samples], probs, CLASSES)
    fp32 = results["results"][0]
    assert 0.5 < expected["accuracy"] < 1.0  # a few mistakes: the metrics are not trivial
    assert fp32["accuracy"] == pytest.approx(expected["accuracy"])
    assert fp32["f1"] == pytest.approx(expected["f1"])
    assert fp32["confusion_matrix"] == expected["confusion_matrix"]
    assert fp32["agreement"] == 1.0 and fp32["max_abs_diff"] == 0.0
    int8 = results["results"][2]
    assert int8["agreement"] >= 0.9 and 0 < int8["max_abs_diff"] < 0.1
    assert set(fp32["latency_ms"]) == {"1", "4"} and fp32["latency_ms"]["1"]["n"] == 3
    assert fp32["end_to_end_ms"] > 0 and fp32["size_bytes"] == (handmade_export / "model_fp32.onnx").stat().st_size
    report = (out / "report.md").read_text()
    assert "| `int8` | int8 | ort-cpu |" in report and "host memory" in report
    # memory per artifact: what its own session added, far below the process's running peak
    assert all(0 <= r["session_peak_mb"] < r["peak_rss_mb"] / 2 for r in results["results"]), results["results"]
    assert "Session peak MB" in report
    # every row passed: the recommendation is the fastest of them at batch 1, and names the bytes it judged
    fastest = min(results["results"], key=lambda r: r["latency_ms"]["1"]["p50"])
    chosen = results["recommended"]
    assert (chosen["artifact"], chosen["runtime"], chosen["sha256"]) == (fastest["artifact"], "ort-cpu", fastest["sha256"])


def test_bench_broken_int8_fails_gate_with_table(export_copy, tmp_path):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    break_int8(export_copy)
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(export_copy), "--out", str(out), *FAST])
    assert result.exit_code == 1, result.output
    assert "accuracy gate failed for int8 on ort-cpu" in result.stderr
    table = result.stderr
    assert "precision" in table and "FP32" in table and "limit" in table
    assert "int8       int8" in table or "int8  " in table
    assert "recall[" in table and "accuracy" in table
    results = json.loads((out / "results.json").read_text())  # written before the failure
    gates = {r["artifact"]: (r["gate"]["passed"], r["gate"]["verdict"]) for r in results["results"]}
    # a failure is the exit code even when another precision is only undecided (FP16 flips nothing, but 36
    # images cannot show a 1-point limit)
    assert gates == {"fp32": (True, "pass"), "fp16": (False, "inconclusive"), "int8": (False, "fail")}
    assert results["recommended"]["artifact"] == "fp32"  # the one row that passed, however fast the others
    assert "What broke the gate" in (out / "report.md").read_text()


def test_the_python_apis_gate_failure_carries_its_table_and_refers_to_nothing_above(export_copy, tmp_path):
    from edgexfer import GateFailed, bench

    break_int8(export_copy)
    out = tmp_path / "bench"
    with pytest.raises(GateFailed) as caught:
        bench(export_dir=export_copy, out=out, batch_sizes=(1,), warmup=0, iterations=2, progress=False)
    failure = caught.value
    assert failure.table.splitlines()[0].split()[:4] == ["artifact", "precision", "runtime", "metric"]  # type: ignore[attr-defined]
    assert "int8" in failure.table and "table above" not in str(failure)  # type: ignore[attr-defined]
    assert ".table" in str(failure) and str(out / "report.md") in str(failure)


def test_default_gate_on_36_images_is_inconclusive_exit_3_naming_the_images_that_would_decide(
        handmade_export, tmp_path):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(handmade_export), "--out", str(out), *FAST])
    assert result.exit_code == 3, result.output
    error = [ln for ln in result.stderr.splitlines() if ln.startswith("edgexfer: error:")]
    assert len(error) == 1 and "accuracy gate inconclusive for fp16 on ort-cpu" in error[0]
    assert "images of class 'covid' (have 12)" in error[0] and "test images (have 36)" in error[0]
    assert "would decide" in result.stderr  # the table of what is undecided
    results = json.loads((out / "results.json").read_text())
    fp16 = results["results"][1]
    assert fp16["gate"]["verdict"] == "inconclusive" and fp16["gate"]["passed"] is False
    accuracy = next(d for d in fp16["gate"]["decisions"] if d["metric"] == "accuracy")
    assert accuracy["lost"] == accuracy["gained"] == 0 and accuracy["interval"][1] > 0.01
    report = (out / "report.md").read_text()
    assert "**Gate: INCONCLUSIVE**" in report and "## Undecided: too few images to tell" in report
    assert "INCONCLUSIVE:" in result.stdout


@pytest.mark.parametrize("damage, message", [
    ("no_manifest", "has no manifest.json"),
    ("tampered", "does not match the manifest"),
    ("wrong_classes", "do not match the model's classes"),
    ("unusable_runtime", "runtime 'ort-cuda' is not usable here"),
    ("unknown_runtime", "unknown runtime(s) 'onnx'"),
])
def test_bench_bad_input_is_one_line_exit_2(export_copy, tmp_path, damage, message):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    args = ["bench", str(export_copy), "--out", str(tmp_path / "bench"), "--quiet", "--iterations", "1"]
    if damage == "no_manifest":
        (export_copy / "manifest.json").unlink()
    elif damage == "tampered":
        with open(export_copy / "model_fp16.onnx", "ab") as f:
            f.write(b"\0")
    elif damage == "wrong_classes":
        other = tmp_path / "other"
        for name in ("cat", "dog"):
            (other / name).mkdir(parents=True)
            Image.fromarray(np.zeros((SIZE, SIZE, 3), np.uint8)).save(other / name / "a.png")
        args += ["--data", str(other)]
    elif damage == "unusable_runtime":
        args += ["--runtimes", "ort-cuda"]
    elif damage == "unknown_runtime":
        args += ["--runtimes", "onnx"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    if damage == "unknown_runtime":  # a click choice built from the runtime table: click's usage error
        assert message in result.stderr and "choose from: keras, ort-cpu" in result.stderr
    else:
        lines = [ln for ln in result.stderr.splitlines() if ln.startswith("edgexfer: error:")]
        assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.output
    assert not (tmp_path / "bench" / "results.json").exists()


def test_bench_npz_with_wrong_image_size_is_refused(export_copy, tmp_path):
    from edgexfer.errors import EdgexferError
    from edgexfer.evaluate.bench import BenchConfig, run_bench

    npz = tmp_path / "small.npz"
    images = np.zeros((6, 28, 28, 3), np.uint8)
    labels = np.array([0, 1, 2, 0, 1, 2])
    np.savez(npz, train_images=images, train_labels=labels, test_images=images, test_labels=labels,
             label_names=np.array(CLASSES))
    with pytest.raises(EdgexferError, match="holds 28x28 images, the model takes 32x32"):
        run_bench(BenchConfig(export_copy, out=tmp_path / "b", data=npz, runtimes=["ort-cpu"], progress=False))


def test_bench_with_npz_data_of_the_right_size(export_copy, tmp_path):
    from edgexfer.evaluate.bench import BenchConfig
    from edgexfer.evaluate.gate import Thresholds

    rng = np.random.default_rng(1)
    images = rng.integers(0, 255, size=(9, SIZE, SIZE, 3), dtype=np.uint8)
    labels = np.array([0, 1, 2] * 3)
    npz = tmp_path / "data.npz"
    np.savez(npz, train_images=images, train_labels=labels, test_images=images, test_labels=labels,
             label_names=np.array(CLASSES))
    outcome = bench_outcome(BenchConfig(export_copy, out=tmp_path / "b", data=npz, runtimes=["ort-cpu"],
                                        batch_sizes=(1,), warmup=0, iterations=2, progress=False,
                                        thresholds=Thresholds(1, 1, 1)))
    assert outcome.results["data"]["n"] == 9 and outcome.results["data"]["split"] == "test"

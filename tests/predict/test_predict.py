"""Predictor and `edgexfer predict` on the hand-made export (fixtures_handmade): same probabilities as bench,
inputs (files, folders, CSV lists), skipped files, bad input, gate-driven choice, thread safety."""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_handmade import BIAS, CLASSES, FAST, SIZE, WEIGHTS, break_int8

from edgexfer.cli import cli
from edgexfer.errors import EdgexferError


def _bench_probabilities(export_dir: Path, artifact: str, runtime: str = "ort-cpu") -> tuple[list[str], np.ndarray]:
    """The probabilities bench computes for ``artifact`` on ``runtime`` (its own code), with the image paths."""
    from edgexfer.evaluate.bench import BenchConfig
    from edgexfer.evaluate.bench.measure import bench_one
    from edgexfer.evaluate.bench.plan import BenchJob
    from edgexfer.evaluate.bench_data import load_bench_data
    from edgexfer.evaluate.exported import load_export
    from edgexfer.runtime import RUNTIMES

    export = load_export(export_dir)
    data = load_bench_data(export, progress=False)
    config = BenchConfig(export_dir=export_dir, batch_sizes=(1,), warmup=0, iterations=1, end_to_end_images=1,
                         progress=False)
    probs = bench_one(BenchJob(export.artifact(artifact), RUNTIMES[runtime]), export, data, config).probabilities
    from edgexfer.data.splits import Split

    source = Split.load(export.split_path).source
    return [str(source.path_of(ref)) for ref in data.refs], probs


def _read_csv(path_or_text: str) -> dict[str, dict[str, str]]:
    import csv
    import io

    rows = list(csv.DictReader(io.StringIO(path_or_text)))
    return {r["path"]: r for r in rows}


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_predictor_and_cli_match_bench(handmade_export, tmp_path, precision):
    from edgexfer.predict import Predictor

    paths, expected = _bench_probabilities(handmade_export, precision)
    with Predictor(handmade_export, precision=precision, runtime="ort-cpu") as model:
        assert (model.artifact, model.runtime) == (precision, "ort-cpu")
        answers = model.predict(paths)
    got = np.array([a.probabilities for a in answers])
    assert np.abs(got - expected).max() <= 1e-6
    assert [a.predicted_class for a in answers] == [CLASSES[i] for i in expected.argmax(1)]
    assert all(a.probability == max(a.probabilities) and a.artifact == precision for a in answers)

    out = tmp_path / "predictions.csv"
    result = CliRunner().invoke(cli, ["predict", str(handmade_export), *paths, "--precision", precision,
                                      "--runtime", "ort-cpu", "--out", str(out), "--quiet"])
    assert result.exit_code == 0, result.output
    rows = _read_csv(out.read_text())
    header = out.read_text().splitlines()[0].split(",")
    assert header == ["path", "predicted_class", "probability", *(f"p_{c}" for c in CLASSES)]
    csv_probs = np.array([[float(rows[p][f"p_{c}"]) for c in CLASSES] for p in paths])
    assert np.abs(csv_probs - expected).max() <= 1e-6


def test_fp32_predictions_are_the_model_computed_by_hand(handmade_export):
    """Independent of bench: the hand-made model is mean colour @ W + b, softmax."""
    from edgexfer.data.images import load_image
    from edgexfer.predict import Predictor

    files = sorted((handmade_export.parent / "data").rglob("*.png"))[:7]
    images = np.stack([load_image(f, (SIZE, SIZE)) for f in files]).astype(np.float64)
    logits = images.mean(axis=(1, 2)) @ WEIGHTS + BIAS
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    with Predictor(handmade_export, precision="fp32") as model:
        from_files = np.array([p.probabilities for p in model.predict(files, batch_size=3)])
        # arrays: one image, and a batch, through the same conversion as array data sets
        from_arrays = model.predict([images[0].astype(np.uint8), images[1:].astype(np.uint8)])
    assert np.abs(from_files - probs).max() < 1e-5
    assert [p.source for p in from_arrays][:2] == ["array[0]", "array[1][0]"]
    assert np.abs(np.array([p.probabilities for p in from_arrays]) - probs).max() < 1e-5


def test_cli_inputs_folders_csv_and_skipped_files(handmade_export, tmp_path):
    data = handmade_export.parent / "data"
    inputs = tmp_path / "inputs"
    shutil.copytree(data / "covid", inputs / "nested" / "covid")
    (inputs / "broken.png").write_bytes(b"not a png at all")
    (inputs / "notes.txt").write_text("not an image, not looked at")
    listing = tmp_path / "list.csv"
    listing.write_text("path,comment\n" + f"{data / 'normal' / 'normal_000.png'},x\n" + "missing.png,y\n")

    out = tmp_path / "out.json"
    result = CliRunner().invoke(cli, ["predict", str(handmade_export), str(inputs), str(listing),
                                      "--out", str(out), "--batch-size", "5"])
    assert result.exit_code == 0, result.output
    payload = json.loads(out.read_text())
    assert payload["schema"] == "edgexfer.predictions/1" and payload["classes"] == CLASSES
    predicted = [Path(p["path"]).name for p in payload["predictions"]]
    assert predicted == [f"covid_{i:03d}.png" for i in range(12)] + ["normal_000.png"]
    assert all(abs(sum(p["probabilities"].values()) - 1) < 1e-5 for p in payload["predictions"])
    skipped = {Path(s["path"]).name: s["reason"] for s in payload["skipped"]}
    assert set(skipped) == {"broken.png", "missing.png"}
    assert "skipped" in result.stderr and "broken.png" in result.stderr

    # CSV to stdout when --out is not given
    stdout = CliRunner().invoke(cli, ["predict", str(handmade_export), str(data / "pneumonia" / "pneumonia_001.png"),
                                      "--quiet"])
    assert stdout.exit_code == 0, stdout.output
    assert stdout.stdout.splitlines()[0].startswith("path,predicted_class,probability,p_covid")
    assert len(stdout.stdout.splitlines()) == 2


def _fails(args: list[str], expected: str) -> str:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.startswith("edgexfer: error:")]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    return lines[0]


def test_bad_input_is_one_line_exit_2_and_writes_nothing(export_copy, tmp_path):
    data = export_copy.parent / "data"
    out = tmp_path / "p.csv"
    image = str(data / "covid" / "covid_000.png")
    _fails(["predict", str(tmp_path / "nope"), image, "--out", str(out)], "does not exist")
    _fails(["predict", str(data), image, "--out", str(out)], "no manifest.json")
    _fails(["predict", str(export_copy), str(tmp_path / "missing.png"), "--out", str(out)], "does not exist")
    (tmp_path / "empty").mkdir()
    _fails(["predict", str(export_copy), str(tmp_path / "empty"), "--out", str(out)], "holds no image files")
    _fails(["predict", str(export_copy), image, "--out", str(tmp_path / "p.txt")], "must end in .csv or .json")
    _fails(["predict", str(export_copy), image, "--runtime", "ort-cuda", "--out", str(out)], "not usable here")
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"\x89PNG broken")
    _fails(["predict", str(export_copy), str(junk), "--out", str(out)], "none of the 1 input image(s) could be read")
    # a tampered artifact is refused before it is loaded
    model = export_copy / "model_fp16.onnx"
    model.write_bytes(model.read_bytes() + b"\0")
    _fails(["predict", str(export_copy), image, "--out", str(out)], "does not match the manifest")
    assert not out.exists() and not list(tmp_path.glob(".p.csv*"))


def test_auto_picks_fastest_passing_and_refuses_failed_gate(export_copy):
    from edgexfer.predict import BenchEvidence, Predictor

    break_int8(export_copy)
    bench = export_copy.parent / "bench"  # where the demo puts it: found without being named
    result = CliRunner().invoke(cli, ["bench", str(export_copy), "--out", str(bench), *FAST])
    assert result.exit_code == 1, result.output  # INT8 broke the gate

    from edgexfer.evaluate.exported import load_export

    evidence = BenchEvidence.load(bench)
    assert evidence.verdict(load_export(export_copy).artifact("int8"), "ort-cpu").passed is False
    passing = [v for v in evidence.verdicts if v.passed and v.runtime == "ort-cpu"]
    fastest = min(passing, key=lambda v: v.latency_ms)
    with Predictor(export_copy) as model:
        assert model.evidence is not None and model.evidence.path == bench / "results.json"
        assert model.artifact == fastest.artifact != "int8"
        assert "passed the gate" in model.choice.reason

    with pytest.raises(EdgexferError, match="allow-failed"):
        Predictor(export_copy, precision="int8")
    with Predictor(export_copy, precision="int8", allow_failed=True) as model:
        assert model.artifact == "int8" and model.choice.verdict.passed is False
    image = str(export_copy.parent / "data" / "covid" / "covid_000.png")
    _fails(["predict", str(export_copy), image, "--precision", "int8"], "gate FAILED")
    ok = CliRunner().invoke(cli, ["predict", str(export_copy), image, "--precision", "int8", "--allow-failed"])
    assert ok.exit_code == 0, ok.output


def test_predictor_is_thread_safe(handmade_export):
    from edgexfer.predict import Predictor

    files = sorted((handmade_export.parent / "data").rglob("*.png"))
    with Predictor(handmade_export, precision="int8", batch_size=4) as model:
        reference = [p.probabilities for p in model.predict(files)]
        results: dict[int, list] = {}
        errors: list[BaseException] = []

        def work(i: int) -> None:
            try:
                for _ in range(3):
                    results[i] = [p.probabilities for p in model.predict(files[i:] + files[:i])]
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert not errors
    assert sorted(results) == list(range(8))
    for i, probs in results.items():
        assert np.abs(np.array(probs) - np.array(reference[i:] + reference[:i])).max() <= 1e-6


def test_dicom_without_the_extra_is_a_listed_skip_naming_the_extra(handmade_export, tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pydicom", None)  # as if the dicom extra were not installed
    scan = tmp_path / "scan.dcm"
    scan.write_bytes(b"DICM")
    image = str(handmade_export.parent / "data" / "covid" / "covid_000.png")
    result = CliRunner().invoke(cli, ["predict", str(handmade_export), image, str(scan), "--quiet"])
    assert result.exit_code == 0, result.output
    skipped = [ln for ln in result.stderr.splitlines() if ln.startswith(f"skipped {scan}")]
    assert len(skipped) == 1 and "edgexfer[dicom]" in skipped[0]
    assert len(result.stdout.splitlines()) == 2  # the PNG still got its prediction
    only_dicom = CliRunner().invoke(cli, ["predict", str(handmade_export), str(scan)])
    assert only_dicom.exit_code == 2 and "could be read" in only_dicom.stderr


def test_choice_rules(handmade_export):
    from edgexfer.evaluate.exported import load_export
    from edgexfer.predict import BenchEvidence, GateVerdict, choose_artifact

    export = load_export(handmade_export)

    def evidence(*verdicts):  # (artifact, runtime, passed, reasons, latency): rows that judged its bytes
        return BenchEvidence(Path("results.json"), tuple(GateVerdict(*v, sha256=export.artifact(v[0]).sha256)
                                                         for v in verdicts))

    benched = evidence(("fp32", "ort-cpu", True, (), 2.0), ("fp16", "ort-cpu", True, (), 1.0),
                       ("int8", "ort-cpu", False, ("accuracy dropped 3 points",), 0.5))
    assert choose_artifact(export, "auto", "ort-cpu", evidence=benched).artifact.name == "fp16"  # int8 failed
    with pytest.raises(EdgexferError, match="accuracy dropped 3 points"):
        choose_artifact(export, "int8", "ort-cpu", evidence=benched)
    assert choose_artifact(export, "int8", "ort-cpu", evidence=benched, allow_failed=True).artifact.name == "int8"
    assert choose_artifact(export, "auto", "ort-cpu", evidence=None).artifact.name == "fp32"
    # a failure on another runtime counts where this one was not benched
    elsewhere = evidence(("int8", "trt", False, ("recall[covid] dropped",), 0.1))
    with pytest.raises(EdgexferError, match="on trt"):
        choose_artifact(export, "int8", "ort-cpu", evidence=elsewhere)
    # the model itself failed (FP32 broke an absolute floor): auto refuses too
    useless = evidence(*[(a, "ort-cpu", False, ("below the majority-class baseline",), 1.0)
                         for a in ("fp32", "fp16", "int8")])
    with pytest.raises(EdgexferError, match="no artifact passed the gate"):
        choose_artifact(export, "auto", "ort-cpu", evidence=useless)
    forced = choose_artifact(export, "auto", "ort-cpu", evidence=useless, allow_failed=True)
    assert forced.artifact.name == "fp32" and "allowed although" in forced.reason
    with pytest.raises(EdgexferError, match="unknown precision"):
        choose_artifact(export, "fp8", "ort-cpu")
    with pytest.raises(EdgexferError, match="needs TensorFlow"):
        choose_artifact(export, "fp32", "keras")


def test_choice_line_names_the_artifact_and_runtime_once(handmade_export):
    from edgexfer.evaluate.exported import load_export
    from edgexfer.predict import BenchEvidence, GateVerdict, choose_artifact

    export = load_export(handmade_export)
    benched = BenchEvidence(Path("results.json"), (GateVerdict("int8", "ort-cpu", True, (), 0.5,
                                                               sha256=export.artifact("int8").sha256),))
    line = choose_artifact(export, "int8", "ort-cpu", evidence=benched).line()
    assert line.startswith("int8 on ort-cpu: gate passed"), line
    assert line.count("int8") == 1 and line.count("ort-cpu") == 1, line

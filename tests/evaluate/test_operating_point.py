"""Clinical operating points (one class against the rest, a threshold chosen on the validation split, every
precision read and gated at it) and the calibration of each precision's probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_handmade import FAST, build_export, make_images, write_manifest

from edgexfer.cli import cli
from edgexfer.evaluate.operating_point import choose_threshold, positive_index
from edgexfer.evaluate.stats import reliability

CLASSES = ["normal", "pneumonia"]


def _sens_spec(y, s, t):
    pos = y == 1
    return float(np.mean(s[pos] >= t)), float(np.mean(s[~pos] < t))


def test_target_sensitivity_takes_the_most_specific_threshold_that_reaches_it():
    rng = np.random.default_rng(0)
    y = np.array([1] * 40 + [0] * 60)
    s = np.where(y == 1, rng.uniform(0.3, 1.0, 100), rng.uniform(0.0, 0.7, 100))
    point = choose_threshold(y, s, 1, CLASSES, 0.9, "validation")
    sens, spec = _sens_spec(y, s, point.threshold)
    assert sens >= 0.9 and (point.sensitivity, point.specificity) == (sens, spec)
    # any higher cut among the scores loses the target
    higher = sorted(v for v in set(s.tolist()) if v > point.threshold)
    assert higher and _sens_spec(y, s, higher[0])[0] < 0.9


def test_youden_threshold_maximises_sensitivity_plus_specificity():
    rng = np.random.default_rng(1)
    y = np.array([1] * 30 + [0] * 50)
    s = np.where(y == 1, rng.normal(0.65, 0.15, 80), rng.normal(0.4, 0.15, 80))
    point = choose_threshold(y, s, 1, CLASSES, None, "validation")
    best = max(sum(_sens_spec(y, s, t)) for t in s)  # every observed score as a cut
    assert sum(_sens_spec(y, s, point.threshold)) == pytest.approx(best)
    assert point.method == "youden"


def test_positive_class_defaults_and_refusals():
    from edgexfer.errors import EdgexferError

    assert positive_index(CLASSES, None) == 1 and positive_index(["a", "b", "c"], None) is None
    assert positive_index(["a", "b", "c"], "c") == 2
    with pytest.raises(EdgexferError, match="is not a class of the model"):
        positive_index(CLASSES, "covid")


def test_ece_of_a_hand_made_example():
    # 10 images at confidence 0.9, 8 right (|0.8 - 0.9| = 0.1); 5 at 0.6, 3 right (exact): ECE = 10/15 * 0.1
    probs = np.array([[0.9, 0.1]] * 10 + [[0.6, 0.4]] * 5)
    labels = np.array([0] * 8 + [1] * 2 + [0] * 3 + [1] * 2)
    result = reliability(labels, probs)
    assert result["ece"] == pytest.approx(10 / 15 * 0.1)
    filled = [b for b in result["bins"] if b["n"]]
    assert [(b["n"], b["accuracy"]) for b in filled] == [(5, 0.6), (10, 0.8)]


def _export_with_validation(root):
    make_images.__defaults__ = (40, 0)
    try:
        export = build_export(root)
    finally:
        make_images.__defaults__ = (12, 0)
    split = json.loads((export / "split.json").read_text())
    test = split["splits"]["test"]
    split["splits"]["val"], split["splits"]["test"] = test[::2], test[1::2]
    (export / "split.json").write_text(json.dumps(split))
    write_manifest(export)
    return export


def test_bench_chooses_the_threshold_on_validation_and_reads_every_precision_at_it(tmp_path):
    export = _export_with_validation(tmp_path)
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(export), "--out", str(out), *FAST, "--positive-class", "pneumonia",
                                      "--target-sensitivity", "0.9"])
    assert result.exit_code in (0, 1, 3), result.output
    results = json.loads((out / "results.json").read_text())
    point = results["operating_point"]
    assert point["positive_class"] == "pneumonia" and point["method"] == "target_sensitivity"
    assert "validation" in point["chosen_on"] and point["n_positive"] == 20 and point["sensitivity"] >= 0.9
    for row in results["results"]:
        at = row["gate"]["operating_point"]
        assert at["threshold"] == point["threshold"] and at["positives"] == 20 and at["negatives"] == 40
        assert at["sensitivity_ci95"][0] <= at["sensitivity"] <= at["sensitivity_ci95"][1]
        if row["artifact"] != "fp32":
            metrics = {d["metric"] for d in row["gate"]["decisions"]}
            assert {f"sensitivity[pneumonia@{point['threshold']:.4g}]",
                    f"specificity[pneumonia@{point['threshold']:.4g}]"} <= metrics
    report = (out / "report.md").read_text()
    assert "## Clinical operating point" in report and "## Calibration of the probabilities" in report
    assert (out / "plots" / "reliability.png").stat().st_size > 1000
    assert len(results["calibration"]["rows"]) == 3


def test_without_validation_images_no_threshold_is_chosen_on_the_test_images(tmp_path):
    export = build_export(tmp_path)  # every image is a test image
    out = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(export), "--out", str(out), *FAST, "--positive-class", "covid"])
    assert result.exit_code in (0, 1, 3), result.output
    results = json.loads((out / "results.json").read_text())
    assert results["operating_point"]["threshold"] is None
    assert results["operating_point"]["note"].startswith("no validation images here to choose the threshold on")
    assert all(row["gate"]["operating_point"] is None for row in results["results"])
    bad = CliRunner().invoke(cli, ["bench", str(export), "--out", str(tmp_path / "b2"), *FAST,
                                   "--positive-class", "flu"])
    assert bad.exit_code == 2 and "is not a class of the model" in bad.stderr


def test_predictor_and_triton_package_apply_the_benched_operating_point(tmp_path):
    from fixtures_handmade import LOOSE

    from edgexfer.predict import Predictor
    from edgexfer.serving.triton import write_triton_repository

    export = _export_with_validation(tmp_path)
    bench = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(export), "--out", str(bench), *FAST, *LOOSE,
                                      "--positive-class", "pneumonia", "--target-sensitivity", "0.99"])
    assert result.exit_code in (0, 1, 3), result.output
    threshold = json.loads((bench / "results.json").read_text())["operating_point"]["threshold"]
    files = sorted((tmp_path / "data").rglob("*.png"))
    with Predictor(export, precision="fp32", bench=bench) as model:
        assert model.decision is not None and model.decision.threshold == threshold
        answers = model.predict(files)
    overridden = 0
    for a in answers:
        p_pos = a.probabilities[2]
        assert (a.predicted_class == "pneumonia") == (p_pos >= threshold)
        overridden += a.predicted_class == "pneumonia" and int(np.argmax(a.probabilities)) != 2
    assert overridden > 0  # a low threshold for a 99% sensitivity calls some images pneumonia that argmax would not
    model = write_triton_repository(export, tmp_path / "triton", precision="fp32", bench=bench)
    config = (model.folder / "config.pbtxt").read_text()
    assert f"'pneumonia' when its probability is at least {threshold:.6g}" in config
    assert "the client applies this rule" in config


def test_an_undecided_precision_is_refused_by_name_saying_it_is_inconclusive(tmp_path):
    from edgexfer.errors import EdgexferError
    from edgexfer.predict import Predictor

    export = build_export(tmp_path)
    bench = tmp_path / "bench"
    assert CliRunner().invoke(cli, ["bench", str(export), "--out", str(bench), *FAST]).exit_code == 3
    with pytest.raises(EdgexferError, match="fp16 on ort-cpu: gate INCONCLUSIVE .*too few images to tell"):
        Predictor(export, precision="fp16", runtime="ort-cpu", bench=bench)
    with Predictor(export, precision="auto", runtime="ort-cpu", bench=bench) as model:
        assert model.artifact == "fp32"  # nothing else was shown within the gate


def _record_point(export, threshold: float) -> dict:
    """What `export --positive-class pneumonia --target-sensitivity 0.99` writes into the manifest (the
    hand-made export has no Keras run to export from): artifacts and their sha256 unchanged."""
    manifest = json.loads((export / "manifest.json").read_text())
    point = {"positive_class": "pneumonia", "positive_index": 2, "method": "target_sensitivity",
             "target_sensitivity": 0.99, "threshold": threshold, "chosen_on": "the run's validation split",
             "n_positive": 20, "n_negative": 40, "sensitivity": 1.0, "specificity": 0.5, "source": "export"}
    manifest["operating_point"] = point
    (export / "manifest.json").write_text(json.dumps(manifest))
    return point


def test_the_manifests_operating_point_is_benched_and_served_before_the_benchs_own(tmp_path):
    from fixtures_handmade import LOOSE

    from edgexfer.predict import Predictor
    from edgexfer.serving.triton import write_triton_repository

    export = _export_with_validation(tmp_path)
    bench = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(export), "--out", str(bench), *FAST, *LOOSE,
                                      "--positive-class", "pneumonia"])  # bench chooses one (Youden's J)
    assert result.exit_code in (0, 1, 3), result.output
    benched = json.loads((bench / "results.json").read_text())["operating_point"]
    assert benched["source"] == "bench"
    recorded = _record_point(export, 0.2)
    assert recorded["threshold"] != benched["threshold"]
    files = sorted((tmp_path / "data").rglob("*.png"))
    with Predictor(export, precision="fp32", bench=bench) as model:  # the bench's verdicts, the manifest's threshold
        assert model.decision is not None and model.decision.threshold == 0.2
        assert model.decision.source == f"the export manifest {export / 'manifest.json'}"
        answers = model.predict(files)
    assert all((a.predicted_class == "pneumonia") == (a.probabilities[2] >= 0.2) for a in answers)
    config = (write_triton_repository(export, tmp_path / "triton", precision="fp32", bench=bench).folder
              / "config.pbtxt").read_text()
    assert "Decision (clinical operating point from the export manifest" in config and "at least 0.2, else" in config
    # predict says which rule it applies and where it came from, and records it beside the bytes that answered
    out = tmp_path / "p.json"
    result = CliRunner().invoke(cli, ["predict", str(export), str(files[0]), "--precision", "fp32", "--bench",
                                      str(bench), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "answers follow the clinical operating point from the export manifest" in result.stderr
    written = json.loads(out.read_text())
    fp32 = next(a for a in json.loads((export / "manifest.json").read_text())["artifacts"] if a["name"] == "fp32")
    assert (written["artifact"], written["sha256"]) == ("fp32", fp32["sha256"])  # the bytes that answered
    assert written["decision"] == {"positive_class": "pneumonia", "threshold": 0.2,
                                   "source": f"the export manifest {export / 'manifest.json'}"}

    # bench judges the recorded threshold (without being asked), and refuses to judge another one
    again = tmp_path / "bench2"
    result = CliRunner().invoke(cli, ["bench", str(export), "--out", str(again), *FAST, *LOOSE])
    assert result.exit_code in (0, 1, 3), result.output
    judged = json.loads((again / "results.json").read_text())["operating_point"]
    assert judged == recorded
    assert "recorded by the export, so it is the threshold predict and package serve" in (again / "report.md").read_text()
    assert all(r["gate"]["operating_point"]["threshold"] == 0.2 for r in
               json.loads((again / "results.json").read_text())["results"])
    other = CliRunner().invoke(cli, ["bench", str(export), "--out", str(tmp_path / "b3"), *FAST,
                                     "--positive-class", "covid"])
    assert other.exit_code == 2 and "records the operating point 'pneumonia' at 0.2" in other.stderr
    assert not (tmp_path / "b3").exists()

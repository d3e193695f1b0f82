"""`export --positive-class NAME [--target-sensitivity X]`: the clinical operating point is chosen at export
time, on every validation image with FP32's probabilities, and recorded in the manifest, where Predictor
applies it (saying it came from the manifest). The tiny run's export, FP32 only."""

from __future__ import annotations

import json

import numpy as np
from click.testing import CliRunner

from edgexfer.cli import cli
from edgexfer.data.splits import Split
from edgexfer.predict import Predictor


def test_export_records_the_threshold_chosen_on_every_validation_image(export_run_dir, tmp_path):
    out = tmp_path / "exported" / "tiny"
    result = CliRunner().invoke(cli, ["export", str(export_run_dir), "--out", str(out), "--quiet",
                                      "--positive-class", "pneumonia", "--target-sensitivity", "0.9"])
    assert result.exit_code == 0, result.output
    assert "operating point: 'pneumonia' when its probability is at least" in result.output
    point = json.loads((out / "manifest.json").read_text())["operating_point"]
    split = Split.load(export_run_dir / "split.json")
    val = split.splits["val"]
    positives = sum(s.label == 2 for s in val)
    assert (point["positive_class"], point["positive_index"], point["source"]) == ("pneumonia", 2, "export")
    assert (point["n_positive"], point["n_negative"]) == (positives, len(val) - positives)
    assert point["method"] == "target_sensitivity" and f"({len(val)} images" in point["chosen_on"]
    # served as recorded: on the validation images, the pneumonia answers find at least 90% of the pneumonias
    with Predictor(out, precision="fp32", runtime="ort-cpu") as model:
        assert model.decision is not None and model.decision.threshold == point["threshold"]
        assert "manifest.json" in model.decision.source
        images, labels = split.load_arrays("val", model.image_size)
        answers = model.predict(images)
    assert labels.tolist() == [s.label for s in val]
    found = [a.predicted_class == "pneumonia" for a, label in zip(answers, labels, strict=True) if label == 2]
    assert np.mean(found) >= 0.9


def test_operating_point_options_are_checked_before_any_work(export_run_dir, tmp_path):
    out = tmp_path / "exported" / "tiny"
    unknown = CliRunner().invoke(cli, ["export", str(export_run_dir), "--out", str(out), "--quiet",
                                       "--positive-class", "flu"])
    assert unknown.exit_code == 2 and "is not a class of the model" in unknown.stderr
    alone = CliRunner().invoke(cli, ["export", str(export_run_dir), "--out", str(out), "--quiet",
                                     "--target-sensitivity", "0.9"])
    assert alone.exit_code == 2 and "--target-sensitivity needs --positive-class for a task of 3 classes" in alone.stderr
    wrong = CliRunner().invoke(cli, ["export", str(export_run_dir), "--out", str(out), "--quiet",
                                     "--positive-class", "pneumonia", "--target-sensitivity", "1.5"])
    assert wrong.exit_code == 2 and "--target-sensitivity" in wrong.stderr
    assert not out.exists()

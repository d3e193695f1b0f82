"""More evidence without labels: agreement with FP32 on every usable image (test, validation, --unlabeled),
never on train or calibration images, decides what the labelled test images cannot."""

from __future__ import annotations

import json
import shutil

import numpy as np
from click.testing import CliRunner
from fixtures_handmade import FAST, SIZE, make_images

from edgexfer.cli import cli


def _bench(*args):
    return CliRunner().invoke(cli, ["bench", *map(str, args)])


def test_unlabeled_images_decide_what_36_labelled_images_cannot(handmade_export, tmp_path):
    # FP16 flips nothing, but 12 test images per class cannot show a 2-point recall limit; 230 images per class
    # without labels can: no answer of FP32 changes on them, so no recall can drop by more than the bound
    unlabeled = make_images(tmp_path / "site", per_class=230, seed=5)
    out = tmp_path / "bench"
    result = _bench(handmade_export, "--out", out, *FAST, "--unlabeled", unlabeled)
    results = json.loads((out / "results.json").read_text())
    pool = results["agreement_pool"]
    assert pool["sources"] == {"test": 36, "val": 0, "unlabeled": 690} and pool["n"] == 726
    assert "train" in pool["train_images"] or "fitted" in pool["train_images"]
    fp16 = next(r for r in results["results"] if r["artifact"] == "fp16")
    assert fp16["gate"]["verdict"] == "pass", fp16["gate"]["reasons"]
    agreement = fp16["gate"]["agreement"]
    assert agreement["disagree"] == 0 and agreement["by_source"]["unlabeled"] == {"n": 690, "disagree": 0}
    recalls = [d for d in fp16["gate"]["decisions"] if d["metric"].startswith("recall[")]
    assert recalls and all(d["outcome"] == "pass" and "shown by agreement" in d["note"] for d in recalls)
    # the labelled interval alone still straddles the limit: the pass is the agreement's
    assert all(d["interval"][1] > d["limit"] for d in recalls)
    report = (out / "report.md").read_text()
    assert "## Agreement with FP32 (no labels needed)" in report and "unlabeled 690" in report
    assert result.exit_code in (0, 3), result.output  # INT8 may flip a few of 726 images: then it is undecided


def test_pool_leaves_out_test_duplicates_and_calibration_images(export_copy, tmp_path):
    from fixtures_handmade import write_manifest

    from edgexfer.contracts.calibration import CalibrationRecord, write_calibration_record
    from edgexfer.data.calibration import pixel_hash
    from edgexfer.data.images import load_image

    site = make_images(tmp_path / "site", per_class=2, seed=7)  # 6 new images
    test_images = sorted((export_copy.parent / "data" / "covid").glob("*.png"))[:3]
    for i, path in enumerate(test_images):  # copies of labelled test images under other names
        shutil.copy(path, site / f"copy_{i}.png")
    calibrated = sorted((site / "normal").glob("*.png"))  # say the INT8 set was calibrated on these two
    record = CalibrationRecord(id="cal-test", file="cal-test.npz", classes=["covid", "normal", "pneumonia"],
                               image_size=(SIZE, SIZE), size=2, sha256="0" * 64,
                               pixel_sha1=[pixel_hash(load_image(p, (SIZE, SIZE))) for p in calibrated])
    write_calibration_record(export_copy.parent / "calibration" / "cal-test.json", record)
    manifest = json.loads((export_copy / "manifest.json").read_text())
    write_manifest(export_copy)
    manifest = json.loads((export_copy / "manifest.json").read_text())
    manifest["artifacts"][2]["calibration"] = {"id": "cal-test", "file": "cal-test.npz", "sha256": "0" * 64,
                                               "size": 2, "method": "entropy", "seed": 0}
    (export_copy / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "bench"
    result = _bench(export_copy, "--out", out, *FAST, "--unlabeled", site)
    assert result.exit_code in (0, 1, 3), result.output
    pool = json.loads((out / "results.json").read_text())["agreement_pool"]
    assert pool["left_out_duplicates"] == 3 and pool["left_out_calibration"] == 2
    assert pool["sources"]["unlabeled"] == 4 and "cal-test.json" in pool["calibration_check"]


def test_unlabeled_must_be_a_folder_with_images(handmade_export, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for target, message in ((tmp_path / "nowhere", "is not a folder"), (empty, "holds no image files")):
        result = _bench(handmade_export, "--out", tmp_path / "b", *FAST, "--unlabeled", target)
        assert result.exit_code == 2, result.output
        lines = [ln for ln in result.stderr.splitlines() if ln.startswith("edgexfer: error:")]
        assert len(lines) == 1 and message in lines[0]
    assert not (tmp_path / "b" / "results.json").exists()


def test_agreement_bound_of_a_class_scales_with_fp32_answers_per_image():
    from edgexfer.evaluate.stats import agreement_bounds, agreement_evidence

    # FP32 answers 'a' for 40 images, 20 of them truly 'a' (ratio 2); 1 of the 40 answers changed
    ref = np.array([0] * 40 + [1] * 60)
    cand = ref.copy()
    cand[0] = 1
    labels = np.array([0] * 20 + [1] * 80)
    evidence = agreement_evidence(ref, cand, ["test"] * 100, ["a", "b"])
    assert evidence["per_class"]["a"] == {"n": 40, "disagree": 1, "rate": 0.025,
                                          "interval": evidence["per_class"]["a"]["interval"]}
    bounds = agreement_bounds(evidence, labels, ref, ["a", "b"])
    assert bounds["recall[a]"].bound == np.float64(evidence["per_class"]["a"]["interval"][1]) * 2.0
    assert bounds["accuracy"].bound == evidence["interval"][1]

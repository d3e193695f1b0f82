"""Calibration sets: stratified draw from train only, raw-pixel .npz + JSON record, batched reading, refusals."""

from __future__ import annotations

import dataclasses
import json
import shutil
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from edgexfer.cli import cli
from edgexfer.data.calibration import (
    build_calibration_set,
    find_or_build,
    load_calibration_set,
    stratified_indices,
)
from edgexfer.errors import EdgexferError
from edgexfer.io import sha256_file


@pytest.fixture(scope="module")
def calset(export_run_dir, tmp_path_factory):
    path = build_calibration_set(export_run_dir, tmp_path_factory.mktemp("cal"), size=30, seed=3)
    return load_calibration_set(path)


def test_set_is_drawn_from_train_only_stratified_and_recorded(calset, export_run_dir):
    from edgexfer.data.splits import Split

    split = Split.load(export_run_dir / "split.json")
    m = calset.manifest
    assert m["schema"] == "edgexfer.calibration/1" and m["split"] == "train" and m["seed"] == 3
    assert m["size"] == 30 and sum(m["class_counts"].values()) == 30
    assert m["classes"] == split.classes
    split_sha = json.loads((export_run_dir / "run.json").read_text()).get("split_sha256") or sha256_file(
        export_run_dir / "split.json")
    h, w = calset.image_size
    assert calset.npz_path.name == f"{m['id']}.npz" and m["id"] == f"cal-{split_sha[:16]}-{h}x{w}-30-seed3"
    assert m["split_sha256"] == split_sha and len(m["refs"]) == len(m["pixel_sha1"]) == 30
    train_counts = split.counts()["train"]
    total = sum(train_counts.values())
    for cls, n in m["class_counts"].items():  # proportional to the train split, within one image
        assert abs(n - 30 * train_counts[cls] / total) <= 1
    # pixels are the train images, decoded like every stage decodes them
    h, w = calset.image_size
    train_x, train_y = split.load_arrays("train", (h, w))
    images, labels = next(calset.iter_batches(calset.size))
    for img, label in zip(images, labels, strict=True):
        match = np.flatnonzero((train_x == img).all(axis=(1, 2, 3)))
        assert match.size and train_y[match[0]] == label
    val_x, _ = split.load_arrays("val", (h, w))
    test_x, _ = split.load_arrays("test", (h, w))
    others = np.concatenate([val_x, test_x])
    assert not any((others == img).all(axis=(1, 2, 3)).any() for img in images)


def test_npz_is_uncompressed_raw_pixels_and_loads_with_numpy(calset):
    with zipfile.ZipFile(calset.npz_path) as zf:
        assert all(info.compress_type == zipfile.ZIP_STORED for info in zf.infolist())
    with np.load(calset.npz_path) as npz:
        assert npz["images"].dtype == np.uint8 and npz["images"].shape == (calset.size, *calset.image_size, 3)
        assert npz["labels"].dtype == np.int64
        np.testing.assert_array_equal(np.concatenate([x for x, _ in calset.iter_batches(7)]), npz["images"])


def test_batches_are_read_incrementally(calset, monkeypatch):
    sizes = [len(x) for x, _ in calset.iter_batches(8)]
    assert sizes == [8, 8, 8, 6]
    reads = []
    real_open = zipfile.ZipFile.open

    def spy_open(self, name, *args, **kwargs):
        member = real_open(self, name, *args, **kwargs)
        real_read = member.read
        member.read = lambda n=-1: reads.append(n) or real_read(n)
        return member

    monkeypatch.setattr(zipfile.ZipFile, "open", spy_open)
    list(calset.iter_batches(8))
    per_image = int(np.prod(calset.image_size)) * 3
    assert max(reads) <= 8 * per_image and -1 not in reads


def test_same_seed_same_set_other_seed_other_set(export_run_dir, tmp_path, calset):
    again = build_calibration_set(export_run_dir, tmp_path, size=30, seed=3)
    assert json.loads(again.with_suffix(".json").read_text())["sha256"] == calset.manifest["sha256"]
    other = build_calibration_set(export_run_dir, tmp_path, size=30, seed=4)
    assert json.loads(other.with_suffix(".json").read_text())["sha256"] != calset.manifest["sha256"]


def test_stratified_indices_cover_every_class():
    labels = np.array([0] * 90 + [1] * 9 + [2] * 1)
    picked = stratified_indices(labels, 3, 10, seed=0)
    assert len(picked) == len(set(picked)) == 10
    assert sorted(np.bincount(labels[picked], minlength=3)) == [1, 1, 8]
    assert len(stratified_indices(labels, 3, 500, seed=0)) == 100  # capped at what train holds


def test_set_moves_to_another_machine_with_its_record(calset, tmp_path):
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.copy(calset.npz_path, moved)
    shutil.copy(calset.json_path, moved)
    again = load_calibration_set(moved / calset.json_path.name)
    assert again.manifest == calset.manifest


def test_find_or_build_reuses_an_existing_set(export_run_dir, calset):
    found, built = find_or_build(calset.npz_path.parent, export_run_dir, 30, 3)
    assert not built and found.npz_path == calset.npz_path


def test_refuses_another_image_size_class_list_or_too_few_images(calset):
    with pytest.raises(EdgexferError, match="images, the model takes 99x99"):
        calset.check_compatible((99, 99), calset.classes)
    with pytest.raises(EdgexferError, match="drawn for classes"):
        calset.check_compatible(calset.image_size, ["cat", "dog", "bird"])
    with pytest.raises(EdgexferError, match="fewer than the"):
        fake = type(calset)(calset.npz_path, calset.json_path, dataclasses.replace(calset.record, size=2))
        fake.check_compatible(calset.image_size, calset.classes)


def test_build_refuses_a_size_below_the_number_of_classes(export_run_dir, tmp_path):
    with pytest.raises(EdgexferError, match="cannot hold the 3 classes"):
        build_calibration_set(export_run_dir, tmp_path, size=2)
    assert not list(tmp_path.iterdir())


def test_a_changed_or_damaged_set_is_refused(calset, tmp_path):
    npz = tmp_path / calset.npz_path.name
    shutil.copy(calset.npz_path, npz)
    shutil.copy(calset.json_path, tmp_path)
    with open(npz, "r+b") as f:
        f.seek(-100, 2)
        f.write(b"\xff" * 10)
    with pytest.raises(EdgexferError, match="does not match the sha256"):
        load_calibration_set(npz)
    (tmp_path / calset.json_path.name).unlink()
    with pytest.raises(EdgexferError, match="has no record"):
        load_calibration_set(npz)
    with pytest.raises(EdgexferError, match="does not exist"):
        load_calibration_set(tmp_path / "absent.npz")


def test_cli_build_and_show(export_run_dir, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["calibration", "build", str(export_run_dir), "--out", str(tmp_path), "--size", "12"])
    assert result.exit_code == 0, result.output
    (npz,) = tmp_path.glob("cal-*-12-seed0.npz")
    assert npz.with_suffix(".json").is_file()
    shown = runner.invoke(cli, ["calibration", "show", str(npz.with_suffix(".json"))])
    assert shown.exit_code == 0, shown.output
    assert "12 at" in shown.output and export_run_dir.name in shown.output and "train split" in shown.output


def test_cli_errors_are_one_line_exit_2(tmp_path, export_run_dir):
    runner = CliRunner()
    result = runner.invoke(cli, ["calibration", "show", str(tmp_path / "nope.npz")])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    result = runner.invoke(cli, ["calibration", "build", str(tmp_path / "no-run")])
    assert result.exit_code == 2 and "does not exist" in result.output
    result = runner.invoke(cli, ["calibration", "build", str(export_run_dir), "--out", str(tmp_path), "--size", "1"])
    assert result.exit_code == 2 and "cannot hold" in result.output


def test_sets_and_export_help_need_no_tensorflow(calset):
    """A Jetson without TensorFlow can inspect and read a copied set, and `edgexfer export --help` loads."""
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from edgexfer.cli import main\n"
        "from edgexfer.data.calibration import load_calibration_set\n"
        f"cal = load_calibration_set({str(calset.npz_path)!r})\n"
        "assert sum(len(x) for x, _ in cal.iter_batches(8)) == cal.size\n"
        "for args in (['calibration', 'show', str(cal.npz_path)], ['export', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code in (0, None), exc.code\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "images:" in proc.stdout and "--calibration-method" in proc.stdout

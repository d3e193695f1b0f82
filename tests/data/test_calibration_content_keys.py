"""Calibration sets are keyed by content (the run's split fingerprint, image size, images held, seed), never by
a folder name, and a set holding one of the run's validation or test images is refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edgexfer.contracts.run import load_run
from edgexfer.data.calibration import (
    build_calibration_set,
    check_disjoint,
    find_or_build,
    load_calibration_set,
)
from edgexfer.errors import EdgexferError
from edgexfer.io import sha256_file, write_json

CLASSES = ["normal", "pneumonia"]
SIZE = 16


def _data(root: Path, per_class: int = 15) -> Path:
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(per_class):
            img = rng.integers(0, 255, size=(SIZE, SIZE, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / name / f"{name}_{i:02d}.png")
    return root


def fake_run(run_dir: Path, data: Path, seed: int) -> Path:
    """A run folder with the records an export reads (no model needed to draw a calibration set)."""
    from edgexfer.data.sources import discover
    from edgexfer.data.splits import make_split

    run_dir.mkdir(parents=True)
    make_split(discover(data), (0.6, 0.2, 0.2), seed=seed).save(run_dir / "split.json")
    write_json(run_dir / "labels.json", CLASSES)
    write_json(run_dir / "run.json", {"schema": "edgexfer.run/1", "backbone": "tinycnn", "image_size": [SIZE, SIZE],
                                      "classes": CLASSES, "model_sha256": "0" * 64,
                                      "split_sha256": sha256_file(run_dir / "split.json")})
    return run_dir


def _refs(run_dir: Path, part: str) -> set[str]:
    return {ref for ref, _ in json.loads((run_dir / "split.json").read_text())["splits"][part]}


def test_two_runs_with_the_same_folder_name_never_share_a_set(tmp_path):
    data = _data(tmp_path / "data")
    first = fake_run(tmp_path / "a" / "cxr", data, seed=1)
    second = fake_run(tmp_path / "b" / "cxr", data, seed=2)
    cal = tmp_path / "calibration"
    set_a, built_a = find_or_build(cal, first, 12, 0)
    set_b, built_b = find_or_build(cal, second, 12, 0)
    assert built_a and built_b, "the second run must not reuse the first run's set"
    assert set_a.id != set_b.id and set_a.npz_path != set_b.npz_path
    assert "cxr" not in set_a.id
    # each set is drawn from its own run's train part, none of its own val/test images
    for run, calset in ((first, set_a), (second, set_b)):
        assert set(calset.manifest["refs"]) <= _refs(run, "train")
        assert not set(calset.manifest["refs"]) & (_refs(run, "val") | _refs(run, "test"))
    # the same run again reuses its own set; the name holds the images it really has
    again, built = find_or_build(cal, first, 12, 0)
    assert not built and again.npz_path == set_a.npz_path
    few, _ = find_or_build(cal, first, 500, 0)  # train holds 18 images: the name says 18, not 500
    assert few.size == 18 and few.npz_path.name.endswith("-18-seed0.npz")


def test_a_set_holding_a_test_image_is_refused(tmp_path):
    data = _data(tmp_path / "data")
    first = fake_run(tmp_path / "a" / "cxr", data, seed=1)
    second = fake_run(tmp_path / "b" / "cxr", data, seed=2)
    path = build_calibration_set(first, tmp_path / "cal", size=18, seed=0)  # all of the first run's train part
    leaked = set(json.loads(path.with_suffix(".json").read_text())["refs"]) & (_refs(second, "val") | _refs(second, "test"))
    assert leaked  # different seeds, different splits: the first run's train images judge the second
    with pytest.raises(EdgexferError, match=r"which is in the (val|test) split of run cxr"):
        find_or_build(path, second, 18, 0)
    # the same set is fine for the run it was drawn from
    calset, built = find_or_build(path, first, 18, 0)
    assert not built and calset.size == 18


def test_a_copied_test_image_under_another_name_is_found_by_its_pixels(tmp_path):
    data = _data(tmp_path / "data")
    run = fake_run(tmp_path / "run", data, seed=1)
    test_ref = sorted(_refs(run, "test"))[0]
    # another data set: the run's train images plus one of its test images under a new name
    other = tmp_path / "other"
    for ref in sorted(_refs(run, "train")):
        (other / Path(ref).parent).mkdir(parents=True, exist_ok=True)
        (other / ref).write_bytes((data / ref).read_bytes())
    (other / Path(test_ref).parent / "renamed.png").write_bytes((data / test_ref).read_bytes())
    renamed = (Path(test_ref).parent / "renamed.png").as_posix()
    donor = next(d for seed in range(50)
                 if renamed in _refs(d := fake_run(tmp_path / f"donor{seed}", other, seed=seed), "train"))
    # a set of the donor run's whole train part: it holds the renamed copy
    path = build_calibration_set(donor, tmp_path / "cal", size=1000, seed=0)
    assert renamed in json.loads(path.with_suffix(".json").read_text())["refs"]
    with pytest.raises(EdgexferError, match="calibrating on it would leak"):
        check_disjoint(load_calibration_set(path), load_run(run))


def test_a_foreign_set_without_pixel_hashes_is_refused(tmp_path):
    data = _data(tmp_path / "data")
    first = fake_run(tmp_path / "a" / "cxr", data, seed=1)
    second = fake_run(tmp_path / "b" / "cxr", data, seed=2)
    path = build_calibration_set(first, tmp_path / "cal", size=6, seed=0)
    record = json.loads(path.with_suffix(".json").read_text())
    del record["pixel_sha1"], record["refs"]  # as a set from an older version
    write_json(path.with_suffix(".json"), record)
    with pytest.raises(EdgexferError, match="records no image hashes"):
        find_or_build(path, second, 6, 0)
    assert find_or_build(path, first, 6, 0)[0].size == 6  # drawn from this very split: fine


def test_export_refuses_a_set_with_a_test_image_in_one_line(export_run_dir, tmp_path):
    from click.testing import CliRunner

    from edgexfer.cli import cli
    from edgexfer.data.splits import Split, make_split

    split = Split.load(export_run_dir / "split.json")
    record = json.loads((export_run_dir / "run.json").read_text())
    donor = tmp_path / "donor"
    donor.mkdir()
    make_split(split.source, (0.6, 0.2, 0.2), seed=123).save(donor / "split.json")
    write_json(donor / "labels.json", split.classes)
    write_json(donor / "run.json", {**record, "split_sha256": sha256_file(donor / "split.json")})
    path = build_calibration_set(donor, tmp_path / "cal", size=10_000, seed=0)  # the donor's whole train part
    out = tmp_path / "exported" / "tiny"
    result = CliRunner().invoke(cli, ["export", str(export_run_dir), "--int8", "--calibration", str(path),
                                      "--out", str(out), "--quiet"])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "calibrating on it would leak" in lines[0]
    assert not out.exists() and not list(out.parent.iterdir())

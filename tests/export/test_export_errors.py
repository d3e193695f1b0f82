"""Bad input to `edgexfer export`: one clear line, exit 2, and no partial file in EXPORT_DIR."""

from __future__ import annotations

import errno
import json
import shutil
import zipfile

import numpy as np
import pytest
from click.testing import CliRunner

from edgexfer.cli import cli
from edgexfer.io import sha256_file, write_json


def _export(*args):
    result = CliRunner().invoke(cli, ["export", *map(str, args), "--quiet"])
    return result


def _one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgexfer: error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def run_copy(export_run_dir, tmp_path):
    dst = tmp_path / "run"
    shutil.copytree(export_run_dir, dst, ignore=shutil.ignore_patterns("checkpoints", "backup", "plots"))
    return dst


def _no_export(out):
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(f".{out.name}")]


def test_missing_run_directory(tmp_path):
    _one_line_error(_export(tmp_path / "absent", "--out", tmp_path / "out"), "does not exist")
    _no_export(tmp_path / "out")


def test_folder_without_run_record(tmp_path):
    (tmp_path / "half").mkdir()
    _one_line_error(_export(tmp_path / "half", "--out", tmp_path / "out"), "no run.json")


def test_corrupt_run_record(run_copy, tmp_path):
    (run_copy / "run.json").write_text("{not json")
    _one_line_error(_export(run_copy, "--out", tmp_path / "out"), "not valid JSON")
    _no_export(tmp_path / "out")


def test_missing_model(run_copy, tmp_path):
    (run_copy / "model.keras").unlink()
    _one_line_error(_export(run_copy, "--out", tmp_path / "out"), "model file", "missing")


def test_model_whose_hash_differs_from_the_run_record(run_copy, tmp_path):
    with open(run_copy / "model.keras", "ab") as f:
        f.write(b"\0")
    _one_line_error(_export(run_copy, "--out", tmp_path / "out"), "sha256", "run.json")
    _no_export(tmp_path / "out")


def test_corrupt_model_with_a_matching_record(run_copy, tmp_path):
    (run_copy / "model.keras").write_bytes(b"this is not a keras zip")
    record = json.loads((run_copy / "run.json").read_text())
    record["model_sha256"] = sha256_file(run_copy / "model.keras")
    write_json(run_copy / "run.json", record)
    _one_line_error(_export(run_copy, "--out", tmp_path / "out"), "cannot load Keras model")
    _no_export(tmp_path / "out")


@pytest.mark.parametrize("option,value,message", [
    ("--calibration-method", "kl", "'kl' is not one of 'auto', 'entropy', 'minmax', 'percentile'"),
    ("--target", "jetson", "'jetson' is not one of 'cpu', 'tensorrt'"),
])
def test_unknown_method_or_target(export_run_dir, tmp_path, option, value, message):
    # click.Choice built from the known values: click's own usage error, exit 2, before any work
    result = _export(export_run_dir, "--int8", option, value, "--out", tmp_path / "out")
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    _no_export(tmp_path / "out")
    shown = CliRunner().invoke(cli, ["export", "--help"])
    assert "[cpu|tensorrt]" in shown.output and "[auto|entropy|minmax|percentile]" in shown.output


def _write_set(path, images, labels, classes):
    """A calibration set file pair as `build_calibration_set` writes it."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, array in (("images", images), ("labels", labels)):
            with zf.open(f"{name}.npy", "w") as member:
                np.lib.format.write_array(member, array)
    write_json(path.with_suffix(".json"), {
        "schema": "edgexfer.calibration/1", "id": path.stem, "source_run": {"name": "other"}, "split": "train",
        "classes": classes, "class_counts": {}, "image_size": list(images.shape[1:3]), "seed": 0,
        "size": len(images), "sha256": sha256_file(path)})
    return path


def _classes(run_dir):
    return json.loads((run_dir / "labels.json").read_text())


def _size(run_dir):
    return json.loads((run_dir / "run.json").read_text())["image_size"]


def test_calibration_set_for_another_image_size(export_run_dir, tmp_path):
    h, w = _size(export_run_dir)
    cal = _write_set(tmp_path / "big.npz", np.zeros((6, h * 2, w * 2, 3), np.uint8), np.arange(6) % 3,
                     _classes(export_run_dir))
    line = _one_line_error(_export(export_run_dir, "--int8", "--calibration", cal, "--out", tmp_path / "out"),
                           "the model takes")
    assert "calibration build" in line
    _no_export(tmp_path / "out")


def test_calibration_set_for_another_class_list(export_run_dir, tmp_path):
    h, w = _size(export_run_dir)
    cal = _write_set(tmp_path / "pets.npz", np.zeros((6, h, w, 3), np.uint8), np.arange(6) % 3, ["cat", "dog", "emu"])
    _one_line_error(_export(export_run_dir, "--int8", "--calibration", cal, "--out", tmp_path / "out"), "drawn for classes")


def test_calibration_set_smaller_than_the_number_of_classes(export_run_dir, tmp_path):
    h, w = _size(export_run_dir)
    cal = _write_set(tmp_path / "tiny.npz", np.zeros((2, h, w, 3), np.uint8), np.arange(2), _classes(export_run_dir))
    _one_line_error(_export(export_run_dir, "--int8", "--calibration", cal, "--out", tmp_path / "out"), "fewer than the")
    _one_line_error(_export(export_run_dir, "--int8", "--calibration-size", "2", "--calibration", tmp_path / "cal",
                            "--out", tmp_path / "out"), "cannot hold")


def test_engine_without_tensorrt_writes_the_onnx_then_exits_2(export_run_dir, tmp_path, monkeypatch):
    from edgexfer.export import tensorrt

    monkeypatch.setattr(tensorrt, "engine_support", lambda: (False, "TensorRT is not installed (test)"))
    out = tmp_path / "out"
    result = _export(export_run_dir, "--engine", "--out", out)
    assert result.exit_code == 2
    summary, error = result.output.strip().splitlines()  # the artifact written, then the one-line error
    assert summary.startswith("fp32") and error.startswith("edgexfer: error: --engine")
    assert "TensorRT is not installed" in error and str(out) in error
    manifest = json.loads((out / "manifest.json").read_text())
    assert [a["name"] for a in manifest["artifacts"]] == ["fp32"]
    assert not list(out.glob("*.engine"))


def test_write_failure_leaves_no_partial_export(export_run_dir, tiny_export, tmp_path, monkeypatch):
    import onnx

    real_save = onnx.save

    def disk_full_on_fp16(model, path, *args, **kwargs):
        if "fp16" in str(path):
            with open(path, "wb") as f:
                f.write(b"half a model")  # what a full disk leaves behind
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(model, path, *args, **kwargs)

    out = tmp_path / "out"
    shutil.copytree(tiny_export, out)  # an earlier, good export of the same run (the session's, not made again)
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    monkeypatch.setattr(onnx, "save", disk_full_on_fp16)
    _one_line_error(_export(export_run_dir, "--fp16", "--out", out), "cannot write", "No space left")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the earlier export is untouched
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left


def test_out_that_is_a_file_or_a_foreign_folder(export_run_dir, tmp_path):
    (tmp_path / "file").write_text("x")
    _one_line_error(_export(export_run_dir, "--out", tmp_path / "file"), "is a file")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    _one_line_error(_export(export_run_dir, "--out", foreign), "holds no edgexfer export manifest")
    assert [p.name for p in foreign.iterdir()] == ["notes.txt"]


def test_cli_success_prints_one_line_per_artifact(export_run_dir, tmp_path):
    result = _export(export_run_dir, "--out", tmp_path / "ok")
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fp32") and "agreement 100.0%" in lines[0]

"""Exit codes and one-line errors (issue 20, "Runaway resources and wrong exit codes")."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from edgexfer.cli import cli


def _ctrl_c(*_args, **_kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("command,target", [
    (["predict", "exported", "a.png"], "edgexfer.predict.predict_inputs"),
    (["bench", "exported"], "edgexfer.evaluate.bench.run_bench"),
    (["finetune", "--data", "demo", "--out", "run", "--backbone", "tinycnn"], "edgexfer.train.finetune"),
    (["compare", "--data", "demo", "--backbones", "tinycnn", "--out", "study"], "edgexfer.studies.compare.run_compare"),
], ids=["predict", "bench", "finetune", "compare"])
def test_ctrl_c_exits_130_in_one_line(monkeypatch, tmp_path, command, target):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(target, _ctrl_c)
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 130, (result.output, result.exception)
    assert result.stderr.strip().count("\n") == 0 and "interrupted (Ctrl-C)" in result.stderr
    assert "Aborted" not in result.output


@pytest.mark.parametrize("command", [["export"], ["bench"], ["predict", "--out", "p.csv"], ["package", "--out", "repo"]])
def test_a_file_where_a_folder_belongs_is_called_a_file(tmp_path, monkeypatch, command):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile.txt").write_text("not a folder")
    args = [command[0], "afile.txt", *(["afile.txt"] if command[0] == "predict" else []), *command[1:]]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2 and "afile.txt is a file, not a folder" in result.stderr, result.output
    assert "does not exist" not in result.stderr


@pytest.mark.parametrize("option", ["--learning-rate", "--fine-tune-learning-rate", "--dropout"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_non_finite_numbers_are_refused_before_anything_is_written(tmp_path, option, value):
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["finetune", "--data", "demo", "--backbone", "tinycnn", "--out", str(out),
                                      option, value])
    assert result.exit_code == 2 and option.lstrip("-").replace("-", "_") in result.stderr, result.output
    assert not out.exists() and not (tmp_path / "demo").exists()


def test_non_finite_numbers_in_a_config_file_are_refused(tmp_path):
    config = tmp_path / "run.json"
    config.write_text('{"data": "demo", "backbone": "tinycnn", "out": "%s", "learning_rate": NaN}' % (tmp_path / "r"))
    result = CliRunner().invoke(cli, ["finetune", "--config", str(config)])
    assert result.exit_code == 2 and "learning_rate" in result.stderr, result.output
    assert not (tmp_path / "r").exists()


def test_package_batch_limits_are_the_ones_triton_parses(handmade_export, tmp_path):
    pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="the serve extra parses config.pbtxt")
    from google.protobuf import text_format

    from edgexfer.serving.triton import MAX_BATCH_SIZE

    def package(name, *args):
        return CliRunner().invoke(cli, ["package", str(handmade_export), "--out", str(tmp_path / "repo"),
                                        "--name", name, "--precision", "fp32", *args])

    assert package("edge", "--max-batch-size", str(MAX_BATCH_SIZE)).exit_code == 0
    config = text_format.Parse((tmp_path / "repo" / "edge" / "config.pbtxt").read_text(), pb2.ModelConfig())
    assert config.max_batch_size == MAX_BATCH_SIZE
    for value in (str(MAX_BATCH_SIZE + 1), "99999999999999999999"):
        result = package("over", "--max-batch-size", value)
        assert result.exit_code == 2 and "int32" in result.stderr, result.output
    over = package("late", "--max-queue-delay-us", str(2**64))
    assert over.exit_code == 2 and "uint64" in over.stderr
    assert sorted(p.name for p in (tmp_path / "repo").iterdir()) == ["edge"]


def test_numbers_beyond_the_machine_are_refused_before_anything_is_written(handmade_export, tmp_path):
    from edgexfer.limits import max_image_side, memory_bytes, usable_cores

    too_many = str(usable_cores() + 1)
    image = str(handmade_export.parent / "data" / "covid" / "covid_000.png")
    side = 32  # the hand-made export's input
    huge_batch = str(memory_bytes() // (side * side * 3 * 4) + 1)

    def refused(args, words):
        result = CliRunner().invoke(cli, args)
        assert result.exit_code == 2 and words in result.stderr, (args, result.output)
        assert result.stderr.strip().count("\n") == 0

    refused(["predict", str(handmade_export), image, "--threads", too_many, "--out", str(tmp_path / "p.csv")],
            "the cores this process may use")
    refused(["bench", str(handmade_export), "--threads", too_many, "--out", str(tmp_path / "b")], "cores")
    refused(["bench", str(handmade_export), "--batch-sizes", f"1,{huge_batch}", "--out", str(tmp_path / "b")],
            "for its input alone")
    refused(["finetune", "--data", "demo", "--backbone", "tinycnn", "--out", str(tmp_path / "run"),
             "--image-size", "99999999"], "Pillow reads back")
    refused(["finetune", "--data", "demo", "--backbone", "tinycnn", "--out", str(tmp_path / "run"),
             "--image-size", "64", "--batch-size", "2147483647"], "for its input alone")
    refused(["data", "demo", str(tmp_path / "demo"), "--size", str(max_image_side() + 1)], "Pillow reads back")
    assert sorted(tmp_path.iterdir()) == []


def _object_npz(path):
    import numpy as np

    images = np.empty(4, dtype=object)
    images[:] = [np.zeros((8, 8), np.uint8)] * 4
    labels = np.array([0, 1, 0, 1])
    np.savez(path, train_images=images, train_labels=labels, test_images=images, test_labels=labels)
    return path


def _one_line_2(result, words):
    assert result.exit_code == 2 and words in result.stderr, result.output
    assert result.stderr.strip().count("\n") == 0 and "Traceback" not in result.output


def test_an_npz_of_object_arrays_is_one_line(handmade_export, tmp_path):
    npz = _object_npz(tmp_path / "objects.npz")
    _one_line_2(CliRunner().invoke(cli, ["finetune", "--data", str(npz), "--backbone", "tinycnn",
                                         "--out", str(tmp_path / "run")]), "object arrays")
    _one_line_2(CliRunner().invoke(cli, ["bench", str(handmade_export), "--data", str(npz),
                                         "--runtimes", "ort-cpu", "--out", str(tmp_path / "bench")]), "object arrays")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["objects.npz"]


def test_predict_says_the_output_cannot_be_written_before_predicting(handmade_export, tmp_path, monkeypatch):
    import tempfile

    import edgexfer.predict.command

    class NotLoaded:
        def __init__(self, *args, **kwargs):
            raise AssertionError("the model was loaded although --out cannot be written")

    monkeypatch.setattr(edgexfer.predict.command, "Predictor", NotLoaded)
    image = str(handmade_export.parent / "data" / "covid" / "covid_000.png")
    afile = tmp_path / "afile"
    afile.write_text("x")
    _one_line_2(CliRunner().invoke(cli, ["predict", str(handmade_export), image, "--out", str(afile / "p.csv")]),
                "is not a folder")
    real = tempfile.mkstemp

    def read_only(*args, dir=None, **kwargs):  # what a read-only folder answers (root is never refused by modes)
        if dir is not None and Path(dir) == tmp_path:
            raise PermissionError(13, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", read_only)
    _one_line_2(CliRunner().invoke(cli, ["predict", str(handmade_export), image, "--out", str(tmp_path / "p.csv")]),
                "Permission denied")


def test_package_on_a_full_disk_is_one_line_and_leaves_nothing(handmade_export, tmp_path, monkeypatch):
    import errno
    import shutil

    def full(*_args, **_kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", full)
    repo = tmp_path / "repo"
    _one_line_2(CliRunner().invoke(cli, ["package", str(handmade_export), "--out", str(repo), "--precision", "fp32"]),
                "No space left on device")
    assert not repo.exists() or list(repo.iterdir()) == []


@pytest.mark.parametrize("damage", ["truncated", "empty", "not json"])
def test_a_damaged_resume_point_or_state_says_what_and_how_to_start_over(tmp_path, damage):
    import numpy as np

    from edgexfer.errors import EdgexferError
    from edgexfer.train.callbacks import RESUME_FILE, STATE_FILE, RunState, read_resume_point

    checkpoints = tmp_path / "run" / "checkpoints"
    checkpoints.mkdir(parents=True)
    np.savez(checkpoints / RESUME_FILE, meta=np.asarray('{"stage": "phase1", "epochs_done": 2}'),
             w0000=np.zeros(4096, np.float32))
    (checkpoints / STATE_FILE).write_text('{"completed": ["phase1"], "best": null, "history": []}')
    assert read_resume_point(checkpoints / RESUME_FILE)["epochs_done"] == 2  # intact files read back
    assert RunState(checkpoints, "val_loss").completed == ["phase1"]
    for name in (RESUME_FILE, STATE_FILE):
        path = checkpoints / name
        data = path.read_bytes()
        path.write_bytes({"truncated": data[: len(data) // 2], "empty": b"", "not json": b"[1, 2"}[damage])
    with pytest.raises(EdgexferError, match=rf"{RESUME_FILE} is damaged.*delete .*checkpoints to start"):
        read_resume_point(checkpoints / RESUME_FILE)
    with pytest.raises(EdgexferError, match=rf"{STATE_FILE} is damaged.*delete .*checkpoints to start"):
        RunState(checkpoints, "val_loss")


def test_explain_on_a_model_with_a_lambda_layer_is_one_line(tmp_path):
    keras = pytest.importorskip("keras")
    import json

    from edgexfer.io import sha256_file

    run = tmp_path / "run"
    run.mkdir()
    inputs = keras.Input((8, 8, 3))
    x = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    outputs = keras.layers.Dense(2, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(run / "model.keras")
    (run / "run.json").write_text(json.dumps({"schema": "edgexfer.run/1", "backbone": "custom", "image_size": [8, 8],
                                              "classes": ["a", "b"], "model_sha256": sha256_file(run / "model.keras")}))
    image = tmp_path / "x.png"
    from PIL import Image

    Image.new("RGB", (8, 8)).save(image)
    result = CliRunner().invoke(cli, ["explain", str(run), str(image), "--out", str(tmp_path / "overlays")])
    _one_line_2(result, "holds a Lambda layer")
    assert not (tmp_path / "overlays").exists()


_CRASH_WHILE_HELD = """
import os, sys
sys.path.insert(0, sys.argv[1])
from edgexfer.logs import held_stderr
with held_stderr():
    os.write(2, b"I0000 00:00:1700000000.000000   123 port.cc:153] oneDNN custom operations are on\\n")
    os.write(2, b"F0000 fatal: a check failed in the native import\\n")
    os.abort()
"""


def test_a_native_crash_while_tensorflow_is_imported_still_shows_its_output():
    import signal
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    child = subprocess.run([sys.executable, "-c", _CRASH_WHILE_HELD, str(root)], capture_output=True, text=True,
                           timeout=60)
    assert child.returncode == -signal.SIGABRT
    assert "a check failed in the native import" in child.stderr  # the crash's own words reach the user
    assert "oneDNN custom operations" not in child.stderr  # the notices are still held back

"""`edgexfer finetune` and `edgexfer backbones` from the command line: a demo run and every bad input."""

import json

import pytest
from click.testing import CliRunner

from edgexfer.cli import cli

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _assert_one_line_error(result, *fragments):
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgexfer: error:"), result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output


def test_backbones_lists_the_registry_with_sizes_and_parameters():
    result = _run("backbones")
    assert result.exit_code == 0
    assert "resnet50" in result.output and "224x224" in result.output and "23.59M" in result.output
    rows = json.loads(_run("backbones", "--json").output)
    assert {r["name"] for r in rows} >= {"vgg16", "vgg19", "resnet50", "resnet152v2", "inceptionv3", "efficientnetb0",
                                         "densenet121", "mobilenetv2", "mobilenetv3small", "mobilenetv3large", "tinycnn"}


def test_demo_run_from_a_toml_config(tmp_path):
    config = tmp_path / "finetune.toml"
    config.write_text('backbone = "tinycnn"\nimage-size = 48\nepochs = 1\nfine_tune_epochs = 1\nbatch_size = 16\n'
                      "augment = false\ndemo_per_class = 10\ndemo_size = 48\nverbose = 0\n")
    out = tmp_path / "run"
    result = _run("finetune", "--data", "demo", "--out", out, "--config", config, "--seed", 3)
    assert result.exit_code == 0, result.output
    assert "phase 1" in result.output and "phase 2" in result.output
    assert "accuracy" in result.output and "pneumonia" in result.output  # the metrics table
    saved = json.loads((out / "config.json").read_text())
    assert saved["seed"] == 3 and saved["epochs"] == 1 and saved["image_size"] == 48  # file + command line
    assert (out / "data" / "demo").is_dir() and (out / "run.json").is_file()


def test_missing_data_path(tmp_path):
    _assert_one_line_error(_run("finetune", "--data", tmp_path / "nowhere", "--backbone", "tinycnn", "--out", tmp_path / "r"),
                           "does not exist")


def test_unknown_backbone_names_the_closest(tmp_path):
    _assert_one_line_error(_run("finetune", "--data", "demo", "--backbone", "mobilenet_v2", "--out", tmp_path / "r"),
                           "unknown backbone 'mobilenet_v2'", "mobilenetv2")


def test_image_size_below_the_minimum(tmp_path):
    _assert_one_line_error(_run("finetune", "--data", "demo", "--backbone", "inceptionv3", "--image-size", 64,
                                "--weights", "none", "--out", tmp_path / "r"), "below the minimum of 75")


def test_unreadable_config(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{epochs: 3")
    _assert_one_line_error(_run("finetune", "--config", bad), "is not valid JSON")
    _assert_one_line_error(_run("finetune", "--config", tmp_path / "absent.toml"), "does not exist")
    unknown = tmp_path / "unknown.json"
    unknown.write_text('{"data": "demo", "backbone": "tinycnn", "out": "x", "epoch": 3}')
    _assert_one_line_error(_run("finetune", "--config", unknown), "unknown fine-tune option 'epoch'", "epochs")


def test_weights_file_that_does_not_fit(demo_data_dir, tmp_path):
    from edgexfer.backbones import build_base, get_backbone

    path = tmp_path / "mobilenet.weights.h5"
    build_base(get_backbone("mobilenetv3small"), 32, "none").save_weights(path)
    out = tmp_path / "r"
    _assert_one_line_error(_run("finetune", "--data", demo_data_dir, "--backbone", "tinycnn", "--weights", path,
                                "--image-size", 48, "--out", out), "does not fit backbone tinycnn")
    assert not (out / "config.json").exists(), "a refused run leaves no run record behind"


def test_out_dir_holding_a_different_run(tiny_run, demo_data_dir):
    before = (tiny_run / "config.json").read_text()
    _assert_one_line_error(_run("finetune", "--data", demo_data_dir, "--backbone", "tinycnn", "--image-size", 48,
                                "--epochs", 7, "--out", tiny_run), "holds a different run")
    assert (tiny_run / "config.json").read_text() == before

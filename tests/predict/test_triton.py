"""`edgexfer package`: a Triton model repository whose config.pbtxt parses with Triton's own protobuf
definitions (the `tritonclient` package, `serve` extra) and whose model file runs like the export's."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_handmade import CLASSES, FAST, SIZE, break_int8

from edgexfer.cli import cli
from edgexfer.io import sha256_file

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                       reason="tritonclient (the serve extra) is not installed")


def _parse(path):
    from google.protobuf import text_format

    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)  # strict: an unknown field or a bad value raises
    return config


def test_package_writes_a_triton_repository_that_parses_back(handmade_export, tmp_path):
    repo = tmp_path / "models"
    result = CliRunner().invoke(cli, ["package", str(handmade_export), "--out", str(repo), "--precision", "fp32",
                                      "--max-batch-size", "16", "--instance-kind", "cpu"])
    assert result.exit_code == 0, result.output
    assert f"tritonserver --model-repository={repo.absolute()}" in result.output
    folder = repo / "tiny"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "1/model.onnx", "config.pbtxt", "labels.txt"]
    manifest = json.loads((handmade_export / "manifest.json").read_text())
    fp32 = next(a for a in manifest["artifacts"] if a["name"] == "fp32")
    assert sha256_file(folder / "1" / "model.onnx") == fp32["sha256"]
    assert (folder / "labels.txt").read_text().splitlines() == CLASSES

    config = _parse(folder / "config.pbtxt")
    assert config.name == "tiny" and config.platform == "onnxruntime_onnx"
    assert config.max_batch_size == 16
    (inp,), (out,) = config.input, config.output
    assert inp.name == "image" and list(inp.dims) == [SIZE, SIZE, 3]
    assert inp.data_type == model_config_pb2.TYPE_FP32 and inp.format == model_config_pb2.ModelInput.FORMAT_NHWC
    assert out.name == "probabilities" and list(out.dims) == [len(CLASSES)] and out.label_filename == "labels.txt"
    assert config.HasField("dynamic_batching") and config.dynamic_batching.max_queue_delay_microseconds == 100
    assert [g.kind for g in config.instance_group] == [model_config_pb2.ModelInstanceGroup.KIND_CPU]

    # the names and dims in the config are the graph's own: ONNX Runtime agrees
    import onnxruntime as ort

    session = ort.InferenceSession(str(folder / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == inp.name and session.get_outputs()[0].name == out.name
    batch = np.zeros((config.max_batch_size, *inp.dims), dtype=np.float32)
    assert session.run([out.name], {inp.name: batch})[0].shape == (16, len(CLASSES))


def test_package_follows_the_gate_and_refuses_bad_input(export_copy, tmp_path):
    break_int8(export_copy)
    bench = export_copy.parent / "bench"
    assert CliRunner().invoke(cli, ["bench", str(export_copy), "--out", str(bench), *FAST]).exit_code == 1
    repo = tmp_path / "models"

    def run(*args):
        return CliRunner().invoke(cli, ["package", str(export_copy), "--out", str(repo), *args])

    refused = run("--precision", "int8")
    assert refused.exit_code == 2 and "allow-failed" in refused.stderr and not repo.exists()
    auto = run("--name", "chest")
    assert auto.exit_code == 0, auto.output
    config = _parse(repo / "chest" / "config.pbtxt")
    results = json.loads((bench / "results.json").read_text())
    passing = [r for r in results["results"] if r["gate"]["passed"]]
    fastest = min(passing, key=lambda r: r["latency_ms"]["1"]["p50"])
    manifest = json.loads((export_copy / "manifest.json").read_text())
    chosen = next(a for a in manifest["artifacts"] if a["name"] == fastest["artifact"])
    assert sha256_file(repo / "chest" / "1" / "model.onnx") == chosen["sha256"]
    assert config.name == "chest" and not config.instance_group  # auto: Triton decides GPU or CPU

    again = run("--name", "chest")
    assert again.exit_code == 2 and "--overwrite" in again.stderr
    assert run("--name", "chest", "--overwrite", "--precision", "int8", "--allow-failed").exit_code == 0
    assert sha256_file(repo / "chest" / "1" / "model.onnx") == sha256_file(export_copy / "model_int8_cpu.onnx")
    assert sorted(p.name for p in repo.iterdir()) == ["chest"]  # no staging or old folders left behind

    bad_name = run("--name", "../escape")
    assert bad_name.exit_code == 2 and "portable folder name" in bad_name.stderr
    (export_copy / "model_fp32.onnx").write_bytes(b"tampered")
    tampered = run("--name", "other")
    assert tampered.exit_code == 2 and "does not match the manifest" in tampered.stderr
    assert not (repo / "other").exists()


@pytest.mark.parametrize("platform,kind,accelerator", [("tensorrt_plan", "gpu", False),
                                                       ("onnxruntime_onnx", "auto", True)])
def test_engine_and_tensorrt_accelerator_configs_parse(platform, kind, accelerator):
    from google.protobuf import text_format

    from edgexfer.serving.triton import TensorSpec, config_text

    text = config_text("m", platform, TensorSpec("image", "TYPE_FP32", (64, 64, 3)),
                       TensorSpec("probabilities", "TYPE_FP32", (2,)), 8, 50, kind, accelerator, "a comment\nline two")
    config = model_config_pb2.ModelConfig()
    text_format.Parse(text, config)
    assert config.platform == platform and config.max_batch_size == 8
    assert config.dynamic_batching.max_queue_delay_microseconds == 50
    accelerators = [a.name for a in config.optimization.execution_accelerators.gpu_execution_accelerator]
    assert accelerators == (["tensorrt"] if accelerator else [])
    assert [g.kind for g in config.instance_group] == (
        [model_config_pb2.ModelInstanceGroup.KIND_GPU] if kind == "gpu" else [])


def test_the_demos_export_folder_exported_is_named_after_the_folder_above(handmade_export, tmp_path):
    from edgexfer.evaluate.exported import load_export
    from edgexfer.serving.triton import default_model_name

    export = load_export(handmade_export)
    assert default_model_name(export) == export.name == "tiny"
    demo = replace(export, path=tmp_path / "demo" / "exported", manifest={**export.manifest, "name": "exported"})
    assert default_model_name(demo) == "demo"

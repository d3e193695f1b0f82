"""NNCF as a second INT8 quantizer (`edgexfer.export.int8.nncf_quantize`): ``--quantizer nncf`` writes NNCF's Q/DQ
file, ``auto`` judges ours and NNCF's on the same images and keeps the more accurate (ours on ties), a missing NNCF
is one line, and the ``tensorrt`` target never gets an NNCF file."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner

import edgexfer.export.int8.fallback as fallback
import edgexfer.export.int8.stage as stage
from edgexfer.cli import cli
from edgexfer.contracts.manifest import Int8Quantizer
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.exported import load_export
from edgexfer.export import ExportConfig, export_run
from edgexfer.export.int8.agreement import Agreement
from edgexfer.export.int8.fallback import Candidate, FallbackResult
from edgexfer.export.pipeline import summary_lines
from edgexfer.export.tensorrt_rules import check_graph

nncf = pytest.importorskip("nncf", reason="nncf (the openvino extra) is not installed")


def _export(run_dir: Path, out: Path, calibration: Path, **options):
    options = {"int8_max_rounds": 0, **options}
    export_run(ExportConfig(run_dir=run_dir, out=out, int8=True, target="cpu", calibration=calibration,
                            calibration_size=64, progress=False, **options))
    return json.loads((out / "manifest.json").read_text())


def _int8(manifest) -> dict:
    return next(a for a in manifest["artifacts"] if a["name"] == "int8")


def test_nncf_quantizer_writes_nncf_s_qdq_file_recorded_in_the_manifest_and_openvino_runs_it(
        tmp_path, export_run_dir, tiny_export):
    manifest = _export(export_run_dir, tmp_path / "nncf", tiny_export.parent / "calibration", quantizer="nncf")
    int8 = _int8(manifest)
    quantizer = Int8Quantizer.from_artifact(int8)
    assert quantizer.name == "nncf" and quantizer.version == nncf.__version__
    assert quantizer.settings["preset"] == "performance" and quantizer.settings["subset_size"] == 64
    assert [c.quantizer for c in quantizer.candidates] == ["nncf"] and quantizer.candidates[0].kept
    assert quantizer.candidates[0].agreed == int8["parity"]["agreed"]
    assert manifest["options"]["quantizer"] == "nncf"
    assert any(line.startswith("int8") and "quantized by nncf" in line for line in summary_lines(manifest))
    # NNCF's own graph: its Q/DQ naming (ours are ORT's `<tensor>_QuantizeLinear`), int8 weights, no int32 bias
    model = onnx.load(tmp_path / "nncf" / int8["file"])
    quantize_nodes = [n.name for n in model.graph.node if n.op_type == "QuantizeLinear"]
    assert quantize_nodes and all(n.startswith("QuantizeLinear_") and n.endswith("_1") for n in quantize_nodes)
    assert {m.key: m.value for m in model.metadata_props}["edgexfer.int8_quantizer"] == "nncf"
    # the layer report is written for it (activation SQNR; no weight SQNR for NNCF's naming)
    report = json.loads((tmp_path / "nncf" / int8["layers"]["file"]).read_text())
    assert report["nodes"] and all(r["weight_sqnr_db"] is None for r in report["nodes"])
    # OpenVINO (ov-cpu) runs NNCF's file and agrees with ONNX Runtime on it
    pytest.importorskip("openvino")
    from edgexfer.runtime import RUNTIMES

    artifact = load_export(tmp_path / "nncf").artifact("int8")
    images = np.random.default_rng(0).integers(0, 256, size=(8, 48, 48, 3)).astype(np.uint8)
    with RUNTIMES["ort-cpu"].open(artifact, 1) as rt:
        ort = rt.predict(images)
    with RUNTIMES["ov-cpu"].open(artifact, 1) as rt:
        ov = rt.predict(images)
        assert "u8" in json.dumps(rt.execution.layer_precisions) or "i8" in json.dumps(rt.execution.layer_precisions)
    assert (ov.argmax(1) == ort.argmax(1)).mean() >= 7 / 8


@pytest.mark.parametrize("loser", ["nncf", "edgexfer"])
def test_auto_keeps_the_candidate_that_agrees_with_fp32_on_more_images(monkeypatch, tmp_path, export_run_dir,
                                                                      tiny_export, loser):
    """Make one quantizer's file demonstrably worse: its probabilities are rolled by one class on every judging
    image (its top-1 is then FP32's only where it was off by exactly that class). auto must keep the other one and
    say why."""
    real = fallback.predict_onnx

    def predictions(path, images, batch_size):
        probs = real(path, images, batch_size)
        if ("nncf" in Path(path).name) == (loser == "nncf"):
            probs = np.roll(probs, 1, axis=1)
        return probs

    monkeypatch.setattr(fallback, "predict_onnx", predictions)
    lines: list[str] = []
    monkeypatch.setattr("edgexfer.export.pipeline._printer", lambda enabled: lines.append)
    int8 = _int8(_export(export_run_dir, tmp_path / loser, tiny_export.parent / "calibration"))
    quantizer = Int8Quantizer.from_artifact(int8)
    winner = "edgexfer" if loser == "nncf" else "nncf"
    assert quantizer.name == winner
    assert {c.quantizer: c.kept for c in quantizer.candidates} == {winner: True, loser: False}
    assert [line for line in lines if "quantizer: kept" in line] == [quantizer.reason]
    assert quantizer.reason.startswith(f"INT8 (cpu) quantizer: kept {'NNCF' if winner == 'nncf' else 'ours'}")


def _run(name: str, agreed: int, n: int = 100) -> stage.QuantizerRun:
    agreement = Agreement(agreed, n, 0.1, (("val", agreed, n),))
    candidate = Candidate(Path(f"{name}.onnx"), name, (), {}, agreement)
    return stage.QuantizerRun(name, "1", FallbackResult(candidate, (), (), 0.98, 0, "test"))


def test_a_tie_keeps_our_file_and_says_it_is_the_more_reproducible():
    kept, line = stage.keep_more_accurate([_run("edgexfer", 97), _run("nncf", 97)], "cpu")
    assert kept.name == "edgexfer" and "as accurate" in line and "reproducible" in line
    kept, line = stage.keep_more_accurate([_run("edgexfer", 96), _run("nncf", 97)], "cpu")
    assert kept.name == "nncf" and "97 of 100" in line and "ours (edgexfer) 96 of 100" in line


def test_missing_nncf_is_one_line_and_nothing_written(monkeypatch, tmp_path, export_run_dir):
    monkeypatch.setitem(sys.modules, "nncf", None)  # `import nncf` raises ImportError; find_spec ValueError
    out = tmp_path / "refused"
    with pytest.raises(EdgexferError) as info:
        ExportConfig(run_dir=export_run_dir, out=out, int8=True, quantizer="nncf").validate()
    assert "pip install 'edgexfer[openvino]'" in str(info.value)
    result = CliRunner().invoke(cli, ["export", str(export_run_dir), "--int8", "--quantizer", "nncf",
                                       "--out", str(out)])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "needs NNCF" in lines[0] and "edgexfer[openvino]" in lines[0], result.output
    assert not out.exists()


def test_auto_without_nncf_uses_ours_and_says_so_once(monkeypatch):
    monkeypatch.setitem(sys.modules, "nncf", None)
    lines: list[str] = []
    config = ExportConfig(run_dir=Path("run"), int8=True)
    assert stage.quantizers_to_try(config, lines.append) == ("edgexfer",)
    assert len(lines) == 1 and "NNCF is not installed" in lines[0] and "edgexfer[openvino]" in lines[0]
    monkeypatch.delitem(sys.modules, "nncf")
    lines.clear()
    assert stage.quantizers_to_try(config, lines.append) == ("edgexfer", "nncf") and lines == []


def test_nncf_writes_the_same_bytes_twice(tmp_path, tiny_export):
    """What auto may keep must be reproducible: NNCF's file of the same graph and images, twice."""
    from edgexfer.export.int8.nncf_quantize import quantize_nncf
    from edgexfer.io import sha256_file

    images = [np.random.default_rng(0).integers(0, 256, size=(8, 48, 48, 3)).astype(np.float32)]
    for name in ("a.onnx", "b.onnx"):
        quantize_nncf(tiny_export / "model_fp32.onnx", tmp_path / name, images=images, subset_size=8, target="cpu")
    assert sha256_file(tmp_path / "a.onnx") == sha256_file(tmp_path / "b.onnx")


def test_tensorrt_target_never_gets_an_nncf_file(tmp_path, export_run_dir, tiny_export):
    # --quantizer nncf --target tensorrt: refused before anything
    out = tmp_path / "trt"
    result = CliRunner().invoke(cli, ["export", str(export_run_dir), "--int8", "--quantizer", "nncf", "--target",
                                       "tensorrt", "--out", str(out)])
    assert result.exit_code == 2 and "q-output-type" in result.output and not out.exists(), result.output
    assert len(result.output.strip().splitlines()) == 1, result.output  # refused before any step ran
    # auto with that target: ours only, and the line says why
    lines: list[str] = []
    assert stage.quantizers_to_try(ExportConfig(run_dir=export_run_dir, int8=True, target="tensorrt"),
                                   lines.append) == ("edgexfer",)
    assert len(lines) == 1 and "NNCF not tried" in lines[0] and "q-output-type" in lines[0]
    # the reason holds for the installed NNCF: its file of the tinycnn breaks TensorRT's rule (UINT8 activations),
    # whichever target device it is told (when a version can be told to sign them, this test says to revisit)
    fp32 = onnx.load(tiny_export / "model_fp32.onnx")
    images = [np.random.default_rng(i).integers(0, 256, size=(1, 48, 48, 3)).astype(np.float32) for i in range(4)]
    for device in (nncf.TargetDevice.ANY, nncf.TargetDevice.CPU, nncf.TargetDevice.GPU):
        quantized = nncf.quantize(fp32, nncf.Dataset(images, lambda x: {"image": x}), subset_size=4,
                                  preset=nncf.QuantizationPreset.PERFORMANCE, target_device=device)
        assert "q-output-type" in {v.rule.id for v in check_graph(quantized)}, device


def test_compare_passes_the_quantizer_to_every_export(monkeypatch, tmp_path, demo_data_dir):
    import edgexfer.studies.compare as compare

    seen = []

    def stop(config):
        seen.append(config.export_config.quantizer)
        raise EdgexferError("stopped by the test", "nothing to do")

    monkeypatch.setattr(compare, "run_compare", stop)
    result = CliRunner().invoke(cli, ["compare", "--data", str(demo_data_dir), "--backbones", "tinycnn", "--out",
                                      str(tmp_path / "study"), "--quantizer", "edgexfer"])
    assert result.exit_code == 2 and seen == ["edgexfer"], result.output


def test_nodes_kept_in_float_by_the_fallback_stay_float_in_nncf_s_file(tmp_path, tiny_export):
    """The fallback rounds pass their nodes to NNCF as its ignored scope: that convolution's weight stays float."""
    from edgexfer.export.int8.nncf_quantize import quantize_nncf
    from edgexfer.export.int8.quantize import preprocess

    prep = tmp_path / "prep.onnx"
    preprocess(tiny_export / "model_fp32.onnx", prep)
    convs = [n for n in onnx.load(prep).graph.node if n.op_type == "Conv"]
    assert len(convs) >= 2
    images = [np.random.default_rng(0).integers(0, 256, size=(4, 48, 48, 3)).astype(np.float32)]
    settings = quantize_nncf(prep, tmp_path / "q.onnx", images=images, subset_size=4, target="cpu",
                             nodes_to_exclude=[convs[0].name])
    assert settings["ignored_scope"] == [convs[0].name]
    model = onnx.load(tmp_path / "q.onnx")
    dequantized = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    weight_of = {n.name: n.input[1] for n in model.graph.node if n.op_type == "Conv"}
    assert weight_of[convs[0].name] not in dequantized  # kept float
    assert weight_of[convs[1].name] in dequantized  # the next one quantized

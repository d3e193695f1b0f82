"""The ov-cpu runtime (OpenVINO), the bf16 precision, and OpenVINO in predict, package and doctor.

Skipped, with the reason, where the openvino extra is not installed. The bf16 rows that run BF16 need a CPU
with native BF16 (AVX-512 BF16 or AMX); the "skipped with the reason" side is checked on any CPU by
making /proc/cpuinfo's flags say there is none.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_handmade import CLASSES, LOOSE_DROPS, SIZE

from edgexfer import versions
from edgexfer.cli import cli
from edgexfer.contracts.bench import load_results
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.bench import BenchConfig, run_bench
from edgexfer.evaluate.exported import load_export
from edgexfer.evaluate.gate import Thresholds
from edgexfer.predict import Predictor
from edgexfer.runtime import RUNTIMES, select_runtimes
from edgexfer.runtime.ov_runtime import device_available

pytest.importorskip("openvino", reason="openvino (the openvino extra) is not installed")

NATIVE_BF16, WHY_NOT_BF16 = versions.bf16_native()
needs_bf16 = pytest.mark.skipif(not NATIVE_BF16, reason=WHY_NOT_BF16)


def no_native_bf16(monkeypatch) -> None:
    """/proc/cpuinfo lists no BF16 instructions (an AMD Zen 3 or an Intel Skylake, say)."""
    real = versions._cpu_flags
    monkeypatch.setattr(versions, "_cpu_flags", lambda: real() - {"avx512_bf16", "amx_bf16"})


def _images(n: int = 12, size: int = SIZE, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(n, size, size, 3)).astype(np.uint8)


def _both(export, name: str, images: np.ndarray):
    artifact = load_export(export).artifact(name)
    with RUNTIMES["ort-cpu"].open(artifact, 1) as ort_rt:
        ort = ort_rt.predict(images)
    with RUNTIMES["ov-cpu"].open(artifact, 1) as ov_rt:
        ov = ov_rt.predict(images)
        execution = ov_rt.execution
    return ort, ov, execution


def test_ov_cpu_matches_onnx_runtime_on_the_tinycnn_fp32_and_int8_files(tiny_export, demo_data_dir):
    """The real exported CNN (convolutions, Q/DQ INT8) on its own kind of images: OpenVINO with the f32 hint gives
    ONNX Runtime's answers. With OpenVINO's default hint on a BF16 CPU the FP32 file differs by ~4e-2 here."""
    from edgexfer.data.images import load_image

    size = load_export(tiny_export).image_size
    images = np.stack([load_image(f, size) for f in sorted(demo_data_dir.rglob("*.png"))[::8][:16]])
    ort, ov, execution = _both(tiny_export, "fp32", images)
    assert execution is not None and execution.precision_hint == "f32"
    assert execution.threads == 1 and execution.performance_hint == "LATENCY"
    assert {p for counts in execution.layer_precisions.values() for p in counts} <= {"f32", "i32"}
    assert execution.layer_precisions["Convolution"] == {"f32": sum(execution.layer_precisions["Convolution"].values())}
    np.testing.assert_allclose(ov, ort, atol=1e-4)

    ort, ov, execution = _both(tiny_export, "int8", images)
    assert execution is not None and execution.precision_hint == "f32"
    conv = execution.layer_precisions["Convolution"]
    # OpenVINO ran the Q/DQ convolutions in int8 (the export may keep a sensitive one in float)
    assert conv.get("u8", 0) + conv.get("i8", 0) > conv.get("f32", 0), conv
    # both run the same quantized graph with their own int8 kernels: the same answers, tiny differences
    assert np.abs(ov - ort).max() < 0.02
    assert (ov.argmax(1) == ort.argmax(1)).mean() >= 15 / 16


def test_bench_records_the_hint_and_the_executed_precisions(handmade_export, tmp_path, monkeypatch):
    no_native_bf16(monkeypatch)
    outcome = run_bench(BenchConfig(handmade_export, out=tmp_path / "b", runtimes=["ort-cpu", "ov-cpu"],
                                    batch_sizes=(1, 4), warmup=1, iterations=3, threads=1, progress=False,
                                    end_to_end_images=2, thresholds=Thresholds(*LOOSE_DROPS), log=lambda line: None))
    results = load_results(tmp_path / "b")
    rows = {(r["artifact"], r["runtime"]): r for r in results["results"]}
    assert set(rows) == {(a, rt) for a in ("fp32", "fp16", "int8") for rt in ("ort-cpu", "ov-cpu")}
    for name in ("fp32", "fp16", "int8"):
        ov = rows[(name, "ov-cpu")]
        assert ov["provider"] == "OpenVINO CPU" and ov["execution"]["precision_hint"] == "f32"
        assert ov["execution"]["threads"] == 1 and ov["gate"]["passed"], ov["gate"]
        assert ov["latency_ms"]["1"]["p50"] > 0 and ov["latency_ms"]["4"]["p50"] > 0
        assert rows[(name, "ort-cpu")]["execution"] is None
    assert rows[("int8", "ov-cpu")]["execution"]["layer_precisions"]["FullyConnected"] == {"u8": 1}
    # the bf16 row is skipped with the reason the CPU gives, in results.json and in the report
    assert {"runtime": "ov-cpu", "artifact": "bf16", "reason": versions.bf16_native()[1]} in results["skipped"]
    report = (tmp_path / "b" / "report.md").read_text()
    assert "ov-cpu / bf16: this CPU" in report and "no native BF16" in report
    assert "## What the runtime executed" in report and "| `int8` | ov-cpu | f32 | 1 |" in report
    assert outcome.passed


def test_a_runtime_whose_fp32_is_wrong_fails_against_the_reference_fp32(handmade_export, tmp_path, monkeypatch):
    """A numerically wrong OpenVINO (here: each class's probability lands on the next class) is not its own
    reference: its FP32 row, and every row it ran, is judged against FP32 on ONNX Runtime and fails."""
    from edgexfer.evaluate.bench import BenchGateFailed
    from edgexfer.runtime.ov_runtime import OvRuntime

    no_native_bf16(monkeypatch)
    real = OvRuntime._run
    monkeypatch.setattr(OvRuntime, "_run", lambda self, batch: np.roll(real(self, batch), 1, axis=1))
    with pytest.raises(BenchGateFailed) as failed:
        run_bench(BenchConfig(handmade_export, out=tmp_path / "b", runtimes=["ort-cpu", "ov-cpu"], batch_sizes=(1,),
                              warmup=0, iterations=1, threads=1, progress=False, end_to_end_images=1,
                              thresholds=Thresholds(*LOOSE_DROPS), log=lambda line: None))
    assert "fp32 on ov-cpu" in failed.value.problem
    rows = {(r["artifact"], r["runtime"]): r for r in load_results(tmp_path / "b")["results"]}
    assert rows[("fp32", "ov-cpu")]["reference"] == {"artifact": "fp32", "runtime": "ort-cpu"}
    assert rows[("fp32", "ov-cpu")]["gate"]["verdict"] == "fail" and "reference" not in rows[("fp32", "ov-cpu")]["gate"]
    assert rows[("fp32", "ov-cpu")]["agreement"] < 0.5
    assert {name for (name, runtime), r in rows.items() if r["gate"]["verdict"] == "fail"} == {"fp32", "fp16", "int8"}
    assert all(r["gate"]["verdict"] == "pass" for (_, runtime), r in rows.items() if runtime == "ort-cpu")


@needs_bf16
def test_bf16_row_runs_the_fp32_file_in_bf16_and_is_gated(handmade_export, tmp_path):
    outcome = run_bench(BenchConfig(handmade_export, out=tmp_path / "b", runtimes=["ov-cpu"], batch_sizes=(1,),
                                    warmup=1, iterations=3, threads=1, progress=False, end_to_end_images=2,
                                    thresholds=Thresholds(*LOOSE_DROPS), log=lambda line: None))
    rows = {(r["artifact"], r["runtime"]): r for r in load_results(tmp_path / "b")["results"]}
    bf16 = rows[("bf16", "ov-cpu")]
    assert bf16["precision"] == "bf16" and bf16["file"] == "model_fp32.onnx"
    assert bf16["execution"]["precision_hint"] == "bf16"
    assert "bf16" in bf16["execution"]["layer_precisions"]["FullyConnected"]
    assert bf16["reference"] == {"artifact": "fp32", "runtime": "ov-cpu"}  # judged against FP32 like any precision
    assert bf16["gate"]["passed"] and "reference" not in bf16["gate"]
    assert 0 < bf16["max_abs_diff"] < 0.05  # BF16 arithmetic: close to FP32, not equal
    assert not any(s.get("artifact") == "bf16" for s in outcome.results["skipped"])


@needs_bf16
def test_predictor_runs_bf16_on_ov_cpu(handmade_export):
    images = _images(6)
    with Predictor(handmade_export, precision="fp32", runtime="ort-cpu") as ref:
        expected = ref.predict_batch(images)
    with Predictor(handmade_export, precision="bf16", runtime="ov-cpu") as model:
        assert (model.artifact, model.runtime, model.precision) == ("bf16", "ov-cpu", "bf16")
        got = model.predict_batch(images)
    assert np.abs(got - expected).max() < 0.05 and (got.argmax(1) == expected.argmax(1)).all()


def test_predictor_on_ov_cpu_gives_onnx_runtimes_answers(handmade_export):
    images = _images(6)
    with Predictor(handmade_export, precision="int8", runtime="ort-cpu") as ref:
        expected = ref.predict_batch(images)
    with Predictor(handmade_export, precision="int8", runtime="ov-cpu", threads=1) as model:
        assert model.provider == "OpenVINO CPU"
        got = model.predict_batch(images, batch_size=4)
    np.testing.assert_allclose(got, expected, atol=0.02)


def test_predict_bf16_without_native_bf16_is_one_line_exit_2(handmade_export, tmp_path, monkeypatch):
    no_native_bf16(monkeypatch)
    image = tmp_path / "x.png"
    from PIL import Image

    Image.fromarray(_images(1)[0]).save(image)
    result = CliRunner().invoke(cli, ["predict", str(handmade_export), str(image), "--precision", "bf16",
                                      "--runtime", "ov-cpu"])
    assert result.exit_code == 2, result.output
    assert "no native BF16" in result.output and "--runtime ov-cpu on a CPU with native BF16" in result.output
    with pytest.raises(EdgexferError, match="no native BF16"):
        Predictor(handmade_export, precision="bf16")


def test_ov_gpu_and_npu_are_skipped_with_the_reason(monkeypatch):
    from edgexfer.runtime import ov_runtime

    monkeypatch.setattr(ov_runtime, "openvino_devices", lambda: ["CPU"])
    _, skipped = select_runtimes(None)
    reasons = {s["runtime"]: s["reason"] for s in skipped}
    assert reasons["ov-gpu"] == "OpenVINO lists no GPU device here (it lists: CPU)"
    assert reasons["ov-npu"] == "OpenVINO lists no NPU device here (it lists: CPU)"
    assert "ov-cpu" not in reasons
    monkeypatch.setattr(ov_runtime, "openvino_devices", lambda: ["CPU", "GPU.0"])
    assert device_available("GPU") == (True, "available")
    with pytest.raises(EdgexferError, match="runtime 'ov-npu' is not usable here: OpenVINO lists no NPU"):
        select_runtimes(["ov-npu"])


def test_doctor_names_openvino_its_devices_and_the_cpus_instruction_sets(monkeypatch):
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    import openvino

    lines = result.output.splitlines()
    version = openvino.get_version().split("-")[0]
    assert any(line.split() == ["OpenVINO", version] for line in lines), result.output
    assert any(line.split()[:2] == ["devices", "CPU"] for line in lines)
    assert any(line.split()[0] == "int8" for line in lines) and any(line.split()[0] == "bf16" for line in lines)
    assert any(line.split()[:3] == ["yes", "ov-cpu", "OpenVINO"] for line in lines)
    data = json.loads(CliRunner().invoke(cli, ["doctor", "--json"]).output)
    assert data["bf16_instructions"] == versions.bf16_instructions()
    assert "CPU" in data["openvino_devices"]
    no_native_bf16(monkeypatch)
    text = CliRunner().invoke(cli, ["doctor"]).output
    assert "bf16      none native (the bf16 row is skipped here)" in text


def _parse(path):
    model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2",
                                           reason="tritonclient (the serve extra) is not installed")
    from google.protobuf import text_format

    config = model_config_pb2.ModelConfig()
    text_format.Parse(path.read_text(), config)  # strict: an unknown field or a bad value raises
    return config, model_config_pb2


@pytest.mark.parametrize("precision", ["int8", "bf16"])
def test_package_for_tritons_openvino_backend(handmade_export, tmp_path, monkeypatch, precision):
    if precision == "bf16":  # the server's CPU runs it: packaging needs no BF16 here, but bf16 must be derivable
        monkeypatch.setattr(versions, "_cpu_flags", lambda: {"avx512_bf16"})
    repo = tmp_path / "models"
    result = CliRunner().invoke(cli, ["package", str(handmade_export), "--out", str(repo), "--precision", precision,
                                      "--runtime", "ov-cpu"])
    assert result.exit_code == 0, result.output
    folder = repo / "tiny"
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "1/model.onnx", "config.pbtxt", "labels.txt"]
    config, pb = _parse(folder / "config.pbtxt")
    assert config.backend == "openvino" and config.platform == "" and config.default_model_filename == "model.onnx"
    params = {k: v.string_value for k, v in config.parameters.items()}
    expected = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if precision == "bf16":
        expected["HINT_BF16"] = "YES"
    assert params == expected
    assert [g.kind for g in config.instance_group] == [pb.ModelInstanceGroup.KIND_CPU]
    (inp,), (out,) = config.input, config.output
    assert inp.name == "image" and list(inp.dims) == [SIZE, SIZE, 3] and list(out.dims) == [len(CLASSES)]
    manifest = json.loads((handmade_export / "manifest.json").read_text())
    source = next(a for a in manifest["artifacts"] if a["name"] == ("fp32" if precision == "bf16" else "int8"))
    from edgexfer.io import sha256_file

    assert sha256_file(folder / "1" / "model.onnx") == source["sha256"]
    text = (folder / "config.pbtxt").read_text()
    assert ("takes no f32 precision hint" in text) == (precision != "bf16")


def test_package_refuses_ov_cpu_on_a_gpu_instance(handmade_export, tmp_path):
    result = CliRunner().invoke(cli, ["package", str(handmade_export), "--out", str(tmp_path / "m"),
                                      "--runtime", "ov-cpu", "--instance-kind", "gpu"])
    assert result.exit_code == 2 and "OpenVINO backend on the CPU" in result.output
    assert not (tmp_path / "m" / "tiny").exists()


def test_auto_picks_the_fastest_verified_pair_across_onnx_runtime_and_openvino(handmade_export, monkeypatch):
    """predict/package --precision auto: OpenVINO rows (bf16 included) compete with ONNX Runtime's on their
    bench latency and gate, nothing else."""
    from pathlib import Path

    from edgexfer.predict import BenchEvidence, GateVerdict, choose_artifact

    monkeypatch.setattr(versions, "_cpu_flags", lambda: {"avx512_bf16"})
    export = load_export(handmade_export)

    def evidence(*verdicts):  # each verdict for the bytes it names (bf16 runs the FP32 file)
        return BenchEvidence(Path("results.json"), tuple(
            GateVerdict(*v, sha256=export.artifact("fp32" if v[0] == "bf16" else v[0]).sha256) for v in verdicts))

    rows = [("fp32", "ort-cpu", True, (), 2.0), ("int8", "ort-cpu", True, (), 1.0), ("fp32", "ov-cpu", True, (), 1.8),
            ("int8", "ov-cpu", True, (), 0.9)]
    choice = choose_artifact(export, "auto", "auto", evidence=evidence(*rows, ("bf16", "ov-cpu", True, (), 0.5)),
                             check_available=False)
    assert (choice.artifact.name, choice.runtime.name) == ("bf16", "ov-cpu")
    assert choice.artifact.path.name == "model_fp32.onnx"
    failed = ("bf16", "ov-cpu", False, ("accuracy dropped 2 points",), 0.5)
    choice = choose_artifact(export, "auto", "auto", evidence=evidence(*rows, failed), check_available=False)
    assert (choice.artifact.name, choice.runtime.name) == ("int8", "ov-cpu")
    faster_ort = [("int8", "ort-cpu", True, (), 0.7) if r[:2] == ("int8", "ort-cpu") else r for r in rows]
    choice = choose_artifact(export, "auto", "auto", evidence=evidence(*faster_ort, failed), check_available=False)
    assert (choice.artifact.name, choice.runtime.name) == ("int8", "ort-cpu")
    # bf16 runs the FP32 file: the same bytes, but FP32's verdict is not bf16's, nor a bf16 failure FP32's
    bf16 = next(a for a in RUNTIMES["ov-cpu"].derive(export.artifacts).artifacts if a.name == "bf16")
    assert bf16.sha256 == export.artifact("fp32").sha256
    assert evidence(*rows).verdict(bf16, "ov-cpu").passed is None
    assert evidence(*rows, failed).verdict(export.artifact("fp32"), "ort-cpu").passed is True
    assert evidence(("bf16", "ov-cpu", False, ("drop",), 0.5)).verdict(export.artifact("fp32"), "ort-cpu").passed is None

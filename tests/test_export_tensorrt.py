"""TensorRT engine build: logic tested against a small fake `tensorrt` module (no GPU needed).
The module's type check against tensorrt-stubs is in test_typecheck.py."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pytest

from edgexfer.errors import EdgexferError
from edgexfer.export import tensorrt as trt_export

# ------------------------------------------------------------------------------ a fake TensorRT 11


def make_fake_tensorrt(*, parse_ok: bool = True, build_ok: bool = True, version: str = "11.0.0.9"):
    """The TensorRT API surface our build uses, recording calls. It has no BuilderFlag, no
    IInt8Calibrator: TensorRT 11 removed them, so touching them fails here as it would there."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls: dict = {"profiles": [], "cache_in": [], "pool": []}
    trt.calls = calls
    accepted: list = []  # the graphs the parser took (onnx.ModelProto)
    trt.accepted = accepted

    class Logger:
        WARNING = 2

        def __init__(self, severity=None):
            self.severity = severity

    class Dims(tuple):
        def __new__(cls, shape):
            return super().__new__(cls, tuple(shape))

    class Flag:
        STRONGLY_TYPED = 1

    class MemoryPoolType:
        WORKSPACE = "workspace"

    class TimingCache:
        def __init__(self, data: bytes):
            self.data = data

        def serialize(self):
            return bytearray(self.data + b"+timed")

    class Profile:
        def set_shape(self, name, mn, opt, mx):
            assert all(isinstance(d, Dims) for d in (mn, opt, mx)), "shapes must be Dims"
            calls["profiles"].append((name, tuple(mn), tuple(opt), tuple(mx)))

    class Config:
        def __init__(self):
            self.cache = None

        def set_memory_pool_limit(self, pool, size):
            calls["pool"].append((pool, size))

        def add_optimization_profile(self, profile):
            return 0

        def create_timing_cache(self, data):
            calls["cache_in"].append(bytes(data))
            return TimingCache(bytes(data))

        def set_timing_cache(self, cache, ignore_mismatch):
            self.cache = cache
            return True

        def get_timing_cache(self):
            return self.cache

    class Network:
        def __init__(self, flags):
            self.flags = flags

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags=0):
            calls["network_flags"] = flags
            return Network(flags)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            calls["built"] = True
            return bytearray(b"ENGINE-BYTES") if build_ok else None

    class ParserError:
        def __init__(self, text):
            self.text = text

        def desc(self):
            return self.text

    class OnnxParser:
        """Like TensorRT's parser, refuses bytes that are not ONNX and graphs that break TensorRT's rules
        (edgexfer/export/tensorrt_rules.py states them with their sources)."""

        def __init__(self, network, logger):
            self.errors: list[str] = []

        @property
        def num_errors(self):
            return len(self.errors)

        def parse_from_file(self, path):
            return self.parse(Path(path).read_bytes())

        def parse(self, data):
            import onnx

            from edgexfer.export.tensorrt_rules import check_graph

            try:
                model = onnx.load_from_string(bytes(data))
            except Exception as exc:
                self.errors = [f"failed to parse ONNX: {type(exc).__name__}"]
                return False
            if not model.graph.node:
                self.errors = ["ONNX graph has no nodes"]
                return False
            self.errors = [v.line() for v in check_graph(model)]
            if not parse_ok:
                self.errors.append("Unsupported ONNX op: FancyOp")
            if not self.errors:
                accepted.append(model)
            return not self.errors

        def get_error(self, index):
            return ParserError(self.errors[index])

    trt.Logger, trt.Dims, trt.NetworkDefinitionCreationFlag = Logger, Dims, Flag
    trt.MemoryPoolType, trt.Builder, trt.OnnxParser = MemoryPoolType, Builder, OnnxParser
    return trt


def _tiny_onnx(path: Path) -> Path:
    """A small valid graph TensorRT parses: image -> Relu -> probabilities."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["image"], ["probabilities"], name="relu")], "g",
                              [helper.make_tensor_value_info("image", TensorProto.FLOAT, [None, 8, 8, 3])],
                              [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, [None, 8, 8, 3])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


GPU = {"usable": True, "reason": "GPU usable", "name": "NVIDIA Fake 80GB", "compute_capability": "9.0",
       "count": 1, "driver_version": "13.0"}


@pytest.fixture
def fake_trt(monkeypatch):
    trt = make_fake_tensorrt()
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setattr(trt_export, "gpu_info", lambda: dict(GPU))
    return trt


def test_build_is_strongly_typed_with_a_batch_profile_and_a_timing_cache(fake_trt, tmp_path):
    onnx_path = _tiny_onnx(tmp_path / "model_fp16.onnx")
    cache = tmp_path / "timing.cache"
    record = trt_export.build_engine(onnx_path, tmp_path / "model_fp16.engine", input_name="image",
                                     image_size=(32, 40), max_batch=16, timing_cache=cache)
    assert (tmp_path / "model_fp16.engine").read_bytes() == b"ENGINE-BYTES"
    assert fake_trt.calls["network_flags"] == 1 << 1  # STRONGLY_TYPED, nothing else
    assert fake_trt.calls["profiles"] == [("image", (1, 32, 40, 3), (8, 32, 40, 3), (16, 32, 40, 3))]
    assert cache.read_bytes() == b"+timed" and record["timing_cache_reused"] is False
    assert record["tensorrt"] == "11.0.0.9" and record["gpu"] == GPU["name"]
    assert record["compute_capability"] == "9.0" and record["cuda"]["driver"] == "13.0"
    assert (record["min_batch"], record["opt_batch"], record["max_batch"]) == (1, 8, 16)
    assert record["strongly_typed"] is True
    # a second build starts from the saved cache
    again = trt_export.build_engine(onnx_path, tmp_path / "again.engine", input_name="image", image_size=(32, 40),
                                    max_batch=4, opt_batch=2, timing_cache=cache)
    assert fake_trt.calls["cache_in"][-1] == b"+timed" and again["timing_cache_reused"] is True
    assert fake_trt.calls["profiles"][-1][2] == (2, 32, 40, 3)


def test_parse_and_build_failures_are_one_line_errors(monkeypatch, tmp_path):
    monkeypatch.setattr(trt_export, "gpu_info", lambda: dict(GPU))
    onnx_path = tmp_path / "m.onnx"
    onnx_path.write_bytes(b"onnx")  # not ONNX: TensorRT's parser refuses it
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt())
    with pytest.raises(EdgexferError, match="cannot parse m.onnx: failed to parse ONNX"):
        trt_export.build_engine(onnx_path, tmp_path / "m.engine", input_name="image", image_size=(8, 8), max_batch=2)
    _tiny_onnx(onnx_path)
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(parse_ok=False))
    with pytest.raises(EdgexferError, match="cannot parse m.onnx: Unsupported ONNX op: FancyOp"):
        trt_export.build_engine(onnx_path, tmp_path / "m.engine", input_name="image", image_size=(8, 8), max_batch=2)
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt(build_ok=False))
    with pytest.raises(EdgexferError, match="failed to build"):
        trt_export.build_engine(onnx_path, tmp_path / "m.engine", input_name="image", image_size=(8, 8), max_batch=2)
    assert not (tmp_path / "m.engine").exists()


def test_missing_tensorrt_stub_package_or_gpu_is_reported(monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # import fails
    ok, reason = trt_export.engine_support()
    assert not ok and "TensorRT is not installed" in reason and "edgexfer[tensorrt]" in reason
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))  # e.g. tensorrt-stubs on the path
    ok, reason = trt_export.engine_support()
    assert not ok and "no Builder" in reason
    monkeypatch.setitem(sys.modules, "tensorrt", make_fake_tensorrt())
    monkeypatch.setattr(trt_export, "gpu_info", lambda: {"usable": False, "reason": "no NVIDIA driver (libcuda) found"})
    ok, reason = trt_export.engine_support()
    assert not ok and "no usable NVIDIA GPU" in reason and "libcuda" in reason
    with pytest.raises(trt_export.EngineUnavailable, match="no usable NVIDIA GPU"):
        trt_export.build_engine("m.onnx", "m.engine", input_name="image", image_size=(8, 8), max_batch=2)


def test_export_with_engines_against_the_fake(fake_trt, export_run_dir, tiny_export, tmp_path):
    from edgexfer.export import ExportConfig, export_run

    out = tmp_path / "trt"
    manifest = export_run(ExportConfig(run_dir=export_run_dir, out=out, fp16=True, int8=True, engine=True,
                                       calibration=tiny_export.parent / "calibration", calibration_size=64,
                                       max_batch=8, progress=False))
    by_name = {a["name"]: a for a in manifest["artifacts"]}
    assert list(by_name) == ["fp32", "fp16", "int8", "fp16-trt", "int8-trt"]
    assert by_name["int8"]["target"] == "tensorrt"  # --engine picks the TensorRT INT8 profile
    for precision in ("fp16", "int8"):
        engine = by_name[f"{precision}-trt"]
        assert engine["file"] == f"model_{precision}.engine" and engine["format"] == "tensorrt"
        assert engine["engine"]["max_batch"] == 8 and engine["engine"]["gpu"] == GPU["name"]
        assert engine["engine"]["onnx_sha256"] == by_name[precision]["sha256"]
        sidecar = json.loads((out / f"model_{precision}.engine.json").read_text())
        assert sidecar["tensorrt"] == "11.0.0.9" and sidecar["compute_capability"] == "9.0"
    # TensorRT's parser took both graphs as they were written: the FP16 file and the INT8 Q/DQ file
    import onnx

    written = [onnx.load(out / by_name[p]["file"]).SerializeToString() for p in ("fp16", "int8")]
    assert [m.SerializeToString() for m in fake_trt.accepted] == written
    assert (out / "trt_timing.cache").is_file()


def test_engine_with_the_cpu_int8_profile_is_refused(export_run_dir, tmp_path):
    from edgexfer.export import ExportConfig, export_run

    with pytest.raises(EdgexferError, match="needs the tensorrt INT8 profile"):
        export_run(ExportConfig(run_dir=export_run_dir, out=tmp_path / "x", int8=True, engine=True, target="cpu"))


def test_export_refuses_a_tensorrt_graph_that_breaks_a_rule(monkeypatch, export_run_dir, tiny_export, tmp_path):
    """The cpu profile's graph (uint8 activations, zero points not 0) is what TensorRT refuses: planted as the
    tensorrt profile, export stops with one line naming the node and the rule, and writes nothing."""
    import edgexfer.export.int8.quantize as int8_quantize
    from edgexfer.export import ExportConfig, export_run

    monkeypatch.setitem(int8_quantize.PROFILES, "tensorrt", int8_quantize.PROFILES["cpu"])
    out = tmp_path / "refused"
    with pytest.raises(EdgexferError) as info:
        export_run(ExportConfig(run_dir=export_run_dir, out=out, int8=True, target="tensorrt", int8_max_rounds=0,
                                calibration=tiny_export.parent / "calibration", calibration_size=64,
                                progress=False))
    line = str(info.value)
    assert "\n" not in line and info.value.exit_code == 2
    assert "model_int8_tensorrt.onnx is not a graph TensorRT accepts: node '" in line
    assert any(f"rule {rule}" in line for rule in ("q-output-type", "dq-input-type", "zero-point"))
    assert "nothing was written" in line
    assert not out.exists() and not list(tmp_path.glob(".refused.*"))

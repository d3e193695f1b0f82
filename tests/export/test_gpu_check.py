"""`make gpu-check` (benchmarks/gpu_check.py) on a machine without a usable GPU: one line, exit 2, nothing written.
(This test hides the GPUs, so it checks the same on a GPU machine.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from fixtures_handmade import bench_outcome

REPO = Path(__file__).resolve().parents[2]


def test_gpu_check_without_a_gpu_fails_in_one_line(tmp_path):
    out, work = tmp_path / "results" / "gpu_check.json", tmp_path / "work"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(out),
                           "--work", str(work)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: error: no usable NVIDIA GPU")
    assert "CUDA_VISIBLE_DEVICES" in lines[0] and "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists() and not work.exists()


def test_gpu_check_records_tensorrt_rule_violations_of_the_built_graphs(tmp_path):
    """The conformance step of `make gpu-check`: each tensorrt-target file of the export, with what breaks."""
    import importlib.util

    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)

    def save(path, zero_point):
        nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
                 helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")]
        inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                 numpy_helper.from_array(np.array(zero_point, np.int8), "z")]
        graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], initializer=inits)
        onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)

    save(tmp_path / "model_fp16.onnx", 0)
    save(tmp_path / "model_int8_tensorrt.onnx", 5)
    records = gpu_check.check_tensorrt_graphs(tmp_path)
    assert [r["file"] for r in records] == ["model_fp16.onnx", "model_int8_tensorrt.onnx"]
    assert records[0]["violations"] == []
    assert [v.split(" breaks ")[0] for v in records[1]["violations"]] == ["node 'q' (QuantizeLinear)",
                                                                          "node 'dq' (DequantizeLinear)"]
    assert gpu_check.check_tensorrt_graphs(tmp_path / "missing") == []


def test_gpu_check_rows_name_the_bytes_and_the_device_like_bench_rows(handmade_export, tmp_path):
    import importlib.util

    from edgexfer.contracts.bench import load_results
    from edgexfer.evaluate.bench import BenchConfig

    spec = importlib.util.spec_from_file_location("gpu_check", REPO / "benchmarks" / "gpu_check.py")
    gpu_check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gpu_check)
    bench_outcome(BenchConfig(handmade_export, out=tmp_path / "b", runtimes=["ort-cpu"], batch_sizes=(1,), warmup=0,
                              iterations=1, progress=False, end_to_end_images=1, log=lambda line: None))
    for row in load_results(tmp_path / "b")["results"]:
        checked = gpu_check._row("demo", row)
        assert (checked["file"], checked["sha256"], checked["device"], checked["versions"]) == (
            row["file"], row["sha256"], row["device"], row["versions"])
        assert len(checked["sha256"]) == 64 and checked["device"].startswith("CPU: ")

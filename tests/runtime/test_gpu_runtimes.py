"""GPU runtimes on a real device: the ONNX Runtime CUDA and TensorRT providers, and TensorRT engines built
by `edgexfer export --engine` and run by `edgexfer bench`. Skipped, with the reason, where no GPU (or no
TensorRT) is usable; `make gpu-check` runs them on a GPU machine.

Each test drives the CLI in a subprocess: a fresh process sees the GPUs whatever this one did before.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import gpu_probe

pytestmark = pytest.mark.gpu


def edgexfer(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgexfer", *args], capture_output=True, text=True, timeout=timeout)


def bench_rows(export: Path, out: Path, runtimes: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = edgexfer("bench", str(export), "--out", str(out), "--runtimes", runtimes, "--batch-sizes", "1,4",
                    "--warmup", "2", "--iterations", "5", "--quiet")
    rows = {}
    if (out / "results.json").is_file():
        rows = {(r["artifact"], r["runtime"]): r for r in json.loads((out / "results.json").read_text())["results"]}
    return proc, rows


def require(what: str) -> None:
    ok, reason = gpu_probe()[what]
    if not ok:
        pytest.skip(f"{what} is not usable here: {reason}")


def test_ort_cuda_provider_runs_every_precision_like_the_cpu(handmade_export, tmp_path):
    require("ort-cuda")
    proc, rows = bench_rows(handmade_export, tmp_path / "bench", "ort-cpu,ort-cuda")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert rows[("fp32", "ort-cuda")]["agreement"] >= 0.99  # top-1 agreement with FP32 on the CPU
    for precision in ("fp32", "fp16", "int8"):
        row, cpu = rows[(precision, "ort-cuda")], rows[(precision, "ort-cpu")]
        assert row["agreement"] >= cpu["agreement"] - 0.02, (row, cpu)  # the device computes what the CPU does
        assert abs(row["accuracy"] - cpu["accuracy"]) <= 0.02
        assert set(row["latency_ms"]) == {"1", "4"} and row["latency_ms"]["1"]["p50"] > 0


def test_ort_tensorrt_provider_runs_fp32_and_fp16(handmade_export, tmp_path):
    require("ort-trt")
    proc, rows = bench_rows(handmade_export, tmp_path / "bench", "ort-cpu,ort-trt")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert {a for a, r in rows if r == "ort-trt"} == {"fp32", "fp16"}  # the cpu INT8 profile is not TensorRT's
    for precision in ("fp32", "fp16"):
        assert rows[(precision, "ort-trt")]["agreement"] >= 0.99, rows[(precision, "ort-trt")]


@pytest.mark.tensorrt
def test_engines_are_built_for_this_gpu_and_run(export_run_dir, tmp_path):
    require("trt")  # the engine runtime also needs cuda-python
    out = tmp_path / "exported"
    proc = edgexfer("export", str(export_run_dir), "--out", str(out), "--fp16", "--int8", "--engine", "--max-batch", "8",
                    "--calibration", str(tmp_path / "calibration"), "--calibration-size", "64", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    engines = {a["name"]: a for a in manifest["artifacts"] if a["format"] == "tensorrt"}
    assert set(engines) == {"fp16-trt", "int8-trt"}
    gpu = gpu_probe()["gpu"]
    for artifact in engines.values():
        record = json.loads((out / (artifact["file"] + ".json")).read_text())
        assert record["gpu"] == gpu["name"] and record["compute_capability"] == gpu["compute_capability"]
        assert record["max_batch"] == 8 and record["strongly_typed"] is True
    proc, rows = bench_rows(out, tmp_path / "bench", "ort-cpu,trt")
    assert proc.returncode in (0, 1), proc.stderr[-3000:]  # 1: the gate broke, which the rows below say
    assert rows[("fp16-trt", "trt")]["agreement"] >= 0.98
    assert rows[("int8-trt", "trt")]["agreement"] >= 0.9
    assert set(rows[("fp16-trt", "trt")]["latency_ms"]) == {"1", "4"}

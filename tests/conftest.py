"""Shared test set-up. Fixtures live in plugin modules, one per area, so they can grow independently:
fixtures_data (synthetic data sets), fixtures_run (a tiny finished run), fixtures_export (its export),
fixtures_handmade (a hand-made ONNX export with known weights, for the bench, runtime and predict tests),
fixtures_study (a second test backbone and a real two-backbone study, run once).

GPUs: tests marked ``gpu`` or ``tensorrt`` see the machine's GPUs and are skipped, with the reason,
where none is usable (asked once per session of a fresh process through ``edgexfer.runtime.cuda``).
Every other test checks what a CPU machine gives (the runtimes bench picks, CPU-deterministic numbers),
so GPUs are hidden from it alone: ``CUDA_VISIBLE_DEVICES`` is empty for its duration (and for the
processes it starts) and the cached GPU status is cleared around it. A process's CUDA driver reads
``CUDA_VISIBLE_DEVICES`` once, so the GPU tests do their GPU work in subprocesses of their own.
"""

import json
import os
import subprocess
import sys
import textwrap

import pytest

# Quiet TensorFlow and keep it on few threads: CI has two cores. Where a GPU is visible to TensorFlow in
# this process, it takes memory as it needs it instead of all of it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_NUM_INTEROP_THREADS", "1")
os.environ.setdefault("TF_FORCE_GPU_ALLOW_GROWTH", "true")
os.environ.setdefault("MPLBACKEND", "Agg")

pytest_plugins = ["fixtures_data", "fixtures_run", "fixtures_export", "fixtures_handmade", "fixtures_study"]

GPU_MARKERS = ("gpu", "tensorrt")

_PROBE = textwrap.dedent("""
    import json
    from edgexfer.export.tensorrt import engine_support
    from edgexfer.runtime.cuda import gpu_status
    from edgexfer.runtime.ort_runtime import provider_available
    from edgexfer.runtime.trt_runtime import trt_available

    status = gpu_status()
    print(json.dumps({
        "gpu": status.as_dict(),
        "ort-cuda": list(provider_available("CUDAExecutionProvider")),
        "ort-trt": list(provider_available("TensorrtExecutionProvider")),
        "tensorrt": list(engine_support()),
        "trt": list(trt_available()),
    }))
""")
_probe_cache: dict = {}


def gpu_probe() -> dict:
    """What a fresh process on this machine can use: the GPU (``gpu_status``), the ONNX Runtime CUDA and
    TensorRT providers, the TensorRT builder and the engine runtime, each as (usable, reason). Asked once
    per session, in the environment the session started with."""
    if not _probe_cache:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=300)
        if proc.returncode != 0:
            reason = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            _probe_cache.update({"gpu": {"usable": False, "reason": f"GPU probe failed: {reason}"},
                                 **{what: [False, reason] for what in ("ort-cuda", "ort-trt", "tensorrt", "trt")}})
        else:
            _probe_cache.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return _probe_cache


def pytest_collection_modifyitems(config, items):
    """Mark a ``gpu`` test skipped where no GPU is usable, a ``tensorrt`` test where the TensorRT builder is
    not, each with the reason (nothing of theirs runs, not even their fixtures)."""
    for item in items:
        if item.get_closest_marker("gpu"):
            gpu = gpu_probe()["gpu"]
            if not gpu["usable"]:
                item.add_marker(pytest.mark.skip(reason=f"no usable NVIDIA GPU: {gpu['reason']}"))
                continue
        if item.get_closest_marker("tensorrt"):
            ok, reason = gpu_probe()["tensorrt"]
            if not ok:
                item.add_marker(pytest.mark.skip(reason=f"TensorRT engines cannot be built here: {reason}"))


@pytest.fixture(autouse=True)
def _gpus_hidden_unless_marked(request, monkeypatch):
    if any(request.node.get_closest_marker(m) for m in GPU_MARKERS):
        yield
        return
    from edgexfer.runtime.cuda import gpu_status

    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    gpu_status.cache_clear()
    yield
    gpu_status.cache_clear()

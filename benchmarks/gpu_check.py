"""Verify the GPU path on a machine with an NVIDIA GPU, in one step (`make gpu-check`).

1. asks the CUDA driver whether a GPU is usable (``edgexfer.runtime.cuda``); without one it stops at
   once with one line and exit status 2, writing nothing;
2. runs the tests marked ``gpu`` or ``tensorrt`` (ONNX Runtime CUDA and TensorRT providers, TensorRT
   engine build and run, mixed precision, MirroredStrategy) and records each outcome;
3. runs the demo pipeline (`edgexfer demo`: fine-tune on the GPU, export, bench on every usable runtime),
   then exports the demo's run for the ``tensorrt`` target (FP16 + INT8, with ``--engine`` where TensorRT can
   build engines, and benches the engines);
4. checks the built ``tensorrt``-target graphs against TensorRT's rules (edgexfer/export/tensorrt_rules.py),
   the proof that holds where no TensorRT is installed, and records the TensorRT version and what it targets;
5. writes ``benchmarks/results/gpu_check.json``: the machine, the tests, the rules, the demo's bench rows (each
   with the file's sha256, the device that ran it and the versions, as in the bench's results.json).

Exit status: 0 when every test passed (or was skipped) and the pipeline ran, 1 otherwise, 2 without a GPU.

    .venv/bin/python benchmarks/gpu_check.py [--out benchmarks/results/gpu_check.json] [--work runs/gpu-check]
"""

from __future__ import annotations

import argparse
import platform
import shutil
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "edgexfer.gpu-check/1"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "gpu_check.json",
                        help="results file (default: benchmarks/results/gpu_check.json)")
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "gpu-check",
                        help="folder for the demo pipeline's outputs (replaced; default: runs/gpu-check)")
    parser.add_argument("--no-demo", action="store_true", help="run the GPU tests only")
    args = parser.parse_args(argv)

    from edgexfer.runtime.cuda import gpu_status

    gpu = gpu_status()
    if not gpu.usable:
        print(f"gpu_check: error: no usable NVIDIA GPU ({gpu.reason}). Run it on a machine with an NVIDIA GPU "
              "and its driver.", file=sys.stderr)
        return 2

    started = time.time()
    tests = run_gpu_tests(args.work)
    demo = None if args.no_demo else run_demo(args.work)
    ok = tests["failed"] == 0 and tests["passed"] > 0 and (demo is None or demo["ok"])
    record = {
        "schema": SCHEMA,
        "command": "make gpu-check",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "seconds": round(time.time() - started, 1),
        "ok": ok,
        "machine": machine(gpu.as_dict()),
        "tests": tests,
        "demo": demo,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from edgexfer.io import write_json

    write_json(args.out, record)
    print(f"gpu tests: {tests['passed']} passed, {tests['failed']} failed, {tests['skipped']} skipped; "
          f"demo: {'skipped' if demo is None else ('ok' if demo['ok'] else 'FAILED')}; results in {args.out}")
    return 0 if ok else 1


def run_gpu_tests(work: Path) -> dict[str, Any]:
    """pytest -m "gpu or tensorrt" in a subprocess; each test's outcome and, for a skip or failure, why."""
    work.mkdir(parents=True, exist_ok=True)
    junit = work / "gpu-tests.xml"
    cmd = [sys.executable, "-m", "pytest", "-m", "gpu or tensorrt", "-q", "-rA", f"--junitxml={junit}"]
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    cases = []
    if junit.is_file():
        for case in ET.parse(junit).getroot().iter("testcase"):
            outcome, detail = "passed", None
            for tag in ("failure", "error", "skipped"):
                node = case.find(tag)
                if node is not None:
                    outcome = "skipped" if tag == "skipped" else "failed"
                    detail = (node.get("message") or "").strip()[:500]
            cases.append({"test": f"{case.get('classname')}::{case.get('name')}", "outcome": outcome, "detail": detail})
    counts = {k: sum(c["outcome"] == k for c in cases) for k in ("passed", "failed", "skipped")}
    if proc.returncode not in (0, 5) and counts["failed"] == 0:  # pytest itself failed (collection, usage)
        counts["failed"] = 1
        cases.append({"test": "pytest", "outcome": "failed", "detail": (proc.stdout + proc.stderr)[-1000:]})
    return {"command": " ".join(["python", *cmd[1:4], "'gpu or tensorrt'"]), "exit_code": proc.returncode,
            "seconds": round(time.time() - t0, 1), **counts, "cases": cases}


def run_demo(work: Path) -> dict[str, Any]:
    """`edgexfer demo` (bench on every usable runtime), then the run's engines where TensorRT builds them."""
    from edgexfer.contracts.bench import load_results

    demo_dir = work / "demo"
    shutil.rmtree(demo_dir, ignore_errors=True)
    steps = [_step("demo", ["demo", "--out", str(demo_dir)])]
    from edgexfer.export.tensorrt import engine_support

    engines_ok, engines_reason = engine_support()
    rules: list[dict[str, Any]] = []
    if steps[0]["exit_code"] == 0:
        engines = work / "engines"
        shutil.rmtree(engines, ignore_errors=True)
        build = ["--engine"] if engines_ok else ["--target", "tensorrt"]
        steps.append(_step(f"export {build[0]}", ["export", str(demo_dir / "run"), "--out", str(engines), "--fp16",
                                                  "--int8", *build, "--calibration", str(demo_dir / "calibration"),
                                                  "--quiet"]))
        rules = check_tensorrt_graphs(engines)
        if steps[-1]["exit_code"] == 0 and engines_ok:
            steps.append(_step("bench engines", ["bench", str(engines), "--out", str(work / "engines-bench"), "--quiet"]))
    rows = []
    for step, folder in (("demo", demo_dir / "bench"), ("bench engines", work / "engines-bench")):
        results = folder / "results.json"
        if results.is_file():
            rows += [_row(step, r) for r in load_results(results)["results"]]
    ok = all(s["exit_code"] == 0 for s in steps) and bool(rules) and not any(r["violations"] for r in rules)
    return {"ok": ok, "steps": steps, "engines": engines_ok,
            "engines_reason": None if engines_ok else engines_reason, "tensorrt_rules": rules, "rows": rows}


def check_tensorrt_graphs(export_dir: Path) -> list[dict[str, Any]]:
    """TensorRT's rules over the tensorrt-target ONNX files of an export: one record per file, its violations."""
    from edgexfer.export.tensorrt_rules import check_graph

    out = []
    for name in ("model_fp16.onnx", "model_int8_tensorrt.onnx"):
        path = export_dir / name
        if path.is_file():
            out.append({"file": name, "violations": [v.line() for v in check_graph(path)]})
    return out


def _step(name: str, args: list[str]) -> dict[str, Any]:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "edgexfer", *args], cwd=ROOT, capture_output=True, text=True)
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("edgexfer: error:")]
    return {"step": name, "command": "edgexfer " + " ".join(args), "exit_code": proc.returncode,
            "seconds": round(time.time() - t0, 1), "error": errors[-1] if errors else
            (proc.stderr.strip().splitlines() or [None])[-1] if proc.returncode else None}


def _row(step: str, row: dict[str, Any]) -> dict[str, Any]:
    """The figures of one bench row that tell whether the GPU path works, named like the bench row: the bytes it
    ran (file and sha256), what executed it (device) and the libraries' versions."""
    latency = row.get("latency_ms") or {}
    gate = row.get("gate")
    return {"step": step, "artifact": row.get("artifact"), "runtime": row.get("runtime"),
            "file": row.get("file"), "sha256": row.get("sha256"), "device": row.get("device"),
            "versions": row.get("versions"),
            "accuracy": row.get("accuracy"), "agreement": row.get("agreement"),
            "gate_passed": gate.get("passed") if isinstance(gate, dict) else None,
            "p50_ms": {batch: figures.get("p50") for batch, figures in latency.items() if isinstance(figures, dict)}}


def machine(gpu: dict[str, Any]) -> dict[str, Any]:
    from importlib import metadata

    versions = {}
    for dist in ("onnxruntime-gpu", "onnxruntime", "tensorflow", "keras", "tensorrt", "cuda-python"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    from edgexfer.export.tensorrt_rules import tensorrt_target
    from edgexfer.runtime.ort_runtime import tensorrt_version

    return {"gpu": gpu, "platform": platform.platform(), "python": platform.python_version(), "versions": versions,
            "tensorrt_target": tensorrt_target(tensorrt_version())}


if __name__ == "__main__":
    sys.exit(main())

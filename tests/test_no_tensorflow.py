"""The bench path works on a machine without TensorFlow (a Jetson with ONNX Runtime and TensorRT only).

In a subprocess, a meta-path finder makes `tensorflow`, `keras` and `tf2onnx` unimportable; the
script imports every module of edgexfer.runtime, evaluate, report and cli, runs `edgexfer bench
--help` and a real `edgexfer bench` on an export directory, and checks TensorFlow was never loaded.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from test_bench_tiny import handmade_export_fixture  # noqa: F401  (shared fixtures: the hand-made export)

SCRIPT = textwrap.dedent(
    """
    import importlib, json, pkgutil, sys

    BLOCKED = ("tensorflow", "keras", "tf2onnx")
    attempts = []

    class Block:
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                attempts.append(name)
                raise ImportError(f"{name} is blocked for this test")
            return None

    sys.meta_path.insert(0, Block())

    import edgexfer
    imported = []
    for package in ("edgexfer.runtime", "edgexfer.evaluate", "edgexfer.report", "edgexfer.cli"):
        module = importlib.import_module(package)
        imported.append(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            importlib.import_module(info.name)
            imported.append(info.name)

    from edgexfer.cli import main

    codes = {}
    for name, argv in (("help", ["bench", "--help"]), ("bench", sys.argv[1:])):
        try:
            main(argv)
            codes[name] = 0
        except SystemExit as exc:
            codes[name] = exc.code
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    print("RESULT " + json.dumps({"codes": codes, "loaded": loaded, "imported": imported,
                                  "attempts": sorted(set(attempts))}))
    """
)


def test_bench_runs_with_tensorflow_blocked(handmade_export, tmp_path):
    out = tmp_path / "bench"
    args = ["bench", str(handmade_export), "--out", str(out), "--batch-sizes", "1,2", "--warmup", "0",
            "--iterations", "2", "--quiet"]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["loaded"] == [], f"TensorFlow-side modules were imported: {result['loaded']}"
    assert result["codes"] == {"help": 0, "bench": 0}, proc.stderr
    assert "edgexfer.runtime.trt_runtime" in result["imported"] and "edgexfer.cli.bench" in result["imported"]
    assert "Usage: edgexfer bench" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert [r["artifact"] for r in results["results"]] == ["fp32", "fp16", "int8"]
    skipped = {s["runtime"]: s["reason"] for s in results["skipped"]}
    assert "TensorFlow is not installed" in skipped["keras"]  # Keras is offered only where TensorFlow is


"""The bench path works on a machine without TensorFlow (a Jetson with ONNX Runtime and TensorRT only).

In a subprocess, a meta-path finder makes `tensorflow`, `keras` and `tf2onnx` unimportable; the
script imports every module of edgexfer.runtime, evaluate, report, serving and cli (and edgexfer.predict,
edgexfer.explain), runs `edgexfer bench --help`, a real `edgexfer bench` on an export directory and then
`edgexfer predict` and `edgexfer package` on it, and checks TensorFlow was never loaded.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import textwrap

from fixtures_handmade import LOOSE

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
    for package in ("edgexfer.runtime", "edgexfer.evaluate", "edgexfer.report", "edgexfer.serving", "edgexfer.cli"):
        module = importlib.import_module(package)
        imported.append(package)
        for info in pkgutil.walk_packages(module.__path__, package + "."):
            importlib.import_module(info.name)
            imported.append(info.name)
    for name in ("edgexfer.predict", "edgexfer.explain"):  # explain needs TensorFlow only when it runs
        importlib.import_module(name)
        imported.append(name)

    from edgexfer.cli import main

    codes = {}
    # argv: [name, argument...] lists as JSON, run one after another
    for name, *argv in [["help", "bench", "--help"], *json.loads(sys.argv[1])]:
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
    import shutil

    export = shutil.copytree(handmade_export, tmp_path / "export")
    out = tmp_path / "bench"  # beside the export, where predict and package find the gate verdicts
    data = handmade_export.parent / "data"
    commands = [
        ["bench", "bench", str(export), "--out", str(out), "--batch-sizes", "1,2", "--warmup", "0",
         "--iterations", "2", "--quiet", *LOOSE],
        ["predict", "predict", str(export), str(data), "--out", str(tmp_path / "predictions.csv"), "--quiet"],
        ["package", "package", str(export), "--out", str(tmp_path / "triton")],
    ]
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps(commands)], capture_output=True, text=True,
                          timeout=300)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, proc.stdout + proc.stderr
    result = json.loads(lines[-1][len("RESULT "):])
    assert result["loaded"] == [], f"TensorFlow-side modules were imported: {result['loaded']}"
    assert result["codes"] == {"help": 0, "bench": 0, "predict": 0, "package": 0}, proc.stderr
    assert "edgexfer.runtime.trt_runtime" in result["imported"] and "edgexfer.cli.bench" in result["imported"]
    assert {"edgexfer.cli.predict", "edgexfer.predict", "edgexfer.serving.triton"} <= set(result["imported"])
    assert "Usage: edgexfer bench" in proc.stdout
    results = json.loads((out / "results.json").read_text())
    assert [r["artifact"] for r in results["results"] if r["runtime"] == "ort-cpu"] == ["fp32", "fp16", "int8"]
    if importlib.util.find_spec("openvino") is not None:  # the openvino extra: OpenVINO benched TensorFlow-free too
        assert "edgexfer.runtime.ov_runtime" in result["imported"]
        assert {r["artifact"] for r in results["results"] if r["runtime"] == "ov-cpu"} >= {"fp32", "fp16", "int8"}
    skipped = {s["runtime"]: s["reason"] for s in results["skipped"]}
    assert "TensorFlow is not installed" in skipped["keras"]  # Keras is offered only where TensorFlow is
    rows = (tmp_path / "predictions.csv").read_text().splitlines()
    assert rows[0].startswith("path,predicted_class,probability,p_") and len(rows) == 1 + len(list(data.rglob("*.png")))
    assert (tmp_path / "triton" / "tiny" / "config.pbtxt").is_file()


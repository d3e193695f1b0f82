"""The same export command on the same machine and data writes the same bytes: FP32, FP16 and INT8 (with the
layer report beside it). Nothing timed decides what is written unless the user opts in (``--kernel-choice``)."""

from __future__ import annotations

import json

from edgexfer.export import ExportConfig, export_run
from edgexfer.io import sha256_file


def _hashes(folder):
    return {p.name: sha256_file(p) for p in sorted(folder.iterdir())
            if p.is_file() and p.name != "manifest.json"}


def test_exporting_twice_writes_byte_identical_artifacts(tmp_path, export_run_dir, tiny_export):
    calibration = tiny_export.parent / "calibration"
    outs = []
    for name in ("first", "second"):
        out = tmp_path / name
        export_run(ExportConfig(run_dir=export_run_dir, out=out, fp16=True, int8=True, target="cpu",
                                calibration=calibration, calibration_size=64, progress=False))
        outs.append(out)
    first, second = (_hashes(out) for out in outs)
    assert {"model_fp32.onnx", "model_fp16.onnx", "model_int8_cpu.onnx"} <= set(first)
    assert first == second
    # and the manifest names the same bytes
    for out in outs:
        manifest = json.loads((out / "manifest.json").read_text())
        assert {a["file"]: a["sha256"] for a in manifest["artifacts"]} == {
            a["file"]: first[a["file"]] for a in manifest["artifacts"]}

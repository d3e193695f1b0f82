"""Export fixtures (session scope, built once):

- ``tiny_export``: the export of ``tiny_run`` (fixtures_run) with FP32 + FP16 + INT8 (target cpu, our quantizer
  only: ``--quantizer auto`` would add NNCF's candidate, about 5 s, which tests/test_export_nncf.py covers), a
  64-image calibration set; returns the export folder (a Path holding manifest.json). Treat as read-only.
- ``export_run_dir``: the run that ``tiny_export`` exported (``tiny_run``).
- ``make_run_dir(run_dir, split, model)``: write a finished run directory around any Keras model (tests that
  need another backbone than ``tiny_run``'s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def make_run_dir(run_dir: Path, split, model, *, backbone: str = "test-cnn") -> Path:
    """Write a finished run directory (contract section 2) around ``model`` and ``split``."""
    from edgexfer.io import sha256_file, write_json

    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    split.save(run_dir / "split.json")
    write_json(run_dir / "labels.json", split.classes)
    h, w = (int(d) for d in model.inputs[0].shape[1:3])
    write_json(run_dir / "run.json", {
        "schema": "edgexfer.run/1",
        "backbone": backbone,
        "image_size": [h, w],
        "classes": split.classes,
        "head": "gap",
        "weights": "none",
        "model_file": "model.keras",
        "model_sha256": sha256_file(run_dir / "model.keras"),
        "split_sha256": sha256_file(run_dir / "split.json"),
        "created": "2026-01-01T00:00:00+00:00",
        "versions": {},
    })
    return run_dir


@pytest.fixture(scope="session")
def export_run_dir(tiny_run) -> Path:
    """The run that ``tiny_export`` exports: ``tiny_run`` (fixtures_run)."""
    return Path(tiny_run)


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory, export_run_dir) -> Path:
    from edgexfer.export import ExportConfig, export_run

    root = tmp_path_factory.mktemp("export")
    out = root / "tiny"
    export_run(ExportConfig(run_dir=export_run_dir, out=out, fp16=True, int8=True, target="cpu", quantizer="edgexfer",
                            calibration=root / "calibration", calibration_size=64, progress=False))
    assert json.loads((out / "manifest.json").read_text())["schema"] == "edgexfer.export/1"
    return out

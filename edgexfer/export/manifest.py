"""manifest.json of an export directory (contract section 4): artifacts with hashes, lineage, versions."""

from __future__ import annotations

import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgexfer.errors import EdgexferError
from edgexfer.io import read_json, sha256_file
from edgexfer.versions import library_versions

SCHEMA = "edgexfer.export/1"
MANIFEST_FILE = "manifest.json"
RUN_FILES = ("labels.json", "split.json", "run.json")
#: copied when the run has them: metrics.json carries the run's sanity record that bench reads
OPTIONAL_RUN_FILES = ("metrics.json",)


def onnx_file(precision: str, target: str | None = None) -> str:
    return f"model_int8_{target}.onnx" if precision == "int8" else f"model_{precision}.onnx"


def engine_file(precision: str) -> str:
    return f"model_{precision}.engine"


def artifact_record(
    name: str,
    path: str | os.PathLike[str],
    *,
    fmt: str,
    precision: str,
    target: str,
    parity: dict[str, Any] | None = None,
    excluded_nodes: list[dict[str, Any]] | None = None,
    calibration: dict[str, Any] | None = None,
    engine: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    p = Path(path)
    return {
        "name": name,
        "file": p.name,
        "format": fmt,
        "precision": precision,
        "target": target,
        "sha256": sha256_file(p),
        "size_bytes": p.stat().st_size,
        "parity": parity,
        "excluded_nodes": excluded_nodes or [],
        "calibration": calibration,
        "engine": engine,
        **extra,
    }


def build_manifest(name: str, run: Any, artifacts: list[dict[str, Any]], options: dict[str, Any]) -> dict[str, Any]:
    h, w = run.image_size
    return {
        "schema": SCHEMA,
        "name": name,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "source_run": {
            "path": str(run.path.resolve()),
            "name": run.name,
            "model_sha256": run.model_sha256,
            "backbone": run.backbone,
            "image_size": [h, w],
            "classes": run.classes,
            "labels_file": "labels.json",
            "split_file": "split.json",
            "split_sha256": run.record.get("split_sha256") or sha256_file(run.split_path),
        },
        "input": {"name": "image", "shape": [-1, h, w, 3], "dtype": "float32", "range": [0, 255]},
        "output": {"name": "probabilities"},
        "artifacts": artifacts,
        "options": options,
        "versions": library_versions(),
    }


def load_manifest(export_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """Read an export's manifest.json, checking its schema."""
    path = Path(export_dir) / MANIFEST_FILE
    manifest = read_json(path, "export manifest")
    if not isinstance(manifest, dict) or manifest.get("schema") != SCHEMA:
        raise EdgexferError(f"{path} is not an edgexfer export manifest (schema {SCHEMA})", "point to a folder written by edgexfer export")
    return manifest


def is_export_dir(path: str | os.PathLike[str]) -> bool:
    try:
        load_manifest(path)
        return True
    except EdgexferError:
        return False

"""The artifacts an export writes: their file names and their manifest entries (contract section 4).

The manifest itself (schema, reader, writer) is ``edgexfer.contracts.manifest``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgexfer.io import sha256_file


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

"""Export stage: a finished run → ONNX FP32/FP16/INT8 (+ TensorRT engines) and manifest.json.

Importing this package never imports TensorFlow, ONNX Runtime or TensorRT; they load inside the
functions that use them.
"""

from __future__ import annotations

import sys
from typing import Any

from edgexfer.api import CallablePackage as _CallablePackage
from edgexfer.contracts.manifest import read_manifest_record as load_manifest
from edgexfer.export.config import CALIBRATION_METHODS, TARGETS, ExportConfig
from edgexfer.export.pipeline import export_run as _export_run


def export_run(config: ExportConfig | dict[str, Any]) -> dict[str, Any]:
    """Export a run; see `edgexfer.export.pipeline.export_run`."""

    return _export_run(config)


__all__ = ["CALIBRATION_METHODS", "TARGETS", "ExportConfig", "export_run", "load_manifest"]

# `from edgexfer import export` is this package: calling it runs edgexfer.api.export (config or keywords)
sys.modules[__name__].__class__ = _CallablePackage


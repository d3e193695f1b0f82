"""Export stage: a finished run → ONNX FP32/FP16/INT8 (+ TensorRT engines) and manifest.json.

Importing this package never imports TensorFlow, ONNX Runtime or TensorRT; they load inside the
functions that use them. This is a package, not a function: the Python API's export function is
``edgexfer.export_run`` (``edgexfer.api.export_run``: a config or its fields as keywords);
``edgexfer.export.export_run`` below takes an ``ExportConfig`` or a mapping of its fields.
"""

from __future__ import annotations

from edgexfer.contracts.manifest import read_manifest_record as load_manifest
from edgexfer.export.config import CALIBRATION_METHODS, TARGETS, ExportConfig
from edgexfer.export.pipeline import export_run

__all__ = ["CALIBRATION_METHODS", "TARGETS", "ExportConfig", "export_run", "load_manifest"]

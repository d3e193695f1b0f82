"""edgexfer: transfer learning for medical-image classifiers, from fine-tuning to a verified edge model.

Importing this package never imports TensorFlow: the bench and runtime path must work on a
Jetson that has only ONNX Runtime and TensorRT. Heavy modules are imported where they are used.

The Python API is here, loaded on first use (PEP 562)::

    from edgexfer import finetune, export, bench, compare
    from edgexfer import FinetuneConfig, ExportConfig, BenchConfig, CompareConfig

``export`` is the ``edgexfer.export`` package, which is callable as the export function.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from edgexfer.errors import EdgexferError, GateFailed, GateInconclusive  # noqa: E402

if TYPE_CHECKING:
    from edgexfer.api import bench, compare, export, finetune
    from edgexfer.config import FinetuneConfig
    from edgexfer.evaluate.bench import BenchConfig
    from edgexfer.export.config import ExportConfig
    from edgexfer.predict import Predictor
    from edgexfer.studies.compare import CompareConfig, TuneOptions
    from edgexfer.train.trainer import RunResult, load_run

_FUNCTIONS = ("finetune", "bench", "compare")
_CONFIGS = ("FinetuneConfig", "ExportConfig", "BenchConfig", "CompareConfig", "TuneOptions", "RunResult", "load_run")


def __getattr__(name: str) -> Any:
    if name in _FUNCTIONS:
        from edgexfer import api

        return getattr(api, name)
    if name == "export":  # the subpackage; importing it makes it callable (edgexfer.api.CallablePackage)
        return importlib.import_module("edgexfer.export")
    if name == "Predictor":  # a verified artifact on new images (edgexfer.predict, TensorFlow-free)
        from edgexfer.predict import Predictor

        return Predictor
    if name in _CONFIGS:
        from edgexfer.api import resolve

        return resolve(name)
    raise AttributeError(f"module 'edgexfer' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = ["__version__", "EdgexferError", "GateFailed", "GateInconclusive", "finetune", "export", "bench", "compare",
           "FinetuneConfig", "ExportConfig", "BenchConfig", "CompareConfig", "TuneOptions", "RunResult", "load_run", "Predictor"]

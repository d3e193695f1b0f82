"""edgexfer: transfer learning for medical-image classifiers, from fine-tuning to a verified edge model.

Importing this package never imports TensorFlow: the bench and runtime path must work on a
Jetson that has only ONNX Runtime and TensorRT. Heavy modules are imported where they are used.

The Python API is here, loaded on first use (PEP 562)::

    from edgexfer import finetune, export_run, bench, compare
    from edgexfer import FinetuneConfig, ExportConfig, BenchConfig, CompareConfig

``edgexfer.export`` is the export package; the export function is ``export_run``. This module's
``__getattr__`` is one of the two places where our modules are imported late (the other: the CLI's
command bodies), so that ``import edgexfer`` stays light; docs/architecture.md, "Imports".
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

from edgexfer.errors import EdgexferError, GateFailed, GateInconclusive  # noqa: E402

if TYPE_CHECKING:
    from edgexfer import export
    from edgexfer.api import (
        BenchConfig,
        CompareConfig,
        ExportConfig,
        FinetuneConfig,
        RunResult,
        TuneOptions,
        bench,
        compare,
        export_run,
        finetune,
        load_run,
    )
    from edgexfer.predict import Predictor

#: names this package hands out from edgexfer.api (the stages' functions, configs and results)
_API = ("finetune", "export_run", "bench", "compare", "FinetuneConfig", "ExportConfig", "BenchConfig",
        "CompareConfig", "TuneOptions", "RunResult", "load_run")


def __getattr__(name: str) -> Any:
    if name in _API:
        from edgexfer import api

        return getattr(api, name)
    if name == "export":  # the export package (its function is export_run)
        return importlib.import_module("edgexfer.export")
    if name == "Predictor":  # a verified artifact on new images (edgexfer.predict, TensorFlow-free)
        from edgexfer.predict import Predictor

        return Predictor
    raise AttributeError(f"module 'edgexfer' has no attribute '{name}'")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


__all__ = ["__version__", "EdgexferError", "GateFailed", "GateInconclusive", "finetune", "export_run", "export",
           "bench", "compare", "FinetuneConfig", "ExportConfig", "BenchConfig", "CompareConfig", "TuneOptions", "RunResult", "load_run", "Predictor"]

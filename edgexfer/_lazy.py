"""Lazy import of heavy optional modules, with the extra that installs them.

Never pip-installs anything: a missing module becomes one clear EdgexferError.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from edgexfer.errors import EdgexferError

# module -> the extra of edgexfer that provides it
_EXTRAS = {
    "tensorflow": "train",
    "keras": "train",
    "tf2onnx": "train",
    "onnxconverter_common": "train",
    "keras_tuner": "tune",
    "pydicom": "dicom",
    "tensorrt": "tensorrt",
    "cuda": "tensorrt",
}


def require(module: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` or raise an EdgexferError naming the extra to install."""
    from edgexfer.logs import configure

    configure()  # quiet TensorFlow's load-time notices unless EDGEXFER_VERBOSE is set (edgexfer.logs)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        extra = _EXTRAS.get(top)
        what = f"{purpose} needs" if purpose else "this needs"
        fix = f"install it with: pip install 'edgexfer[{extra}]'" if extra else f"install it with: pip install {top}"
        raise EdgexferError(f"{what} the Python module '{top}', which is not installed ({exc})", fix) from exc


def is_available(module: str) -> bool:
    """True when ``module`` can be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False

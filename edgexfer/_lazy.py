"""Lazy import of heavy optional modules, with the extra that installs them.

Never pip-installs anything: a missing module becomes one clear EdgexferError.

Typed code imports a module with stubs through ``missing_extra`` and a plain ``import`` statement
inside the function, so that mypy sees the real module (``import tensorrt as trt`` is checked against
tensorrt-stubs; a ``ModuleType`` returned by ``require`` would make every call on it unchecked)::

    with missing_extra("running TensorRT engines"):
        import tensorrt as trt

``require`` stays for modules without type information (keras, tensorflow, cuda-python).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType

from edgexfer.errors import EdgexferError
from edgexfer.logs import configure

# module -> the extra of edgexfer that provides it
_EXTRAS = {
    "tensorflow": "train",
    "keras": "train",
    "tf2onnx": "train",
    "onnxconverter_common": "train",
    "keras_tuner": "tune",
    "ray": "distributed",
    "pydicom": "dicom",
    "tensorrt": "tensorrt",
    "cuda": "tensorrt",
}


def missing_module_error(module: str, exc: ImportError, purpose: str | None = None) -> EdgexferError:
    """The one-line error for ``module`` failing to import, naming the extra that installs it."""
    top = module.split(".")[0]
    extra = _EXTRAS.get(top)
    what = f"{purpose} needs" if purpose else "this needs"
    fix = f"install it with: pip install 'edgexfer[{extra}]'" if extra else f"install it with: pip install {top}"
    return EdgexferError(f"{what} the Python module '{top}', which is not installed ({exc})", fix)


@contextmanager
def missing_extra(purpose: str | None = None) -> Iterator[None]:
    """Turn an ImportError raised by the ``import`` statements inside into the one-line EdgexferError."""
    try:
        yield
    except ImportError as exc:
        raise missing_module_error(exc.name or "an optional module", exc, purpose) from exc


def require(module: str, purpose: str | None = None) -> ModuleType:
    """Import ``module`` (untyped) or raise an EdgexferError naming the extra to install."""

    configure()  # quiet TensorFlow's load-time notices unless EDGEXFER_VERBOSE is set (edgexfer.logs)
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise missing_module_error(module, exc, purpose) from exc


def is_available(module: str) -> bool:
    """True when ``module`` can be imported, without importing it."""
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False

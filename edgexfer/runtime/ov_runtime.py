"""OpenVINO over an ONNX artifact (FP32, FP16, Q/DQ INT8), on the CPU (or an Intel GPU/NPU where OpenVINO lists one).

The precision is never left to OpenVINO's default: on a CPU with native BF16 the CPU plugin's default
``INFERENCE_PRECISION_HINT`` is bf16, which would run the float layers of an FP32, FP16 or INT8 file in bf16
and bench something other than the file. So every artifact is compiled with the hint f32, except the
``bf16`` artifact (the FP32 file, derived here where the CPU runs BF16 natively) which is compiled with bf16.
The threads (``INFERENCE_NUM_THREADS``) and the latency performance hint are set too, and what OpenVINO
executed (each layer type of the compiled model and its ``runtimePrecision``) is kept in ``execution``.

Sources: precision control https://docs.openvino.ai/2024/openvino-workflow/running-inference/optimize-inference/
precision-control.html; the execution graph's ``layerType``/``runtimePrecision`` rt_info
https://docs.openvino.ai/2024/api/c_cpp_api/group__ov__dev__exec__model.html.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from edgexfer._lazy import is_available, require
from edgexfer.errors import EdgexferError
from edgexfer.runtime.base import Artifact, Derived, Execution, InputSpec, Runtime
from edgexfer.versions import bf16_native

#: the inference precision hint per artifact precision: the file decides, except bf16 (the FP32 file in bf16)
PRECISION_HINTS = {"fp32": "f32", "fp16": "f32", "int8": "f32", "bf16": "bf16"}
_OV_TYPES = {"f32": "float32", "f16": "float16", "u8": "uint8"}
INSTALL = "pip install 'edgexfer[openvino]'"


def openvino_version() -> str | None:
    if not is_available("openvino"):
        return None
    import openvino as ov

    return str(ov.get_version()).split("-")[0]


def openvino_devices() -> list[str]:
    """The devices OpenVINO lists here (``Core().available_devices``: CPU, GPU.0, NPU…); empty without OpenVINO."""
    if not is_available("openvino"):
        return []
    import openvino as ov

    try:
        return [str(d) for d in ov.Core().available_devices]
    except RuntimeError:  # a broken plugin install: no device usable
        return []


def device_available(device: str) -> tuple[bool, str]:
    """Is OpenVINO's ``device`` (CPU, GPU, NPU) usable here? (bool, reason when not)."""
    if not is_available("openvino"):
        return False, f"openvino is not installed ({INSTALL})"
    devices = openvino_devices()
    if not any(d == device or d.startswith(device + ".") for d in devices):
        return False, f"OpenVINO lists no {device} device here (it lists: {', '.join(devices) or 'none'})"
    return True, "available"


def derive_bf16(artifacts: Sequence[Artifact]) -> Derived:
    """The ``bf16`` artifact: the FP32 ONNX file run with the bf16 precision hint, where the CPU has native BF16."""
    fp32 = next((a for a in artifacts if a.name == "fp32" and a.format == "onnx"), None)
    if fp32 is None:
        return Derived()
    ok, reason = bf16_native()
    if not ok:
        return Derived(skipped=(("bf16", reason),))
    record = {**fp32.record, "name": "bf16", "precision": "bf16", "derived_from": "fp32",
              "inference_precision_hint": PRECISION_HINTS["bf16"]}
    return Derived(artifacts=(replace(fp32, name="bf16", precision="bf16", record=record),))


class OvRuntime(Runtime):
    """One ``openvino.CompiledModel`` (and its single infer request) on one device."""

    name = "openvino"

    def __init__(self, artifact: Artifact, threads: int | None = None, device: str = "CPU"):
        ov = require("openvino", "running models with OpenVINO")
        if artifact.format != "onnx":
            raise EdgexferError(f"OpenVINO runs ONNX artifacts here, not {artifact.format} ({artifact.path.name})",
                                "choose an ONNX artifact or another runtime")
        hint = PRECISION_HINTS.get(artifact.precision)
        if hint is None:
            raise EdgexferError(f"OpenVINO has no precision hint for a {artifact.precision} artifact",
                                f"choose one of: {', '.join(PRECISION_HINTS)}")
        self.path = artifact.path
        self.device = device
        self.provider = f"OpenVINO {device}"
        threads = int(threads) if threads else _usable_cores()
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if device == "CPU":
            config["INFERENCE_NUM_THREADS"] = threads
        core = ov.Core()
        try:
            model = core.read_model(str(artifact.path))
            self._compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:  # OpenVINO raises RuntimeError for graphs and options it cannot take
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise EdgexferError(f"OpenVINO cannot compile {artifact.path.name} for {device}: {first}",
                                "re-export the model or choose another runtime") from exc
        granted = _type_name(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        if granted != hint:
            raise EdgexferError(f"OpenVINO {device} ran {artifact.path.name} with precision hint {granted}, "
                                f"not the {hint} asked for", "choose another runtime for this artifact")
        self._request = self._compiled.create_infer_request()
        inputs = self._compiled.inputs
        if len(inputs) != 1:
            raise EdgexferError(f"{artifact.path.name} has {len(inputs)} inputs; an exported model must have exactly one",
                                "re-export the model")
        port = inputs[0]
        dims = tuple(d.get_length() if d.is_static else None for d in port.get_partial_shape())
        self.input_spec = InputSpec(port.get_any_name(), dims, _OV_TYPES.get(port.get_element_type().get_type_name(),
                                                                             "float32"))
        self.max_batch = dims[0] if isinstance(dims[0], int) else None
        self._output = self._compiled.output(0)
        self.execution = Execution(
            library=f"openvino {openvino_version()}", device=device, precision_hint=granted,
            performance_hint=str(self._compiled.get_property("PERFORMANCE_HINT")),
            threads=_int_property(self._compiled, "INFERENCE_NUM_THREADS"),
            layer_precisions=layer_precisions(self._compiled))

    def _run(self, batch: np.ndarray) -> np.ndarray:
        # infer() returns after the request finished; the output is copied out of the request's memory
        return np.array(self._request.infer({0: batch})[self._output])

    def close(self) -> None:
        self._request = None
        self._compiled = None


def layer_precisions(compiled: Any) -> dict[str, dict[str, int]]:
    """Layer type -> runtime precision -> count, from the compiled model's execution graph (constants left out)."""
    counts: Counter[tuple[str, str]] = Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str)
        if layer != "Const":
            counts[(layer, info["runtimePrecision"].astype(str))] += 1
    out: dict[str, dict[str, int]] = {}
    for (layer, precision), n in sorted(counts.items()):
        out.setdefault(layer, {})[precision] = n
    return out


def _type_name(value: Any) -> str:
    """OpenVINO's element type (or its string) as the hint's short name: f32, bf16, f16."""
    name = getattr(value, "get_type_name", None)
    return str(name() if callable(name) else value)


def _int_property(compiled: Any, key: str) -> int | None:
    try:
        return int(compiled.get_property(key))
    except (RuntimeError, TypeError, ValueError):
        return None


def _usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)

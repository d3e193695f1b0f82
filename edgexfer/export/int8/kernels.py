"""Opt-in step of the INT8 stage (``--kernel-choice``, target ``cpu``): per convolution, the faster of ONNX
Runtime's two CPU int8 convolution kernels, as timed on the exporting machine.

The choice rests on timing, so it is off by default: two exports of the same run then write the same bytes.
When asked for, the file is tuned for the CPU that chose (`KernelChoice.cpu` names it) and the manifest records
what was moved and what was measured.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.runtime.ort_runtime import kernel_profile
from edgexfer.versions import machine_info

#: the weight zero point of the convolutions moved to ONNX Runtime's general int8 GEMM (`choose_cpu_kernels`)
SHIFTED_WEIGHT_ZERO_POINT = -1


@dataclass(frozen=True)
class KernelChoice:
    """What `choose_cpu_kernels` did: ``convolutions`` eligible, ``timed`` under both kernels, ``moved`` to the
    GEMM (their weights shifted, same values), the kernel time at batch 1 before (``symmetric_ms``) and after
    (``chosen_ms``), and the processor that chose with its int8 instruction sets."""

    convolutions: int
    timed: int
    moved: tuple[str, ...]
    symmetric_ms: float | None
    chosen_ms: float | None
    threads: int
    cpu: dict[str, Any]
    batch: int = 1

    def record(self) -> dict[str, Any]:
        return {"convolutions": self.convolutions, "timed": self.timed, "moved_to_gemm": len(self.moved),
                "symmetric_ms": self.symmetric_ms, "chosen_ms": self.chosen_ms, "batch": self.batch,
                "threads": self.threads, "moved": list(self.moved), "cpu": dict(self.cpu)}


def choose_cpu_kernels(
    qdq_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    image: np.ndarray,
    *,
    iterations: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> KernelChoice:
    """Pick, per convolution, the faster of ONNX Runtime's two CPU int8 convolution kernels, as measured here.

    ONNX Runtime runs a ``QLinearConv`` whose int8 weights have zero point 0 (symmetric, what `quantize`
    writes) on MLAS's symmetric convolution kernels (AVX-512 VNNI, AVX2), and one with any other weight zero
    point on its general int8 GEMM, which uses AMX tiles on CPUs that have them (Intel Xeon 4th generation and
    later) and then beats the symmetric kernels on the deeper layers. Moving a convolution to the GEMM changes
    no value: its int8 weights ``q`` (all in [-127, 127]) become ``q - 1`` with zero point ``-1``, so
    ``(q - 1) - (-1) = q`` and the integer sums are the same.

    Every eligible convolution is timed under both kernels with ONNX Runtime's profiler at batch 1 (each
    session alone, median over ``iterations`` calls), and those that run faster on the GEMM are moved. On a
    CPU without AMX none usually is, and the model is written unchanged.
    """
    import onnx

    threads = threads or len(os.sched_getaffinity(0))
    model = onnx.load(os.fspath(qdq_path))
    shiftable = _shiftable_convolutions(model)
    machine = machine_info()
    cpu = {"processor": machine["processor"], "int8_instructions": machine["int8_instructions"]}
    if not shiftable:
        onnx.save(model, os.fspath(out_path))
        return KernelChoice(0, 0, (), None, None, threads, cpu)
    batch = np.ascontiguousarray(image[:1], dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="edgexfer-kernels-") as tmp:
        shifted_path = Path(tmp) / "shifted.onnx"
        every = onnx.ModelProto()
        every.CopyFrom(model)  # the file as read, every eligible convolution moved
        onnx.save(_shift_weights(every, shiftable, shiftable), os.fspath(shifted_path))
        symmetric = _kernel_ms_by_node(qdq_path, batch, threads, iterations, warmup)
        gemm = _kernel_ms_by_node(shifted_path, batch, threads, iterations, warmup)
    timed = [name for name in shiftable if name in symmetric and name in gemm]
    moved = tuple(name for name in timed if gemm[name] < symmetric[name])
    onnx.save(_shift_weights(model, shiftable, moved), os.fspath(out_path))
    return KernelChoice(len(shiftable), len(timed), moved, round(sum(symmetric[n] for n in timed), 3),
                        round(sum(min(symmetric[n], gemm[n]) for n in timed), 3), threads, cpu)


def _shiftable_convolutions(model: Any) -> dict[str, tuple[str, str]]:
    """Conv name -> (int8 weight initializer, its zero point initializer), for the Conv nodes whose weight comes
    from a DequantizeLinear of an int8 initializer with zero point 0 and no value -128, neither shared."""
    from onnx import TensorProto, numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    dequantized = {node.output[0]: node for node in model.graph.node
                   if node.op_type == "DequantizeLinear" and len(node.input) == 3}
    out: dict[str, tuple[str, str]] = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in dequantized:
            continue
        dq = dequantized[node.input[1]]
        weight, zero_point = (initializers.get(dq.input[0]), initializers.get(dq.input[2]))
        if (weight is None or zero_point is None or weight.data_type != TensorProto.INT8
                or uses.get(weight.name) != 1 or uses.get(zero_point.name) != 1 or uses.get(dq.output[0]) != 1):
            continue
        if np.any(numpy_helper.to_array(zero_point) != 0) or numpy_helper.to_array(weight).min() < -127:
            continue
        out[node.name] = (weight.name, zero_point.name)
    return out


def _shift_weights(model: Any, shiftable: dict[str, tuple[str, str]], names: Iterable[str]) -> Any:
    """``model`` with the weights of the Conv nodes ``names`` moved by `SHIFTED_WEIGHT_ZERO_POINT` (same values)."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    for name in names:
        weight_name, zero_point_name = shiftable[name]
        weight = numpy_helper.to_array(initializers[weight_name]).astype(np.int16)
        zero_point = numpy_helper.to_array(initializers[zero_point_name])
        initializers[weight_name].CopyFrom(
            numpy_helper.from_array((weight + SHIFTED_WEIGHT_ZERO_POINT).astype(np.int8), weight_name))
        initializers[zero_point_name].CopyFrom(
            numpy_helper.from_array(np.full_like(zero_point, SHIFTED_WEIGHT_ZERO_POINT), zero_point_name))
    return model


def _kernel_ms_by_node(path: str | os.PathLike[str], batch: np.ndarray, threads: int, iterations: int,
                       warmup: int) -> dict[str, float]:
    """Median kernel ms per call of every node of the model at ``path`` that ONNX Runtime's CPU provider
    runs, keyed by the name of the node it came from (ONNX Runtime's layout pass renames ``X`` to
    ``X_token_<n>``)."""
    per_node: dict[str, list[float]] = {}
    for event in kernel_profile(path, batch, threads=threads, iterations=iterations, warmup=warmup):
        name = re.sub(r"_token_\d+$", "", event.node)
        per_node.setdefault(name, []).append(event.ms)
    return {name: float(np.median(times)) for name, times in per_node.items()}

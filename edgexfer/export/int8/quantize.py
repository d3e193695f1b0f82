"""The quantize step of the INT8 stage (`edgexfer.export.int8`): Q/DQ ONNX with ONNX Runtime's static quantization, from
the ranges `edgexfer.export.int8.calibrate` gathers in one pass over the calibration set.

Two target profiles (docs/architecture.md, "Precision pipeline"):
- ``tensorrt``: int8 activations and weights, symmetric (zero point 0), biases left float, Q/DQ on the inputs of
  the ops TensorRT runs in INT8 and off the Add inputs it fuses: a graph that keeps TensorRT's rules
  (export/tensorrt_rules.py, checked by export);
- ``cpu``: uint8 activations and int8 weights, what ONNX Runtime runs fastest on x86.
Weights are quantized per channel in both.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgexfer._lazy import is_available
from edgexfer.errors import EdgexferError
from edgexfer.export.int8.calibrate import CALIBRATION_CHUNK, METHODS, calibrate
from edgexfer.export.tensorrt_placement import unquantize_fused_add_inputs

#: the op types the ``tensorrt`` profile quantizes: weighted ops, residual Adds, pooling (TensorRT's Q/DQ placement
#: recommendations; the weighted/pooling/Add part of NVIDIA ModelOpt's INT8 ONNX op list). Not Clip/Relu/BN, which
#: TensorRT folds into the convolution before them (a Q/DQ between would split the fusion).
TENSORRT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool", "MaxPool")
#: ONNX Runtime extra_options of the ``tensorrt`` profile, as ModelOpt passes them to the same quantizer
#: (modelopt/onnx/quantization/ort_utils.py, configure_ort): no INT32 bias (TensorRT's DequantizeLinear takes
#: int8 only: edgexfer/export/tensorrt_rules.py), Q/DQ on inputs only, weights per output channel.
TENSORRT_EXTRA: dict[str, Any] = {
    "QuantizeBias": False,
    "OpTypesToExcludeOutputQuantization": list(TENSORRT_OP_TYPES),
    "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
    "DedicatedQDQPair": False,
    "ForceQuantizeNoInputCheck": True,
}
PROFILES: dict[str, dict[str, Any]] = {
    "tensorrt": {"activation_type": "QInt8", "weight_type": "QInt8", "symmetric_activations": True,
                 "op_types": TENSORRT_OP_TYPES, "extra": TENSORRT_EXTRA},
    "cpu": {"activation_type": "QUInt8", "weight_type": "QInt8", "symmetric_activations": False},
}


def preprocess(fp32_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> dict[str, Any]:
    """ORT's quantization pre-processing: shape inference and graph optimization (BN folding…).

    Symbolic shape inference needs sympy; without it ONNX shape inference is used (enough for our
    fixed-size CNNs). On failure the plain graph is copied and quantized: returns
    ``{"done": bool, "symbolic_shapes": bool, "error": str | None}``.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    symbolic = is_available("sympy")
    try:
        quant_pre_process(os.fspath(fp32_path), os.fspath(out_path), skip_symbolic_shape=not symbolic)
        return {"done": True, "symbolic_shapes": symbolic, "error": None}
    except Exception as exc:  # pre-processing is an optimization: quantize the plain graph instead
        shutil.copyfile(fp32_path, out_path)
        return {"done": False, "symbolic_shapes": symbolic, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}


@dataclass
class QuantOptions:
    """How to quantize beyond the target profile (the levers `benchmarks/compare_runtimes.py` measures).

    ``op_types``: node types to quantize (None: every type ONNX Runtime can quantize); ``fmt``: "QDQ"
    or "QOperator"; ``extra``: more ONNX Runtime ``extra_options`` (they win over the profile's).
    """

    op_types: Sequence[str] | None = None
    fmt: str = "QDQ"
    per_channel: bool = True
    reduce_range: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"op_types": sorted(self.op_types) if self.op_types else None, "format": self.fmt,
                "per_channel": self.per_channel, "reduce_range": self.reduce_range, "extra": dict(self.extra)}


def quantize(
    float_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    reader: Any,
    target: str,
    method: str,
    nodes_to_exclude: Sequence[str] = (),
    cache_path: str | os.PathLike[str] | None = None,
    options: QuantOptions | None = None,
) -> dict[str, Any]:
    """Quantize ``float_path`` (pre-processed FP32) to Q/DQ at ``out_path``; returns the settings used.

    Calibration is one pass over ``reader`` (`calibrate`); its ranges are kept at ``cache_path``
    (ONNX Runtime's calibration cache, JSON), so that a re-quantization with other excluded nodes
    does not calibrate again. ``reader`` may be None when ``cache_path`` holds the ranges.
    """
    from onnxruntime import quantization as q

    if target not in PROFILES:
        raise EdgexferError(f"unknown INT8 target '{target}'", f"use one of: {', '.join(PROFILES)}")
    if method not in METHODS:
        raise EdgexferError(f"unknown calibration method '{method}'", f"use one of: {', '.join(METHODS)}")
    options = options or QuantOptions()
    if options.fmt not in ("QDQ", "QOperator"):
        raise EdgexferError(f"unknown quantization format '{options.fmt}'", "use QDQ or QOperator")
    profile = PROFILES[target]
    extra = {"ActivationSymmetric": profile["symmetric_activations"], "WeightSymmetric": True,
             **profile.get("extra", {}), **options.extra}
    chosen_ops = options.op_types or profile.get("op_types")
    op_types = list(chosen_ops) if chosen_ops else None
    with tempfile.TemporaryDirectory(prefix="edgexfer-quantize-") as tmp_dir:
        cache = Path(cache_path) if cache_path is not None else Path(tmp_dir) / "ranges.json"
        if not cache.is_file():
            if reader is None:
                raise EdgexferError("no calibration data and no calibration cache", "pass a calibration set")
            ranges = calibrate(float_path, reader, method=method, op_types=op_types)
            q.calibrate.save_tensors_data(ranges, cache)
        # ORT prints progress lines to stdout, which belongs to the CLI's summary
        with contextlib.redirect_stdout(io.StringIO()):
            q.quantize_static(
                os.fspath(float_path),
                os.fspath(out_path),
                None,
                quant_format=getattr(q.QuantFormat, options.fmt),
                op_types_to_quantize=op_types,
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                activation_type=getattr(q.QuantType, profile["activation_type"]),
                weight_type=getattr(q.QuantType, profile["weight_type"]),
                calibrate_method=getattr(q.CalibrationMethod, METHODS[method]),
                nodes_to_exclude=list(nodes_to_exclude),
                extra_options=extra,
                calibration_cache_path=os.fspath(cache),
            )
    fused = _tensorrt_placement(out_path) if target == "tensorrt" and options.fmt == "QDQ" else None
    return {
        "target": target,
        "method": method,
        "format": options.fmt,
        "activation_type": profile["activation_type"],
        "weight_type": profile["weight_type"],
        "symmetric_activations": bool(extra["ActivationSymmetric"]),
        "symmetric_weights": True,
        "per_channel": options.per_channel,
        "reduce_range": options.reduce_range,
        "op_types": sorted(op_types) if op_types else "all",
        "quantize_bias": bool(extra.get("QuantizeBias", True)),
        "fused_add_inputs": fused,
        "calibration": f"one pass, histograms per tensor in batches of at most {CALIBRATION_CHUNK} images",
    }


def _tensorrt_placement(path: str | os.PathLike[str]) -> int:
    """TensorRT's residual-Add placement on the written graph (edgexfer/export/tensorrt_placement.py);
    returns the Add inputs left in float for TensorRT to fuse."""
    import onnx

    model = onnx.load(os.fspath(path))
    rewired = unquantize_fused_add_inputs(model)
    if rewired:
        onnx.save(model, os.fspath(path))
    return rewired

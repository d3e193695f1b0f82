"""TensorRT's rules for an explicitly quantized, strongly typed ONNX graph, as code.

A ``tensorrt``-target artifact (the INT8 Q/DQ file of ``--target tensorrt``, and the FP16 file of the same
export) must be a graph TensorRT's ONNX parser accepts on every TensorRT we target (10.3 on JetPack 6.x to
11.x on x86 and JetPack 7.2.2+). Each rule below names the document it comes from:

- onnx-tensorrt ``docs/operators.md`` (the operator support table of TensorRT's ONNX parser): the opset range,
  the supported types of each operator, DequantizeLinear on INT8/FP8/INT4 inputs only, zero points 0;
- TensorRT developer guide, "Working with Quantized Types" and "Explicit Quantization" (symmetric quantization,
  per-tensor activations, per-channel weights on the output-channel axis, Q/DQ placement);
- the failure users meet with ONNX Runtime's ``quantize_static`` defaults, which quantize biases to INT32:
  TensorRT then stops with "only activation types allowed as input to this layer" (NVIDIA/TensorRT#3360,
  onnx/onnx-tensorrt#850, microsoft/onnxruntime#14229 and #17738).

`check_graph` returns typed `Violation` records (node, rule, detail); `require_tensorrt_ready` raises
`EdgexferError` with one line naming the first node and its rule. ``onnx`` is imported inside the functions
(the bench/predict paths import this package without it being needed).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgexfer.errors import EdgexferError

OPERATORS_MD = "onnx-tensorrt docs/operators.md (TensorRT's ONNX parser support table)"
EXPLICIT_QUANTIZATION = 'TensorRT developer guide, "Working with Quantized Types" / "Explicit Quantization"'
BIAS_ISSUES = "NVIDIA/TensorRT#3360, onnx/onnx-tensorrt#850, microsoft/onnxruntime#14229, #17738"


@dataclass(frozen=True)
class Rule:
    """One rule: a short id, what it requires, and the document it comes from."""

    id: str
    requires: str
    source: str


@dataclass(frozen=True)
class Violation:
    """A node that breaks a rule (``node`` is the node's name, or its op type and index when it has none)."""

    node: str
    op_type: str
    rule: Rule
    detail: str

    def line(self) -> str:
        return f"node '{self.node}' ({self.op_type}) breaks TensorRT rule {self.rule.id}: {self.detail}"


DQ_INPUT_TYPE = Rule(
    "dq-input-type", "DequantizeLinear takes INT8 (or FP8 E4M3 / INT4) input, never INT32",
    f"{OPERATORS_MD}: DequantizeLinear supports INT8, FP8, INT4; INT32 biases fail ({BIAS_ISSUES})")
Q_OUTPUT_TYPE = Rule(
    "q-output-type", "QuantizeLinear produces INT8 (or FP8 E4M3 / INT4), not UINT8",
    f"{EXPLICIT_QUANTIZATION}: symmetric signed quantization; {OPERATORS_MD}: UINT8 only as network I/O")
ZERO_POINT = Rule(
    "zero-point", "every Q/DQ zero point is 0",
    f"{OPERATORS_MD}: `x_zero_point` / `y_zero_point` must be zero")
SCALE = Rule(
    "scale", "every Q/DQ scale is a constant, finite and > 0",
    f"{EXPLICIT_QUANTIZATION}: q = round(x / scale), symmetric; a scale of 0, < 0, inf or NaN has no meaning")
WEIGHT_AXIS = Rule(
    "weight-axis", "per-channel weight scales lie on the output-channel axis (Conv 0, ConvTranspose 1, "
    "Gemm 0 with transB else 1, MatMul the last)",
    f"{EXPLICIT_QUANTIZATION}: per-channel quantization of weights along the output channel (K) axis")
NO_BIAS_QUANTIZATION = Rule(
    "no-bias-quantization", "the bias of Conv/ConvTranspose/Gemm is float, not the output of a DequantizeLinear",
    f"{EXPLICIT_QUANTIZATION}: TensorRT quantizes only inputs and weights; {BIAS_ISSUES}")
STANDARD_DOMAIN = Rule(
    "standard-domain", "every node is in the standard ONNX domain (no com.microsoft or other contrib ops)",
    f"{OPERATORS_MD}: the parser imports standard ONNX operators only")
OPSET = Rule(
    "opset", "the ONNX opset is within 9..20, what TensorRT 10.3 to 11.x all parse",
    f"{OPERATORS_MD}: TensorRT 10.x parses opset 9 to 20 (later 10.x and 11.x up to 24/25)")
OPERATOR = Rule(
    "operator", "every operator is in TensorRT's support table for the type of its data input",
    OPERATORS_MD)

RULES: tuple[Rule, ...] = (DQ_INPUT_TYPE, Q_OUTPUT_TYPE, ZERO_POINT, SCALE, WEIGHT_AXIS, NO_BIAS_QUANTIZATION,
                           STANDARD_DOMAIN, OPSET, OPERATOR)

#: the opset range every TensorRT we target parses (10.3: 9..20; 11.x: 9..25)
OPSET_RANGE = (9, 20)

_F, _H, _BF = "FLOAT", "FLOAT16", "BFLOAT16"
_I32, _I64, _B = "INT32", "INT64", "BOOL"
_FLOATS = (_F, _H, _BF)
_ALL = (*_FLOATS, _I32, _I64, _B)
_NUMERIC = (*_FLOATS, _I32, _I64)
#: quantized types TensorRT's DequantizeLinear takes and QuantizeLinear produces (FP4 only from 10.8 on: left out)
QUANTIZED_TYPES = ("INT8", "FLOAT8E4M3FN", "INT4")

#: operator -> supported types of its data input (the first), from onnx-tensorrt's docs/operators.md
#: (TensorRT 10.x; 11.x supports a superset). Operators not listed are refused: add a row, with the table's
#: types, when a backbone needs one.
SUPPORTED_OPS: dict[str, tuple[str, ...]] = {
    "Abs": _NUMERIC, "Add": _NUMERIC, "AveragePool": _FLOATS, "BatchNormalization": _FLOATS,
    "Cast": (*_FLOATS, _I32, _I64, "UINT8", _B), "Ceil": _FLOATS, "Clip": _FLOATS, "Concat": _ALL,
    "Constant": _ALL, "ConstantOfShape": _ALL, "Conv": _FLOATS, "ConvTranspose": _FLOATS,
    "DepthToSpace": _NUMERIC, "DequantizeLinear": QUANTIZED_TYPES, "Div": _NUMERIC, "Dropout": _FLOATS,
    "Elu": _FLOATS, "Equal": _NUMERIC, "Erf": _FLOATS, "Exp": _FLOATS, "Expand": _ALL, "Flatten": _ALL,
    "Floor": _FLOATS, "Gather": _ALL, "Gemm": _FLOATS, "GlobalAveragePool": _FLOATS, "GlobalMaxPool": _FLOATS,
    "Greater": _NUMERIC, "HardSigmoid": _FLOATS, "HardSwish": _FLOATS, "Identity": _ALL,
    "InstanceNormalization": _FLOATS, "LayerNormalization": _FLOATS, "LeakyRelu": _FLOATS, "Less": _NUMERIC,
    "Log": _FLOATS, "MatMul": _FLOATS, "Max": _NUMERIC, "MaxPool": _FLOATS, "Mean": _NUMERIC, "Min": _NUMERIC,
    "Mul": _NUMERIC, "Neg": _NUMERIC, "Pad": _NUMERIC, "Pow": _FLOATS, "PRelu": _FLOATS,
    "QuantizeLinear": _FLOATS, "Reciprocal": _FLOATS, "ReduceMax": _NUMERIC, "ReduceMean": _NUMERIC,
    "ReduceMin": _NUMERIC, "ReduceSum": _NUMERIC, "Relu": _NUMERIC, "Reshape": _ALL, "Resize": _FLOATS,
    "Shape": _ALL, "Sigmoid": _FLOATS, "Slice": _ALL, "Softmax": _FLOATS, "Softplus": _FLOATS, "Split": _ALL,
    "Sqrt": _FLOATS, "Squeeze": _ALL, "Sub": _NUMERIC, "Sum": _NUMERIC, "Tanh": _FLOATS, "Tile": _ALL,
    "Transpose": _ALL, "Unsqueeze": _ALL, "Where": _ALL,
}
_STANDARD_DOMAINS = ("", "ai.onnx")
#: weight input index and output-channel axis per weighted op (Gemm depends on transB: resolved below)
_WEIGHTED = {"Conv": 0, "ConvTranspose": 1}
_BIASED = ("Conv", "ConvTranspose", "Gemm")


#: the TensorRT releases edgexfer targets, and where each comes from. One code path for all: a strongly typed
#: build, precision in the graph (TensorRT 11 removed weak typing; 10.x builds the same network strongly typed).
OLDEST_TENSORRT = (10, 3)


def tensorrt_target(version: str | None) -> str:
    """What a TensorRT version is in edgexfer's targets (JetPack 6.x ships 10.3; JetPack 7.x 10.13 and later,
    with 11.4.1 supported on JetPack 7.2.2+ for AGX Orin and Thor; x86 wheels are 11.x)."""
    if not version or version == "unknown":
        return "not installed: engines need TensorRT 10.3 (JetPack 6.x) to 11.x (x86 wheels, JetPack 7.2.2+)"
    try:
        major, minor = (int(p) for p in version.split(".")[:2])
    except ValueError:
        return f"TensorRT {version}: version not understood; edgexfer targets 10.3 to 11.x"
    same = "the same strongly typed build as every target"
    if (major, minor) < OLDEST_TENSORRT:
        return (f"TensorRT {version} is older than the oldest target (10.3, JetPack 6.x): its parser may refuse "
                f"our graphs; upgrade to 10.3+")
    if major == 10 and minor < 13:
        where = "JetPack 6.x (Jetson Orin)" if minor == 3 else "a 10.x wheel (JetPack ships 10.3 or 10.13+)"
        return f"TensorRT {version}: {where}; {same}"
    if major == 10:
        return f"TensorRT {version}: JetPack 7.x (10.13 and later); {same}"
    if major == 11:
        return (f"TensorRT {version}: 11.x, the x86 wheels and JetPack 7.2.2+ on Jetson AGX Orin and Thor "
                f"(11.4.1); no weak typing; {same}")
    return f"TensorRT {version}: newer than the targets edgexfer was checked against (10.3 to 11.x)"


def check_graph(model: Any) -> list[Violation]:
    """Every violation of `RULES` in ``model`` (an ``onnx.ModelProto`` or a path), in graph order."""
    import onnx
    from onnx import numpy_helper

    if not hasattr(model, "graph"):
        model = onnx.load(os.fspath(model))
    graph = model.graph
    violations: list[Violation] = []
    for opset in model.opset_import:
        if opset.domain in _STANDARD_DOMAINS and not OPSET_RANGE[0] <= opset.version <= OPSET_RANGE[1]:
            violations.append(Violation("<model>", "opset_import", OPSET,
                                        f"opset {opset.version} is outside {OPSET_RANGE[0]}..{OPSET_RANGE[1]}"))
    constants = {init.name: init for init in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant" and node.domain in _STANDARD_DOMAINS:
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                constants[node.output[0]] = value
    types = _tensor_types(model, onnx)
    consumers: dict[str, list[tuple[Any, int]]] = {}
    for node in graph.node:
        for index, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, index))

    for position, node in enumerate(graph.node):
        label = node.name or f"{node.op_type}#{position}"

        def flag(rule: Rule, detail: str, node: Any = node, label: str = label) -> None:
            violations.append(Violation(label, node.op_type, rule, detail))

        if node.domain not in _STANDARD_DOMAINS:
            flag(STANDARD_DOMAIN, f"domain '{node.domain}' is not standard ONNX")
            continue
        if node.op_type not in SUPPORTED_OPS:
            flag(OPERATOR, f"{node.op_type} is not in TensorRT's ONNX operator table")
            continue
        data_type = types.get(node.input[0]) if node.input and node.input[0] else None
        if node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            _check_qdq(node, data_type, constants, types, consumers, flag, numpy_helper)
        elif data_type is not None and data_type not in SUPPORTED_OPS[node.op_type]:
            flag(OPERATOR, f"{node.op_type} on {data_type} input is not supported "
                           f"(TensorRT takes {', '.join(SUPPORTED_OPS[node.op_type])})")
    return violations


#: what to do when an export's own tensorrt-target graph breaks a rule
EXPORT_FIX = ("nothing was written; export with --target cpu for ONNX Runtime, and report the backbone and the "
              "rule so that the tensorrt profile learns it")


def require_tensorrt_ready(path: str | os.PathLike[str], what: str | None = None, fix: str | None = None) -> None:
    """Raise `EdgexferError` (exit 2) naming the first node that breaks a rule, and how many others do."""
    violations = check_graph(path)
    if not violations:
        return
    first = violations[0]
    more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
    raise EdgexferError(
        f"{what or Path(path).name} is not a graph TensorRT accepts: {first.line()}{more}; source: {first.rule.source}",
        fix or "quantize with edgexfer export --target tensorrt, which writes a graph that keeps these rules")


# ------------------------------------------------------------------------------------------ helpers


def _check_qdq(node: Any, data_type: str | None, constants: dict[str, Any], types: dict[str, str],
               consumers: dict[str, list[tuple[Any, int]]], flag: Any, numpy_helper: Any) -> None:
    scale_name = node.input[1] if len(node.input) > 1 else ""
    zero_name = node.input[2] if len(node.input) > 2 else ""
    zero = numpy_helper.to_array(constants[zero_name]) if zero_name in constants else None
    if node.op_type == "DequantizeLinear":
        if data_type is not None and data_type not in QUANTIZED_TYPES:
            flag(DQ_INPUT_TYPE, f"its input '{node.input[0]}' is {data_type}"
                 + (" (a quantized bias)" if data_type == "INT32" else ""))
        for consumer, index in consumers.get(node.output[0], []):
            if consumer.op_type in _BIASED and index == 2:
                flag(NO_BIAS_QUANTIZATION, f"it dequantizes the bias of '{consumer.name or consumer.op_type}'")
        _check_weight_axis(node, constants, consumers, flag, numpy_helper)
    else:
        if data_type is not None and data_type not in SUPPORTED_OPS["QuantizeLinear"]:
            flag(OPERATOR, f"QuantizeLinear on {data_type} input is not supported")
        out_type = _quantize_output_type(node, zero_name, constants, types)
        if out_type not in QUANTIZED_TYPES:
            flag(Q_OUTPUT_TYPE, f"its output is {out_type}")
    if zero is not None and zero.size and bool((zero.astype("float64") != 0).any()):
        flag(ZERO_POINT, f"zero point '{zero_name}' holds {zero.ravel()[:4].tolist()}")
    if scale_name not in constants:
        flag(SCALE, f"scale '{scale_name}' is not a constant")
        return
    scale = numpy_helper.to_array(constants[scale_name]).astype("float64")
    bad = [float(v) for v in scale.ravel() if not (math.isfinite(float(v)) and float(v) > 0)]
    if bad:
        flag(SCALE, f"scale '{scale_name}' holds {bad[:4]}")


def _quantize_output_type(node: Any, zero_name: str, constants: dict[str, Any], types: dict[str, str]) -> str:
    """QuantizeLinear's output type: its zero point's type, or ``output_dtype`` (opset 21), else UINT8 (ONNX)."""
    import onnx

    if zero_name:
        zero = constants.get(zero_name)
        if zero is not None:
            return str(onnx.TensorProto.DataType.Name(zero.data_type))
        if zero_name in types:
            return types[zero_name]
    for attribute in node.attribute:
        if attribute.name == "output_dtype" and attribute.i:
            return str(onnx.TensorProto.DataType.Name(attribute.i))
    return "UINT8"


def _check_weight_axis(node: Any, constants: dict[str, Any], consumers: dict[str, list[tuple[Any, int]]],
                       flag: Any, numpy_helper: Any) -> None:
    """A per-channel DequantizeLinear feeding a weight must lie on the consumer's output-channel axis."""
    scale_name = node.input[1] if len(node.input) > 1 else ""
    if scale_name not in constants or len(constants[scale_name].dims) == 0:
        return  # per-tensor
    if numpy_helper.to_array(constants[scale_name]).size <= 1:
        return
    weight = node.input[0]
    rank = len(constants[weight].dims) if weight in constants else None
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    if rank is not None and axis < 0:
        axis += rank
    for consumer, index in consumers.get(node.output[0], []):
        if index != 1 or consumer.op_type not in (*_WEIGHTED, "Gemm", "MatMul"):
            continue
        if consumer.op_type == "Gemm":
            trans_b = next((a.i for a in consumer.attribute if a.name == "transB"), 0)
            expected = 0 if trans_b else 1
        elif consumer.op_type == "MatMul":
            if rank is None:
                continue
            expected = rank - 1
        else:
            expected = _WEIGHTED[consumer.op_type]
        if axis != expected:
            flag(WEIGHT_AXIS, f"per-channel axis {axis} on the weight of '{consumer.name or consumer.op_type}' "
                              f"({consumer.op_type}: output channels are axis {expected})")


def _tensor_types(model: Any, onnx: Any) -> dict[str, str]:
    """Element type name of every tensor ONNX shape inference can type (inputs, initializers, values)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # a graph ONNX cannot infer is typed from what it declares
        inferred = model
    graph = inferred.graph
    types: dict[str, str] = {}
    for value in (*graph.input, *graph.value_info, *graph.output):
        elem = value.type.tensor_type.elem_type
        if elem:
            types[value.name] = str(onnx.TensorProto.DataType.Name(elem))
    for init in graph.initializer:
        types[init.name] = str(onnx.TensorProto.DataType.Name(init.data_type))
    for node in graph.node:
        if node.op_type == "Constant":
            value = next((a.t for a in node.attribute if a.name == "value"), None)
            if value is not None:
                types[node.output[0]] = str(onnx.TensorProto.DataType.Name(value.data_type))
    return types

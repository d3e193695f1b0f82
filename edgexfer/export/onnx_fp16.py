"""FP16 ONNX from the FP32 graph: float32 input and output kept, numerically sensitive nodes left in FP32.

onnxconverter-common does the conversion (in the `train` extra, imported lazily). Kept in FP32:
its default block list, Softmax (probabilities near 0 and 1 lose their digits in FP16), and the
classifier: the nodes from the last MatMul/Gemm to the output, a few thousand MACs that decide the
diagnosis.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

from edgexfer._lazy import require
from edgexfer.export.keras_onnx import update_metadata
from edgexfer.io import atomic_path

#: op types kept in FP32 on top of onnxconverter-common's default block list
SENSITIVE_OP_TYPES = ("Softmax", "Exp", "Log", "Pow", "Erf")
_FP16_MAX = 65504.0
#: validation images the FP16 check runs on (ONNX Runtime runs FP16 slowly on CPUs; GPUs are its target)
CHECK_LIMIT = 64


def classifier_nodes(graph: Any) -> list[Any]:
    """The nodes between the last MatMul/Gemm and the graph output (both ends included)."""
    producer = {out: node for node in graph.node for out in node.output}
    chain: list[Any] = []
    name = graph.output[0].name
    while name in producer:
        node = producer[name]
        chain.append(node)
        if node.op_type in ("MatMul", "Gemm"):
            return chain
        data_inputs = [i for i in node.input if i in producer]
        if len(data_inputs) != 1:
            break
        name = data_inputs[0]
    return [n for n in chain if n.op_type == "Softmax"]  # no dense classifier found: keep the softmax


def convert_to_fp16(fp32_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> list[dict[str, str]]:
    """Write the FP16 model; return the nodes kept in FP32 as ``[{"name", "op_type", "reason"}]``."""
    onnx = require("onnx", "FP16 export")
    float16 = require("onnxconverter_common.float16", "FP16 export")

    model = onnx.load(os.fspath(fp32_path))
    op_block = set(float16.DEFAULT_OP_BLOCK_LIST) | set(SENSITIVE_OP_TYPES)
    classifier = classifier_nodes(model.graph)
    node_block = [n.name for n in classifier]
    kept = [{"name": n.name, "op_type": n.op_type, "reason": "classifier head kept in FP32"} for n in classifier]
    kept += [
        {"name": n.name, "op_type": n.op_type, "reason": f"{n.op_type} is numerically sensitive in FP16"}
        for n in model.graph.node
        if n.op_type in op_block and n.name not in node_block
    ]
    with warnings.catch_warnings():
        # one warning per weight below FP16's smallest normal value: thousands on a ResNet, none actionable
        warnings.simplefilter("ignore", UserWarning)
        converted = float16.convert_float_to_float16(
            model,
            keep_io_types=True,
            max_finite_val=_FP16_MAX,  # the default (1e4) would clip larger weights
            op_block_list=sorted(op_block),
            node_block_list=node_block,
        )
    _float32_outputs(converted)
    update_metadata(converted, {"edgexfer.precision": "fp16"})
    onnx.checker.check_model(converted)
    with atomic_path(out_path) as tmp:
        onnx.save(converted, os.fspath(tmp))
    return kept


def _float32_outputs(model: Any) -> None:
    """Make every graph output float32 again.

    onnxconverter-common casts the output of a blocked (FP32) last node back to FP16 and declares
    the graph output FP16, despite keep_io_types; turn that final Cast into a cast to float32
    (a no-op on an FP32 tensor), or add one.
    """
    from onnx import TensorProto, helper

    producer = {out: node for node in model.graph.node for out in node.output}
    for output in model.graph.output:
        tensor_type = output.type.tensor_type
        if tensor_type.elem_type == TensorProto.FLOAT:
            continue
        node = producer.get(output.name)
        if node is not None and node.op_type == "Cast":
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = TensorProto.FLOAT
        elif node is not None:
            inner = f"{output.name}_fp16"
            node.output[list(node.output).index(output.name)] = inner
            model.graph.node.append(helper.make_node("Cast", [inner], [output.name], to=TensorProto.FLOAT,
                                                     name=f"{output.name}_cast_to_float32"))
        tensor_type.elem_type = TensorProto.FLOAT

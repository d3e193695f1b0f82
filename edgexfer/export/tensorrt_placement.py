"""Q/DQ placement TensorRT fuses, applied to ONNX Runtime's Q/DQ output for the ``tensorrt`` INT8 profile.

TensorRT fuses a residual Add into the convolution (or Gemm/MatMul) that produces one of its inputs; a Q/DQ pair
on that input splits the fusion. Its guide therefore quantizes the *residual* input of an Add and leaves the
branch it fuses in float (TensorRT developer guide, "Explicit Quantization", Q/DQ layer-placement
recommendations: the suboptimal/optimal fusion figure; NVIDIA's TensorFlow quantization toolkit,
``ResNetV1QDQCase``; NVIDIA ModelOpt's ONNX quantizer does the same with ``build_non_residual_input_map`` and
``remove_partial_input_qdq``). ONNX Runtime quantizes both inputs of every Add it quantizes, so this pass
removes the pair on the fusible input. Both the removal and its graph stay within TensorRT's rules
(edgexfer/export/tensorrt_rules.py): it only takes nodes away.
"""

from __future__ import annotations

from typing import Any

#: ops TensorRT fuses a following residual Add into
FUSIBLE_PRODUCERS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def unquantize_fused_add_inputs(model: Any) -> int:
    """Rewire, in place, each Add whose two inputs are both dequantized and one of them comes from a
    convolution (or Gemm/MatMul) through a Q/DQ pair: that input reads the producer directly. Pairs left
    without consumers are removed. Returns how many Add inputs were rewired."""
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    rewired = 0
    for node in graph.node:
        if node.op_type != "Add" or len(node.input) != 2:
            continue
        sources = [_dequantized_source(name, producer) for name in node.input]
        if any(source is None for source in sources):
            continue  # the Add is not quantized on both inputs: nothing to fuse here
        for index, source in enumerate(sources):
            if source is not None and source.op_type in FUSIBLE_PRODUCERS:
                node.input[index] = source.output[0]
                rewired += 1
                break  # one branch fuses; the other (the residual) stays quantized
    if rewired:
        _remove_dead_qdq(graph)
    return rewired


def _dequantized_source(name: str, producer: dict[str, Any]) -> Any | None:
    """The node whose output reaches ``name`` through QuantizeLinear -> DequantizeLinear, else None."""
    dq = producer.get(name)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    q = producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return None
    return producer.get(q.input[0])


def _remove_dead_qdq(graph: Any) -> None:
    """Drop Q/DQ nodes whose outputs nothing reads, then the initializers nothing reads."""
    outputs = {o.name for o in graph.output}
    while True:
        used = {name for node in graph.node for name in node.input} | outputs
        dead = [n for n in graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")
                and not any(o in used for o in n.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    used = {name for node in graph.node for name in node.input} | outputs
    for init in [i for i in graph.initializer if i.name not in used]:
        graph.initializer.remove(init)

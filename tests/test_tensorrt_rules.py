"""TensorRT's rules for a tensorrt-target graph (edgexfer/export/tensorrt_rules.py): each rule refuses a small
hand-built graph that breaks it, ONNX Runtime's stock `quantize_static` output is refused (its INT32 biases,
the failure users report), our `tensorrt` INT8 profile passes, and export refuses a graph that breaks a rule."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgexfer.errors import EdgexferError
from edgexfer.export import tensorrt_rules as rules


def _init(name, array, dtype=None):
    array = np.asarray(array, dtype=dtype)
    return numpy_helper.from_array(array, name)


def _model(nodes, inits, *, opset=17, x_type=TensorProto.FLOAT, out_type=TensorProto.FLOAT, out_shape=None,
           in_shape=(1, 2, 4, 4)):
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", x_type, list(in_shape))],
        [helper.make_tensor_value_info("y", out_type, out_shape)], initializer=inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    return model


def _conforming(*, w_axis=0, zero=0, scale=0.05, x_scale=0.1, q_zero_dtype=np.int8, bias_dq=False, opset=17):
    """x -> Q/DQ -> Conv(DQ(int8 weights, per channel), float bias) -> y: what our tensorrt profile writes."""
    w = np.ones((3, 2, 1, 1), np.int8)
    nodes = [
        helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="x_Q"),
        helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="x_DQ"),
        helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], name="w_DQ", axis=w_axis),
    ]
    inits = [_init("xs", x_scale, np.float32), _init("xz", zero, q_zero_dtype), _init("w", w),
             _init("ws", np.full(w.shape[w_axis], scale, np.float32)),
             _init("wz", np.zeros(w.shape[w_axis], np.int8))]
    if bias_dq:
        nodes.append(helper.make_node("DequantizeLinear", ["b", "bs", "bz"], ["bd"], name="b_DQ"))
        inits += [_init("b", [1, 2, 3], np.int8), _init("bs", 0.01, np.float32), _init("bz", 0, np.int8)]
    else:
        inits.append(_init("bd", [0.1, 0.2, 0.3], np.float32))
    nodes.append(helper.make_node("Conv", ["xd", "wd", "bd"], ["y"], name="conv"))
    return _model(nodes, inits, opset=opset)


def _ids(model):
    return [(v.node, v.rule.id) for v in rules.check_graph(model)]


def test_a_conforming_graph_passes_and_every_rule_names_its_source():
    assert _ids(_conforming()) == []
    assert len({r.id for r in rules.RULES}) == len(rules.RULES) >= 9
    assert all(r.source and r.requires for r in rules.RULES)


@pytest.mark.parametrize("model, expected", [
    pytest.param(_conforming(zero=3), [("x_Q", "zero-point"), ("x_DQ", "zero-point")], id="zero-point"),
    pytest.param(_conforming(q_zero_dtype=np.uint8), [("x_Q", "q-output-type"), ("x_DQ", "dq-input-type")],
                 id="uint8-activations"),
    pytest.param(_conforming(x_scale=0.0), [("x_Q", "scale"), ("x_DQ", "scale")], id="scale-zero"),
    pytest.param(_conforming(x_scale=float("nan")), [("x_Q", "scale"), ("x_DQ", "scale")], id="scale-nan"),
    pytest.param(_conforming(scale=-1.0), [("w_DQ", "scale")], id="scale-negative"),
    pytest.param(_conforming(w_axis=1), [("w_DQ", "weight-axis")], id="weight-axis"),
    pytest.param(_conforming(bias_dq=True), [("b_DQ", "no-bias-quantization")], id="bias-quantized"),
    pytest.param(_conforming(opset=21), [("<model>", "opset")], id="opset"),
])
def test_each_rule_refuses_a_graph_that_breaks_it(model, expected):
    assert _ids(model) == expected


def test_an_int32_dequantize_is_refused():
    nodes = [helper.make_node("DequantizeLinear", ["b", "bs"], ["bd"], name="bias_DQ"),
             helper.make_node("Add", ["x", "bd"], ["y"], name="add")]
    model = _model(nodes, [_init("b", [1, 2], np.int32), _init("bs", 0.01, np.float32)], in_shape=(2,))
    assert _ids(model) == [("bias_DQ", "dq-input-type")]


def test_contrib_domain_unknown_operator_and_unsupported_types_are_refused():
    contrib = helper.make_node("FastGelu", ["x"], ["y"], name="gelu", domain="com.microsoft")
    model = _model([contrib], [])
    model.opset_import.append(helper.make_opsetid("com.microsoft", 1))
    assert _ids(model) == [("gelu", "standard-domain")]
    assert _ids(_model([helper.make_node("Det", ["x"], ["y"], name="det")], [], in_shape=(2, 2))) == [
        ("det", "operator")]
    # Sqrt is in the table for floats only
    sqrt = _model([helper.make_node("Sqrt", ["x"], ["y"], name="root")], [], x_type=TensorProto.INT32,
                  out_type=TensorProto.INT32, in_shape=(2,))
    assert _ids(sqrt) == [("root", "operator")]


def test_require_names_the_node_the_rule_and_its_source_in_one_line(tmp_path):
    path = tmp_path / "model_int8_tensorrt.onnx"
    onnx.save(_conforming(w_axis=1, x_scale=0.0), path)
    with pytest.raises(EdgexferError) as info:
        rules.require_tensorrt_ready(path)
    line = str(info.value)
    assert "\n" not in line and info.value.exit_code == 2
    assert "model_int8_tensorrt.onnx" in line and "node 'x_Q'" in line and "rule scale" in line
    assert "(and 2 more)" in line and "Explicit Quantization" in line
    onnx.save(_conforming(), path)
    rules.require_tensorrt_ready(path)  # conforming: no error


# ------------------------------------------------------------------------------ ONNX Runtime's quantizer


def _float_conv_model(path):
    """A float Conv with a bias, as tf2onnx/ORT pre-processing write after folding BatchNormalization."""
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Conv", ["r", "w2", "b2"], ["c2"], name="conv2"),
             helper.make_node("Add", ["c2", "r"], ["y"], name="residual")]
    inits = [_init("w", rng.normal(size=(4, 2, 3, 3)), np.float32), _init("b", rng.normal(size=4), np.float32),
             _init("w2", rng.normal(size=(4, 4, 1, 1)), np.float32), _init("b2", rng.normal(size=4), np.float32)]
    onnx.save(_model(nodes, inits, opset=17, in_shape=(1, 2, 8, 8)), path)
    return [rng.normal(size=(1, 2, 8, 8)).astype(np.float32) for _ in range(4)]


class _Reader:
    def __init__(self, batches):
        self._it = iter([{"x": b} for b in batches])

    def get_next(self):
        return next(self._it, None)


def test_onnx_runtime_stock_quantize_static_is_refused_for_its_int32_bias(tmp_path):
    from onnxruntime.quantization import quantize_static

    batches = _float_conv_model(tmp_path / "float.onnx")
    quantize_static(str(tmp_path / "float.onnx"), str(tmp_path / "stock.onnx"), _Reader(batches))
    found = {(v.rule.id, v.op_type) for v in rules.check_graph(tmp_path / "stock.onnx")}
    assert ("dq-input-type", "DequantizeLinear") in found and ("no-bias-quantization", "DequantizeLinear") in found
    with pytest.raises(EdgexferError, match="rule (dq-input-type|zero-point)"):
        rules.require_tensorrt_ready(tmp_path / "stock.onnx")


def test_our_tensorrt_profile_conforms_and_places_qdq_where_tensorrt_fuses(tmp_path):
    from edgexfer.export.int8.quantize import quantize

    batches = _float_conv_model(tmp_path / "float.onnx")
    quantize(tmp_path / "float.onnx", tmp_path / "trt.onnx", reader=batches, target="tensorrt", method="minmax")
    model = onnx.load(tmp_path / "trt.onnx")
    assert rules.check_graph(model) == []
    producer = {o: n for n in model.graph.node for o in n.output}
    conv = next(n for n in model.graph.node if n.name == "conv")
    assert conv.input[2] == "b"  # the bias stays float
    assert producer[conv.input[1]].op_type == "DequantizeLinear"  # int8 weights
    assert producer[conv.input[0]].op_type == "DequantizeLinear"  # quantized input
    # Q/DQ on inputs only: the Relu TensorRT fuses into the convolution reads the Conv output directly
    relu = next(n for n in model.graph.node if n.op_type == "Relu")
    assert producer[relu.input[0]].op_type == "Conv"
    # the residual Add: its residual input quantized, the convolution branch it fuses into left in float
    add = next(n for n in model.graph.node if n.op_type == "Add")
    assert [producer[i].op_type for i in add.input] == ["Conv", "DequantizeLinear"]
    assert producer[producer[add.input[1]].input[0]].op_type == "QuantizeLinear"
    assert not [n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "c2"]  # no dead pair
    assert {i.name for i in model.graph.initializer} <= {i for n in model.graph.node for i in n.input}
    # the cpu profile (uint8 activations, ONNX Runtime's fastest on x86) is not a TensorRT graph
    quantize(tmp_path / "float.onnx", tmp_path / "cpu.onnx", reader=batches, target="cpu", method="minmax")
    assert "q-output-type" in {v.rule.id for v in rules.check_graph(tmp_path / "cpu.onnx")}


def test_placement_leaves_one_fusible_branch_of_an_add_in_float():
    """A projection shortcut: both Add inputs come from convolutions through Q/DQ pairs; TensorRT fuses the Add
    into one of them, so exactly one pair goes and the other input stays quantized."""
    from edgexfer.export.tensorrt_placement import unquantize_fused_add_inputs

    nodes, inits = [], [_init("s", 0.1, np.float32), _init("z", 0, np.int8)]
    for branch in ("a", "b"):
        inits.append(_init(f"w{branch}", np.ones((2, 2, 1, 1)), np.float32))
        nodes += [helper.make_node("Conv", ["x", f"w{branch}"], [f"c{branch}"], name=f"conv_{branch}"),
                  helper.make_node("QuantizeLinear", [f"c{branch}", "s", "z"], [f"q{branch}"], name=f"q_{branch}"),
                  helper.make_node("DequantizeLinear", [f"q{branch}", "s", "z"], [f"d{branch}"], name=f"dq_{branch}")]
    nodes.append(helper.make_node("Add", ["da", "db"], ["y"], name="add"))
    model = _model(nodes, inits)
    assert unquantize_fused_add_inputs(model) == 1
    add = model.graph.node[-1]
    assert list(add.input) == ["ca", "db"]
    assert [n.name for n in model.graph.node] == ["conv_a", "conv_b", "q_b", "dq_b", "add"]
    assert rules.check_graph(model) == []
    assert unquantize_fused_add_inputs(model) == 0  # the Add is no longer quantized on both inputs

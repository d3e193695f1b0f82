"""The one-input rule over the backbone registry: every registered backbone exports to ONNX with the single
input ``image`` and the single output ``probabilities``, matching Keras (weights=None, smallest size).
The same ONNX then goes through the ``tensorrt``-target FP16 and INT8 conversions, and both must keep TensorRT's
rules (edgexfer/export/tensorrt_rules.py): what `edgexfer export --engine` would hand to TensorRT's parser.

tf2onnx takes 5–40 s per real backbone at its smallest size on two cores, so every one but TinyCNN is
marked `slow` (CI runs them all: the one-input rule must hold for each registered backbone, siblings
included, since e.g. EfficientNetB1–B3 differ from B0 in the layers that broke it).
"""

from __future__ import annotations

import numpy as np
import pytest

from edgexfer.backbones import list_backbones


def _param(spec):
    marks = [] if spec.name == "tinycnn" else [pytest.mark.slow]
    return pytest.param(spec.name, id=spec.name, marks=marks)


@pytest.mark.parametrize("name", [_param(spec) for spec in list_backbones()])
def test_backbone_exports_with_one_input_and_keras_parity(name, tmp_path):
    from edgexfer.backbones import build_model, get_backbone
    from edgexfer.export.keras_onnx import keras_predict, keras_to_onnx, onnx_io
    from edgexfer.runtime.ort_runtime import OrtRuntime, predict_onnx

    spec = get_backbone(name)
    size = max(spec.min_size, 32)
    model = build_model(name, num_classes=3, image_size=size, weights="none")
    path = tmp_path / f"{name}.onnx"
    keras_to_onnx(model, path, image_size=(size, size), opset=17, metadata={"edgexfer.backbone": name})
    assert onnx_io(path) == (["image"], ["probabilities"])
    with OrtRuntime(path) as runtime:
        assert runtime.input_spec.name == "image"
        assert runtime.input_spec.shape == (None, size, size, 3)
    images = np.random.default_rng(0).integers(0, 256, (2, size, size, 3)).astype(np.float32)
    np.testing.assert_allclose(predict_onnx(path, images), keras_predict(model, images, 2), atol=1e-4)
    _tensorrt_targets_conform(path, images, tmp_path)


def _tensorrt_targets_conform(fp32_path, images, tmp_path):
    """The tensorrt-target FP16 and INT8 graphs of ``fp32_path`` break none of TensorRT's rules."""
    from edgexfer.export.int8.quantize import preprocess, quantize
    from edgexfer.export.onnx_fp16 import convert_to_fp16
    from edgexfer.export.tensorrt_rules import check_graph

    fp16 = tmp_path / "model_fp16.onnx"
    convert_to_fp16(fp32_path, fp16)
    assert [v.line() for v in check_graph(fp16)] == []
    prepared, int8 = tmp_path / "prepared.onnx", tmp_path / "model_int8_tensorrt.onnx"
    preprocess(fp32_path, prepared)
    quantize(prepared, int8, reader=[images], target="tensorrt", method="minmax")  # a few random images
    assert [v.line() for v in check_graph(int8)] == []

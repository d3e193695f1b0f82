"""The one-input rule over the backbone registry: every registered backbone exports to ONNX with the single
input ``image`` and the single output ``probabilities``, matching Keras (weights=None, smallest size).

tf2onnx takes 15–150 s per real backbone on two cores, so: TinyCNN runs always; one backbone per family
runs as `slow`; its same-family siblings (same builder code, same layers) run when
EDGEXFER_TEST_ALL_BACKBONES=1 (about 10 minutes for the whole registry on two cores).
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from edgexfer.backbones import list_backbones

FAMILY_REPRESENTATIVES = {"vgg16", "resnet50", "inceptionv3", "efficientnetb0", "densenet121", "mobilenetv3small"}
ALL = os.environ.get("EDGEXFER_TEST_ALL_BACKBONES") == "1"


def _param(spec):
    if spec.name == "tinycnn":
        return pytest.param(spec.name, id=spec.name)
    marks = [pytest.mark.slow]
    if spec.name not in FAMILY_REPRESENTATIVES and spec.family not in {"plain"}:
        marks.append(pytest.mark.skipif(not ALL, reason=f"same family as a tested backbone ({spec.family}); "
                                                         "set EDGEXFER_TEST_ALL_BACKBONES=1"))
    return pytest.param(spec.name, id=spec.name, marks=marks)


def test_every_family_is_covered():
    families = {spec.family for spec in list_backbones()}
    covered = {spec.family for spec in list_backbones() if spec.name in FAMILY_REPRESENTATIVES or spec.name == "tinycnn"}
    assert families == covered, f"families without a representative in this test: {families - covered}"


@pytest.mark.parametrize("name", [_param(spec) for spec in list_backbones()])
def test_backbone_exports_with_one_input_and_keras_parity(name, tmp_path):
    from edgexfer.backbones import build_model, get_backbone
    from edgexfer.export import _ort
    from edgexfer.export.keras_onnx import keras_predict, keras_to_onnx, onnx_io

    spec = get_backbone(name)
    size = max(spec.min_size, 32)
    model = build_model(name, num_classes=3, image_size=size, weights="none")
    path = tmp_path / f"{name}.onnx"
    keras_to_onnx(model, path, image_size=(size, size), opset=17, metadata={"edgexfer.backbone": name})
    assert onnx_io(path) == (["image"], ["probabilities"])
    session = _ort.cpu_session(path)
    assert [i.name for i in session.get_inputs()] == ["image"]
    images = np.random.default_rng(0).integers(0, 256, (2, size, size, 3)).astype(np.float32)
    np.testing.assert_allclose(_ort.predict(path, images), keras_predict(model, images, 2), atol=1e-4)

"""The backbone registry: every backbone builds with every head and classifies raw pixels."""

import dataclasses

import numpy as np
import pytest

from edgexfer.backbones import HEADS, build_base, build_model, get_backbone, get_base, list_backbones
from edgexfer.errors import EdgexferError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

# builds in a few seconds on two cores; the others are real-size networks (marked slow)
LIGHT = {"tinycnn", "mobilenetv2", "mobilenetv3small", "mobilenetv3large", "vgg16"}


def _registry_params():
    for spec in list_backbones():
        marks = [] if spec.name in LIGHT else [pytest.mark.slow]
        yield pytest.param(spec.name, marks=marks, id=spec.name)


@pytest.mark.parametrize("name", _registry_params())
def test_backbone_builds_with_each_head_and_classifies_raw_pixels(name):
    spec = get_backbone(name)
    size = spec.min_size
    pixels = np.random.default_rng(0).uniform(0, 255, size=(2, size, size, 3)).astype(np.float32)
    for head in HEADS:
        model = build_model(name, num_classes=3, image_size=size, head=head, weights="none")
        assert model.layers[0].name == "image" and tuple(model.inputs[0].shape) == (None, size, size, 3)
        assert model.layers[-1].name == "probabilities" and model.outputs[0].dtype == "float32"
        out = np.asarray(model(pixels, training=False))
        assert out.shape == (2, 3)
        np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)
    base = get_base(model)
    assert base.count_params() == spec.parameters, "update the parameter count in presets.py"
    names = [layer.name for layer in base.layers]
    for point in spec.unfreeze_points:
        assert any(n.startswith(point) for n in names), f"unfreeze point {point!r} matches no layer"
    # preprocessing is constant arithmetic inside the model: no Normalization state left anywhere
    import keras

    nested = [layer for layer in base.layers] + list(model.layers)
    assert not any(isinstance(layer, keras.layers.Normalization) for layer in nested)


def test_unknown_backbone_names_the_closest():
    with pytest.raises(EdgexferError, match=r"unknown backbone 'resnet5'.*closest: resnet50"):
        get_backbone("resnet5")
    assert get_backbone("ResNet50").name == "resnet50"


def test_image_size_below_minimum_is_refused():
    with pytest.raises(EdgexferError, match="below the minimum of 75 px for backbone inceptionv3"):
        get_backbone("inceptionv3").check_image_size(64)
    assert get_backbone("vgg16").check_image_size(None) == (224, 224)


def test_caffe_preprocessing_swaps_to_bgr_and_subtracts_the_mean():
    model = build_model("vgg16", 2, 32, weights="none")
    prep = model.get_layer("preprocess_caffe")
    rgb = np.zeros((1, 1, 1, 3), dtype=np.float32)
    rgb[..., 0] = 200.0  # red
    out = np.asarray(prep(rgb))[0, 0, 0]
    np.testing.assert_allclose(out, [0 - 103.939, 0 - 116.779, 200 - 123.68], rtol=1e-6)


def test_torch_preprocessing_standardizes_with_imagenet_statistics():
    model = build_model("efficientnetb0", 2, 32, weights="none")
    prep = model.get_layer("preprocess_torch")
    out = np.asarray(prep(np.full((1, 1, 1, 3), 255.0, dtype=np.float32)))[0, 0, 0]
    np.testing.assert_allclose(out, [(1 - 0.485) / 0.229, (1 - 0.456) / 0.224, (1 - 0.406) / 0.225], rtol=1e-5)


def test_saved_model_reloads_with_plain_keras(tmp_path):
    import keras

    model = build_model("vgg16", 3, 32, head="attention", weights="none")
    pixels = np.random.default_rng(1).uniform(0, 255, size=(2, 32, 32, 3)).astype(np.float32)
    model.save(tmp_path / "m.keras")
    again = keras.saving.load_model(tmp_path / "m.keras")
    np.testing.assert_allclose(np.asarray(again(pixels)), np.asarray(model(pixels)), atol=1e-6)


# ---------------------------------------------------------------------------------------- weights


def test_weights_file_of_the_backbone_is_loaded(tmp_path):
    spec = get_backbone("tinycnn")
    source = build_base(spec, 32, "none")
    rng = np.random.default_rng(0)
    source.set_weights([rng.normal(size=w.shape).astype(np.float32) for w in source.get_weights()])
    path = tmp_path / "tinycnn.weights.h5"
    source.save_weights(path)
    model = build_model("tinycnn", 3, 32, weights=str(path))
    for got, want in zip(get_base(model).get_weights(), source.get_weights(), strict=True):
        np.testing.assert_array_equal(got, want)


def test_weights_file_of_another_backbone_is_refused(tmp_path):
    other = build_base(get_backbone("mobilenetv3small"), 32, "none")
    path = tmp_path / "mobilenet.weights.h5"
    other.save_weights(path)
    with pytest.raises(EdgexferError, match="does not fit backbone tinycnn"):
        build_model("tinycnn", 3, 32, weights=str(path))


def test_unreadable_or_missing_weights_file_is_refused(tmp_path):
    junk = tmp_path / "junk.weights.h5"
    junk.write_bytes(b"not an hdf5 file")
    with pytest.raises(EdgexferError, match="cannot be read as a Keras weights file"):
        build_model("tinycnn", 3, 32, weights=str(junk))
    with pytest.raises(EdgexferError, match="does not exist"):
        build_model("tinycnn", 3, 32, weights=str(tmp_path / "absent.h5"))


def test_imagenet_download_failure_names_the_offline_option(monkeypatch):
    import edgexfer.backbones.registry as registry

    def offline(input_shape, weights):
        raise Exception("URL fetch failure on https://storage.googleapis.com/…: None -- [Errno -3] name resolution")

    spec = get_backbone("mobilenetv2")
    monkeypatch.setitem(registry._REGISTRY, "mobilenetv2", dataclasses.replace(spec, builder=offline))
    with pytest.raises(EdgexferError, match=r"could not get the ImageNet weights.*--weights PATH"):
        build_model("mobilenetv2", 3, 32, weights="imagenet")
    with pytest.raises(EdgexferError, match="tinycnn has no ImageNet weights"):
        build_model("tinycnn", 3, 32, weights="imagenet")


def test_listing_backbones_needs_no_tensorflow():
    """`edgexfer backbones` works where TensorFlow is absent (a Jetson running bench)."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
            "import edgexfer.backbones, edgexfer.train, edgexfer.config, edgexfer.report.plots\n"
            "from edgexfer.cli import main\n"
            "main(['backbones'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "efficientnetb0" in proc.stdout

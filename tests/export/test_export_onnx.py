"""FP32 ONNX export: one input, one output, metadata, parity with Keras, manifest, copies of the run files."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest

from edgexfer.io import sha256_file


@pytest.fixture(scope="module")
def manifest(tiny_export):
    return json.loads((tiny_export / "manifest.json").read_text())


def test_fp32_has_one_image_input_and_probabilities_output(tiny_export, manifest):
    model = onnx.load(tiny_export / "model_fp32.onnx")
    onnx.checker.check_model(model)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    assert [i.name for i in inputs] == ["image"]
    dims = inputs[0].type.tensor_type.shape.dim
    h, w = manifest["source_run"]["image_size"]
    assert dims[0].dim_param == "batch" and [d.dim_value for d in dims[1:]] == [h, w, 3]
    assert inputs[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [o.name for o in model.graph.output] == ["probabilities"]


def test_fp32_metadata_names_classes_size_backbone_and_model_hash(tiny_export, manifest):
    model = onnx.load(tiny_export / "model_fp32.onnx")
    meta = {p.key: p.value for p in model.metadata_props}
    run = manifest["source_run"]
    assert json.loads(meta["edgexfer.classes"]) == run["classes"]
    assert json.loads(meta["edgexfer.image_size"]) == run["image_size"]
    assert meta["edgexfer.backbone"] == run["backbone"]
    assert meta["edgexfer.source_model_sha256"] == run["model_sha256"]
    assert meta["edgexfer.precision"] == "fp32"


def test_fp32_parity_with_keras_is_recorded_and_tight(manifest):
    fp32 = next(a for a in manifest["artifacts"] if a["name"] == "fp32")
    parity = fp32["parity"]
    assert parity["against"] == "keras" and parity["n"] > 0
    assert parity["max_abs_diff"] <= 1e-4
    assert parity["agreement"] == 1.0


def test_fp32_runs_in_onnxruntime_like_keras(tiny_export, export_run_dir):
    import keras
    import onnxruntime as ort

    from edgexfer.data.splits import Split

    run = json.loads((export_run_dir / "run.json").read_text())
    split = Split.load(export_run_dir / "split.json")
    x, _ = split.load_arrays("test", tuple(run["image_size"]), limit=8)
    session = ort.InferenceSession(str(tiny_export / "model_fp32.onnx"), providers=["CPUExecutionProvider"])
    assert len(session.get_inputs()) == 1
    got = session.run(None, {"image": x.astype(np.float32)})[0]
    want = np.asarray(keras.models.load_model(export_run_dir / "model.keras")(x.astype(np.float32)))
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_manifest_follows_the_contract(tiny_export, manifest, export_run_dir):
    assert manifest["schema"] == "edgexfer.export/1"
    run = manifest["source_run"]
    assert run["model_sha256"] == json.loads((export_run_dir / "run.json").read_text())["model_sha256"]
    assert run["split_file"] == "split.json"
    assert manifest["input"] == {"name": "image", "shape": [-1, *run["image_size"], 3], "dtype": "float32", "range": [0, 255]}
    assert manifest["output"] == {"name": "probabilities"}
    assert manifest["versions"]["onnx"]
    names = [a["name"] for a in manifest["artifacts"]]
    assert names == ["fp32", "fp16", "int8"]
    for artifact in manifest["artifacts"]:
        path = tiny_export / artifact["file"]
        assert artifact["sha256"] == sha256_file(path)
        assert artifact["size_bytes"] == path.stat().st_size
        assert {"format", "precision", "target", "parity", "excluded_nodes", "calibration", "engine"} <= set(artifact)


def test_run_files_are_copied_and_nothing_else_is_left(tiny_export, export_run_dir):
    for name in ("labels.json", "split.json", "run.json"):
        assert (tiny_export / name).read_bytes() == (export_run_dir / name).read_bytes()
    files = sorted(p.name for p in tiny_export.iterdir())
    # metrics.json too (when the run has it): it carries the run's sanity record that bench reads
    assert files == sorted(["labels.json", "split.json", "run.json", "metrics.json", "manifest.json",
                            "model_fp32.onnx", "model_fp16.onnx", "model_int8_cpu.onnx",
                            "model_int8_cpu.layers.json"])
    leftovers = [p.name for p in tiny_export.parent.iterdir() if p.name.startswith(".")]
    assert leftovers == []


def test_captured_normalization_statistics_are_frozen_into_the_graph(tmp_path):
    """An adapted Normalization layer's mean/variance become extra graph inputs in tf2onnx; we freeze them."""
    import keras

    from edgexfer.export.keras_onnx import keras_predict, keras_to_onnx, onnx_io
    from edgexfer.runtime.ort_runtime import predict_onnx

    inputs = keras.Input((16, 16, 3), name="image")
    norm = keras.layers.Normalization(axis=-1)
    x = keras.layers.Conv2D(4, 3)(norm(inputs))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(0)
    norm.adapt(rng.uniform(50, 200, (8, 16, 16, 3)).astype("float32"))
    path = tmp_path / "norm.onnx"
    fixes = keras_to_onnx(model, path, image_size=(16, 16), opset=17, metadata={})
    # the mean feeds a node (frozen to its value); the variance may be folded away by tf2onnx (dropped)
    assert fixes["frozen_inputs"] and len(fixes["frozen_inputs"]) + len(fixes["dropped_inputs"]) == 2
    assert onnx_io(path) == (["image"], ["probabilities"])
    images = rng.uniform(0, 255, (4, 16, 16, 3)).astype("float32")
    np.testing.assert_allclose(predict_onnx(path, images), keras_predict(model, images, 4), atol=1e-5)


def test_conversion_in_a_child_process(tmp_path):
    """convert_run_model converts in a child process (TensorFlow's memory leaves with it): the same ONNX and
    Keras probabilities as in this process; a model it cannot load is one clear line, not a traceback."""
    import keras

    from edgexfer.errors import EdgexferError
    from edgexfer.export.keras_onnx import convert_run_model
    from edgexfer.runtime.ort_runtime import predict_onnx

    inputs = keras.Input((16, 16, 3), name="image")
    x = keras.layers.Conv2D(4, 3, activation="relu")(keras.layers.Rescaling(1 / 255)(inputs))
    outputs = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(x))
    keras.Model(inputs, outputs).save(tmp_path / "model.keras")
    images = np.random.default_rng(0).integers(0, 256, (5, 16, 16, 3)).astype(np.uint8)
    child = convert_run_model(tmp_path / "model.keras", tmp_path / "child.onnx", image_size=(16, 16), opset=17,
                              metadata={"k": "v"}, parity_images=images, batch_size=2)
    here = convert_run_model(tmp_path / "model.keras", tmp_path / "here.onnx", image_size=(16, 16), opset=17,
                             metadata={"k": "v"}, parity_images=images, batch_size=2, isolate=False)
    np.testing.assert_allclose(child.keras_probs, here.keras_probs, atol=1e-6)
    np.testing.assert_allclose(predict_onnx(tmp_path / "child.onnx", images), child.keras_probs, atol=1e-5)
    (tmp_path / "broken.keras").write_bytes(b"not a zip")
    with pytest.raises(EdgexferError, match="cannot load Keras model"):
        convert_run_model(tmp_path / "broken.keras", tmp_path / "x.onnx", image_size=(16, 16), opset=17, metadata={})


def test_lean_tf2onnx_restores_tf2onnx():
    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    from edgexfer.export.keras_onnx import _lean_tf2onnx

    original = GraphOptimizerBase.optimize
    with _lean_tf2onnx():
        assert GraphOptimizerBase.optimize is not original
    assert GraphOptimizerBase.optimize is original

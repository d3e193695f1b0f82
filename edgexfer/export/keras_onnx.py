"""FP32 ONNX from the run's Keras model, with exactly one input ``image`` and one output ``probabilities``.

tf2onnx is driven directly (as `keras.Model.export(format="onnx")` does) from our own traced function,
because we need that function's captures: tf2onnx turns every eager tensor a layer captured
(e.g. a Normalization layer's mean and variance, as in EfficientNet) into an extra graph *input*.
We freeze those inputs back into initializers holding the captured values, so the graph has one input.
TensorFlow is imported only inside these functions.
"""

from __future__ import annotations

import json
import os
from typing import Any

import numpy as np

from edgexfer._lazy import require
from edgexfer.errors import EdgexferError
from edgexfer.io import atomic_path

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"
BATCH_DIM = "batch"


def load_keras_model(path: str | os.PathLike[str]) -> Any:
    """Load model.keras (with edgexfer's custom layers registered), or raise one clear line."""
    keras = require("keras", "export from a Keras model")
    try:  # the backbones package registers custom head layers with Keras on import
        import edgexfer.backbones  # noqa: F401
    except ImportError:
        pass
    try:
        return keras.models.load_model(path, compile=False)
    except Exception as exc:  # a damaged zip, missing config, unknown layer…: all user-fixable
        raise EdgexferError(
            f"cannot load Keras model {path} ({type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''})",
            "restore the run's model.keras or fine-tune again",
        ) from None


def check_keras_io(model: Any, image_size: tuple[int, int]) -> None:
    """The model must take one (N, H, W, 3) float input of the run's size and return (N, classes)."""
    if len(model.inputs) != 1 or len(model.outputs) != 1:
        raise EdgexferError(
            f"the model has {len(model.inputs)} inputs and {len(model.outputs)} outputs, export needs one of each",
            "export a model made by edgexfer finetune",
        )
    shape = tuple(model.inputs[0].shape)
    if len(shape) != 4 or tuple(shape[1:]) != (*image_size, 3):
        raise EdgexferError(
            f"the model input shape {shape} does not match the run's image size {image_size} with 3 channels",
            "check run.json image_size against the model",
        )


def keras_to_onnx(
    model: Any,
    out_path: str | os.PathLike[str],
    *,
    image_size: tuple[int, int],
    opset: int,
    metadata: dict[str, str],
) -> dict[str, Any]:
    """Convert ``model`` to ONNX at ``out_path`` (atomically). Returns what was fixed on the way:
    ``{"frozen_inputs": [...], "dropped_inputs": [...]}``."""
    tf = require("tensorflow", "ONNX export")
    tf2onnx = require("tf2onnx", "ONNX export")
    onnx = require("onnx", "ONNX export")
    _patch_tf2onnx_for_numpy2()

    h, w = image_size
    spec = tf.TensorSpec((None, h, w, 3), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[spec])
    def serve(image):
        # a dict output makes tf2onnx name the graph output after its key
        return {OUTPUT_NAME: model(image, training=False)}

    concrete = serve.get_concrete_function()
    captured = {internal.name: external for external, internal in concrete.graph.captures}
    try:
        model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
    except Exception as exc:
        raise EdgexferError(
            f"tf2onnx could not convert the model at opset {opset} ({type(exc).__name__}: {str(exc)[:200]})",
            "try another --opset (13–18) or report the backbone",
        ) from None
    fixes = single_input(model_proto, captured)
    _name_io(model_proto)
    update_metadata(model_proto, metadata)
    model_proto.producer_name = "edgexfer"
    onnx.checker.check_model(model_proto)
    with atomic_path(out_path) as tmp:
        onnx.save(model_proto, os.fspath(tmp))
    return fixes


def single_input(model_proto: Any, captured: dict[str, Any]) -> dict[str, list[str]]:
    """Make ``image`` the graph's only input: unused extra inputs are dropped, used ones become
    initializers holding the value the Keras layer captured. Anything else is refused."""
    from onnx import numpy_helper

    graph = model_proto.graph
    used = {name for node in graph.node for name in node.input}
    frozen, dropped = [], []
    for graph_input in list(graph.input):
        if graph_input.name == INPUT_NAME:
            continue
        if graph_input.name not in used:
            dropped.append(graph_input.name)
        else:
            value = captured.get(graph_input.name)
            if value is None or getattr(value, "dtype", None) is None or value.dtype.name == "resource":
                raise EdgexferError(
                    f"the ONNX graph has an extra input '{graph_input.name}' whose value is unknown",
                    "report the backbone: export needs a graph with the single input 'image'",
                )
            array = np.asarray(value.numpy())
            graph.initializer.append(numpy_helper.from_array(array, graph_input.name))
            frozen.append(graph_input.name)
        graph.input.remove(graph_input)
    names = [i.name for i in graph.input]
    if names != [INPUT_NAME]:
        raise EdgexferError(f"the ONNX graph has inputs {names}, expected only '{INPUT_NAME}'", "report the backbone")
    return {"frozen_inputs": frozen, "dropped_inputs": dropped}


def _name_io(model_proto: Any) -> None:
    """Name the dynamic batch dimension ``batch`` on the input and output, and check the output name."""
    graph = model_proto.graph
    if len(graph.output) != 1 or graph.output[0].name != OUTPUT_NAME:
        raise EdgexferError(
            f"the ONNX graph outputs {[o.name for o in graph.output]}, expected only '{OUTPUT_NAME}'", "report the backbone"
        )
    for value_info in (graph.input[0], graph.output[0]):
        dim = value_info.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_param = BATCH_DIM


def update_metadata(model_proto: Any, values: dict[str, str]) -> None:
    """Set ``metadata_props`` entries, replacing those with the same key."""
    keep = [(p.key, p.value) for p in model_proto.metadata_props if p.key not in values]
    del model_proto.metadata_props[:]
    for key, value in [*keep, *values.items()]:
        entry = model_proto.metadata_props.add()
        entry.key, entry.value = key, value


def metadata_for(run: Any) -> dict[str, str]:
    """metadata_props of every exported ONNX: enough to use the file without its manifest."""
    h, w = run.image_size
    return {
        "edgexfer.classes": json.dumps(run.classes),
        "edgexfer.image_size": json.dumps([h, w]),
        "edgexfer.input_range": "[0, 255]",
        "edgexfer.backbone": run.backbone,
        "edgexfer.source_model_sha256": run.model_sha256,
        "edgexfer.source_run": run.name,
    }


def keras_predict(model: Any, images: np.ndarray, batch_size: int) -> np.ndarray:
    outputs = [np.asarray(model(images[i : i + batch_size].astype(np.float32), training=False))
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs).astype(np.float32)


def _patch_tf2onnx_for_numpy2() -> None:
    """tf2onnx 1.17 still uses numpy aliases removed in numpy 2; Keras ships the patch it needs."""
    import warnings

    with warnings.catch_warnings():
        # the patch probes `np.object`, which makes numpy print a FutureWarning at every export
        warnings.simplefilter("ignore", FutureWarning)
        try:
            from keras.src.export.tf2onnx_lib import patch_tf2onnx
        except ImportError:  # a Keras without it: tf2onnx may already be fixed
            return
        patch_tf2onnx()


def onnx_io(path: str | os.PathLike[str]) -> tuple[list[str], list[str]]:
    """Graph input and output names of an ONNX file (no session needed)."""
    import onnx

    model = onnx.load(os.fspath(path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    return [i.name for i in model.graph.input if i.name not in initializers], [o.name for o in model.graph.output]


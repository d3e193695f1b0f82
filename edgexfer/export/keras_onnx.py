"""FP32 ONNX from the run's Keras model, with exactly one input ``image`` and one output ``probabilities``.

tf2onnx is driven directly (as `keras.Model.export(format="onnx")` does) from our own traced function,
because we need that function's captures: tf2onnx turns every eager tensor a layer captured
(e.g. a Normalization layer's mean and variance, as in EfficientNet) into an extra graph *input*.
We freeze those inputs back into initializers holding the captured values, so the graph has one input.
TensorFlow is imported only inside these functions.

`convert_run_model` runs the conversion (and the Keras side of the parity check) in a child process,
so TensorFlow's memory is returned to the system before ONNX Runtime's work starts: the export's
peak is the larger of the two, not their sum. Inside, tf2onnx runs lean (`_lean_tf2onnx`): its
optimizers neither deep-copy the graph before each pass nor rewrite every node's protobuf after it
(each rewrite left one more copy of the weights in protobuf's arena: ResNet50 peaked at 6.3 GB, 2.8 GB lean).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import edgexfer.backbones  # noqa: F401  (registers edgexfer's custom head layers with Keras)
from edgexfer._lazy import require
from edgexfer.errors import EdgexferError
from edgexfer.io import atomic_path

INPUT_NAME = "image"
#: Keras predicts at most this many parity images (TensorFlow is the slow side of the check; the ONNX
#: artifacts are compared with each other on every validation image)
KERAS_PARITY_LIMIT = 64
OUTPUT_NAME = "probabilities"
BATCH_DIM = "batch"


def load_keras_model(path: str | os.PathLike[str]) -> Any:
    """Load model.keras (with edgexfer's custom layers registered), or raise one clear line."""
    keras = require("keras", "export from a Keras model")
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
        try:
            with _lean_tf2onnx():
                model_proto, _ = tf2onnx.convert.from_function(serve, input_signature=[spec], opset=opset)
        except Exception:  # an optimizer that fails when not sandboxed: convert the way tf2onnx does by default
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


@contextlib.contextmanager
def _lean_tf2onnx():
    """tf2onnx's optimizers without their memory copies (same passes, same graph).

    By default each optimizer pass works on a ``copy.deepcopy`` of the graph (to skip a pass that
    raises) and then rewrites every node's protobuf (``update_proto``); with upb protobuf the old
    attribute messages stay in the arena, so every pass keeps one more copy of all weights. The final
    ``make_graph`` writes every node's protobuf anyway, so the per-pass rewrite is dropped here.
    """
    from tf2onnx.optimizer.optimizer_base import GraphOptimizerBase

    def optimize(self, graph, iteration):
        self.opt_iteration = iteration
        graph = self._optimize(graph)
        graph.delete_unused_nodes(graph.outputs)
        return graph

    key = "TF2ONNX_CATCH_ERRORS"
    saved_env, saved_optimize = os.environ.get(key), GraphOptimizerBase.optimize
    os.environ[key] = "FALSE"
    GraphOptimizerBase.optimize = optimize
    try:
        yield
    finally:
        GraphOptimizerBase.optimize = saved_optimize
        if saved_env is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = saved_env


@dataclass
class Conversion:
    """What `convert_run_model` did: graph fixes (see `keras_to_onnx`) and Keras's probabilities on the
    parity images (None when none were given)."""

    fixes: dict[str, list[str]]
    keras_probs: np.ndarray | None


def convert_run_model(
    model_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    image_size: tuple[int, int],
    opset: int,
    metadata: dict[str, str],
    parity_images: np.ndarray | None = None,
    batch_size: int = 16,
    isolate: bool = True,
) -> Conversion:
    """Load model.keras, write its FP32 ONNX at ``out_path`` and predict ``parity_images`` with Keras
    (the first `KERAS_PARITY_LIMIT` of them).

    ``isolate`` (default): all of it in a child Python process, so that none of TensorFlow's memory
    stays in this one. Errors the user can fix come back as the same one-line `EdgexferError`.
    """
    if parity_images is not None:
        parity_images = parity_images[:KERAS_PARITY_LIMIT]
    job = {"model_path": os.fspath(model_path), "out_path": os.fspath(out_path), "image_size": list(image_size),
           "opset": opset, "metadata": metadata, "batch_size": batch_size}
    if not isolate:
        return _convert_job(job, parity_images)
    with tempfile.TemporaryDirectory(prefix="edgexfer-convert-") as tmp_dir:
        tmp = Path(tmp_dir)
        if parity_images is not None:
            np.save(tmp / "images.npy", parity_images)
            job["images"] = os.fspath(tmp / "images.npy")
        job["probs"] = os.fspath(tmp / "probs.npy")
        job["result"] = os.fspath(tmp / "result.json")
        (tmp / "job.json").write_text(json.dumps(job))
        # the child's temporary files go where this thread's go (an export's staging folder): its TMPDIR only
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
               "TMPDIR": tempfile.gettempdir()}
        with open(tmp / "stderr.txt", "wb") as err:
            code = subprocess.call([sys.executable, "-m", "edgexfer.export.keras_onnx", os.fspath(tmp / "job.json")],
                                   stdout=subprocess.DEVNULL, stderr=err, env=env)
        result = json.loads((tmp / "result.json").read_text()) if (tmp / "result.json").is_file() else None
        if result is not None and "problem" in result:
            raise EdgexferError(result["problem"], result["fix"])
        if code != 0 or result is None:
            lines = [ln for ln in (tmp / "stderr.txt").read_text(errors="replace").splitlines() if ln.strip()]
            last = lines[-1][:300] if lines else f"exit status {code}"
            raise EdgexferError(f"the ONNX conversion process failed ({last})",
                                "run the export again; if it fails again, report the backbone")
        probs = np.load(tmp / "probs.npy") if parity_images is not None else None
        return Conversion(fixes=result["fixes"], keras_probs=probs)


def _convert_job(job: dict[str, Any], images: np.ndarray | None) -> Conversion:
    """The conversion itself: Keras predictions first (before tf2onnx's graph copies exist), then ONNX."""
    model = load_keras_model(job["model_path"])
    image_size = tuple(job["image_size"])
    check_keras_io(model, image_size)  # type: ignore[arg-type]
    probs = None
    if images is not None:
        probs = keras_predict(model, images, int(job["batch_size"]), compiled=True)
    fixes = keras_to_onnx(model, job["out_path"], image_size=image_size, opset=int(job["opset"]),  # type: ignore[arg-type]
                          metadata=job["metadata"])
    return Conversion(fixes=fixes, keras_probs=probs)


def _child_main(job_path: str) -> int:
    job = json.loads(Path(job_path).read_text())
    images = np.load(job["images"]) if job.get("images") else None
    try:
        conversion = _convert_job(job, images)
    except EdgexferError as exc:
        Path(job["result"]).write_text(json.dumps({"problem": exc.problem, "fix": exc.fix}))
        return 2
    if conversion.keras_probs is not None:
        np.save(job["probs"], conversion.keras_probs)
    Path(job["result"]).write_text(json.dumps({"fixes": conversion.fixes}))
    return 0


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


def keras_predict(model: Any, images: np.ndarray, batch_size: int, *, compiled: bool = False) -> np.ndarray:
    """Keras probabilities in batches; ``compiled``: through one traced ``tf.function`` (graph mode,
    several times faster than eager calls on big CNNs, same layers and weights)."""
    call = model
    if compiled:
        import tensorflow as tf

        h, w = images.shape[1:3]
        call = tf.function(lambda x: model(x, training=False),
                           input_signature=[tf.TensorSpec((None, h, w, 3), tf.float32)])
    outputs = [np.asarray(call(images[i : i + batch_size].astype(np.float32)) if compiled
                          else model(images[i : i + batch_size].astype(np.float32), training=False))
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



if __name__ == "__main__":  # the child process of `convert_run_model`
    sys.exit(_child_main(sys.argv[1]))

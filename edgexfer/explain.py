"""Grad-CAM: where did the model look? Overlays from a run's Keras model (the `train` extra).

Grad-CAM (Selvaraju et al., 2017) weighs the feature maps of the last convolutional block by the
gradient of the class score (the logit, before softmax, so a confident answer does not vanish) averaged
over space, keeps the positive part, and upsamples it to the image. The layer explained is the output
of the registered backbone (every entry of the backbone registry is an ``include_top=False`` feature
extractor whose output is its last convolutional block, the layer the Grad-CAM paper uses), found in the
classifier as the nested model ``backbone`` that ``edgexfer.backbones.build.build_model`` names.

Images are read by the shared loader at the model's size, as in training and bench. Writing is
TensorFlow-free except the model call; the bench report reads ``<bench>/gradcam/index.json`` (written
here, read here: :func:`read_gradcam_index`) without TensorFlow.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer._folders import refuse_links_inside, refuse_overlap, swap_in, sweep_stale
from edgexfer._lazy import require
from edgexfer.contracts.bench import load_results
from edgexfer.contracts.predictions import GRADCAM_DIR, Explanation, GradcamIndex, write_gradcam_index
from edgexfer.contracts.run import load_run
from edgexfer.data.images import ImageReadError, load_image
from edgexfer.data.sources import discover
from edgexfer.data.splits import Split
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.bench_data import load_bench_data
from edgexfer.evaluate.exported import load_export
from edgexfer.io import FolderLock, fix_modes, make_temp_dir
from edgexfer.predict import collect_inputs
from edgexfer.report.bench_report import write_bench_report
from edgexfer.report.formats import figure, save_figure
from edgexfer.report.gradcam import gradcam_markdown, read_gradcam_index

BACKBONE_LAYER = "backbone"  # the nested feature extractor in every edgexfer classifier
LOGITS_LAYER = "probabilities"  # the Dense(softmax) classifier layer of every edgexfer head
DISPLAY_MIN = 256  # overlays are drawn at least this many pixels on the short side


# ---------------------------------------------------------------------------------------------- the model


@dataclass
class RunModel:
    """A finished run's Keras model and what Grad-CAM needs to know about it."""

    model: Any
    classes: list[str]
    image_size: tuple[int, int]
    model_sha256: str | None
    run_dir: Path


def load_run_model(run_dir: str | os.PathLike[str]) -> RunModel:
    """Load ``model.keras`` of a finished run after checking its sha256 against run.json."""

    record = load_run(run_dir, require_files=False)  # run.json checked by the run contract
    record.verify_model()  # present, and the one the run recorded
    root, model_path, expected = record.path, record.model_path, record.model_sha256
    keras = require("keras", "Grad-CAM explanations")
    require("tensorflow", "Grad-CAM explanations")
    try:
        model = keras.saving.load_model(model_path, compile=False)
    except Exception as exc:  # Keras raises many types for a bad file
        if "Lambda" in str(exc):  # Keras's safe mode: a Lambda layer is Python code, not loaded from a file
            raise EdgexferError(f"{model_path} holds a Lambda layer (Python code), which Keras does not load from a "
                                "file (safe mode), and edgexfer never runs code from a model file",
                                "explain a model trained by edgexfer finetune (it has no Lambda layer)") from None
        raise EdgexferError(f"Keras cannot load {model_path}: {' '.join(str(exc).split())}",
                            "check the run directory") from None
    return RunModel(model, list(record.classes), record.image_size, expected, root)


def _feature_and_head_inputs(model: Any) -> tuple[Any, Any]:
    """Symbolic tensors of the classifier graph: the backbone's feature map and the classifier layer's input."""
    try:
        backbone = model.get_layer(BACKBONE_LAYER)
    except ValueError:
        raise EdgexferError(f"model {model.name} has no '{BACKBONE_LAYER}' layer to explain",
                            "explain a model trained by edgexfer finetune") from None
    # the backbone is a nested model: its output in *this* graph is the one of its call node here
    # (``backbone.output`` is the output of its own inner graph, not connected to the classifier's input)
    features = backbone._inbound_nodes[-1].output_tensors[0]
    try:
        head_input = model.get_layer(LOGITS_LAYER).input
    except ValueError:
        head_input = None
    return features, head_input


def gradcam(model: Any, images: np.ndarray, class_indices: Sequence[int] | np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Grad-CAM heat maps (N, H, W) in [0, 1] at the image size, and the model's probabilities (N, classes).

    ``images``: raw RGB pixels (N, H, W, 3) at the model's size; ``class_indices``: the class each map
    explains (default: the predicted one).
    """

    keras = require("keras", "Grad-CAM explanations")
    tf = require("tensorflow", "Grad-CAM explanations")
    features, head_input = _feature_and_head_inputs(model)
    outputs = [features, model.outputs[0]] + ([head_input] if head_input is not None else [])
    probe = keras.Model(model.inputs, outputs)
    x = tf.convert_to_tensor(np.asarray(images, dtype=np.float32))
    with tf.GradientTape() as tape:
        found = probe(x, training=False)
        maps, probs = found[0], found[1]
        if head_input is not None:  # the logits: the classifier layer's kernel and bias, before its softmax
            dense = model.get_layer(LOGITS_LAYER)
            scores = tf.matmul(tf.cast(found[2], dense.kernel.dtype), dense.kernel) + dense.bias
        else:
            scores = tf.math.log(tf.maximum(probs, 1e-12))
        chosen = (np.argmax(probs.numpy(), axis=1) if class_indices is None
                  else np.asarray(class_indices, dtype=np.int64))
        target = tf.gather(scores, tf.constant(chosen, dtype=tf.int64), axis=1, batch_dims=1)
    grads = tape.gradient(target, maps)
    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    cams = tf.nn.relu(tf.reduce_sum(weights * maps, axis=-1)).numpy()
    h, w = (int(d) for d in x.shape[1:3])
    return np.stack([_upsample(c, (h, w)) for c in cams]), probs.numpy()


def _upsample(cam: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    from PIL import Image

    img = Image.fromarray(np.asarray(cam, dtype=np.float32), mode="F").resize((size[1], size[0]),
                                                                             Image.Resampling.BILINEAR)
    out = np.asarray(img, dtype=np.float32)
    top = float(out.max())
    return out / top if top > 0 else np.zeros_like(out)


# ---------------------------------------------------------------------------------------------- overlays


def _display_size(size: tuple[int, int]) -> tuple[int, int]:
    h, w = size
    scale = max(1.0, DISPLAY_MIN / min(h, w))
    return int(round(h * scale)), int(round(w * scale))


def write_overlay(path: Path, source: str, heatmap: np.ndarray, model_size: tuple[int, int], title: str) -> Path:
    """Two panels, the image and the image under the heat map (jet, alpha 0.45), as a PNG written atomically."""

    display = _display_size(model_size)
    image = load_image(source, display)
    heat = _upsample(heatmap, display)
    fig = figure(7.2, 3.9)  # the Agg canvas, no pyplot: nothing global changes
    axes = fig.subplots(1, 2)
    axes[0].imshow(image)
    axes[0].set_title("image", fontsize=9)
    axes[1].imshow(image)
    axes[1].imshow(heat, cmap="jet", alpha=0.45, vmin=0.0, vmax=1.0)
    axes[1].set_title("Grad-CAM", fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save_figure(fig, path, tight=False)


def _title(predicted: str, probability: float, explained: str, true: str | None) -> str:
    text = f"predicted {predicted} ({probability:.2f})"
    if true is not None:
        text += f", true {true}"
    if explained != predicted:
        text += f"; map for {explained}"
    return text


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def _explain_into(run: RunModel, folder: Path, sources: Sequence[str], labels: Sequence[int | None],
                  target: int | None, batch_size: int, progress: bool) -> list[Explanation]:
    from tqdm.auto import tqdm


    done: list[Explanation] = []
    used: set[str] = set()
    bar = tqdm(total=len(sources), desc="grad-cam", unit="img", disable=None if progress else True,
               file=sys.stderr)  # None: no bar when stderr is not a terminal
    for start in range(0, len(sources), batch_size):
        chunk = list(sources[start:start + batch_size])
        images = np.stack([load_image(s, run.image_size) for s in chunk])
        asked = None if target is None else np.full(len(chunk), target)
        heat, probs_only = gradcam(run.model, images, asked)
        explained = np.argmax(probs_only, axis=1) if asked is None else asked
        for i, source in enumerate(chunk):
            stem = _safe(Path(source).stem)
            name, n = f"{stem}_gradcam.png", 1
            while name in used:
                n += 1
                name = f"{stem}_{n}_gradcam.png"
            used.add(name)
            pred = int(np.argmax(probs_only[i]))
            label = labels[start + i]
            true = run.classes[label] if label is not None else None
            write_overlay(folder / name, source, heat[i], run.image_size,
                          _title(run.classes[pred], float(probs_only[i][pred]), run.classes[int(explained[i])], true))
            done.append(Explanation(source, name, run.classes[pred], float(probs_only[i][pred]),
                                    run.classes[int(explained[i])], true))
        bar.update(len(chunk))
    bar.close()
    return done


def _write_index(folder: Path, run: RunModel, explanations: list[Explanation], **extra: Any) -> Path:
    return write_gradcam_index(folder, GradcamIndex(str(run.run_dir), run.model_sha256, list(run.classes),
                                                    list(explanations), layer=BACKBONE_LAYER, extra=extra))


def explain_images(run_dir: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]],
                   out: str | os.PathLike[str], *, target_class: str | None = None, batch_size: int = 16,
                   progress: bool = False, log: Any = None) -> list[Explanation]:
    """Grad-CAM overlays ``<out>/<image stem>_gradcam.png`` and ``<out>/index.json`` for image files,
    folders (recursive) or CSV lists of paths. Unreadable files are listed and skipped."""

    log = log or (lambda line: print(line, file=sys.stderr))
    folder = Path(out)
    if folder.exists() and not folder.is_dir():
        raise EdgexferError(f"--out {folder} is a file", "pass a folder for the overlays")
    files = collect_inputs(inputs)  # a missing input or an empty folder is an error before anything loads
    # overlays are PNG files: written into an input folder they would be explained (or trained on) next time
    refuse_overlap(folder, {"run folder": run_dir, **{f"input {i + 1}": p for i, p in enumerate(inputs)}})
    refuse_links_inside(folder)  # overlays are written in place: never through a link to somewhere else
    run = load_run_model(run_dir)
    target = _class_index(run, target_class)
    readable: list[str] = []
    for path in files.paths:
        try:
            load_image(path, run.image_size)
            readable.append(str(path))
        except ImageReadError as exc:
            log(f"skipped {path}: {exc.reason}")
        except EdgexferError as exc:  # e.g. DICOM without the dicom extra
            log(f"skipped {path}: {exc.line()}")
    for s in files.skipped:
        log(f"skipped {s.path}: {s.reason}")
    if not readable:
        raise EdgexferError("none of the input images could be read", "check the files listed above")
    with FolderLock(folder, "edgexfer explain"):
        folder.mkdir(parents=True, exist_ok=True)
        done = _explain_into(run, folder, readable, [None] * len(readable), target, batch_size, progress)
        _write_index(folder, run, done)
    return done


def _class_index(run: RunModel, name: str | None) -> int | None:
    if name is None:
        return None
    if name not in run.classes:
        raise EdgexferError(f"class '{name}' is not one of the model's classes", f"choose from: {', '.join(run.classes)}")
    return run.classes.index(name)


def explain_misclassified(run_dir: str | os.PathLike[str], bench_dir: str | os.PathLike[str], *, limit: int = 6,
                          batch_size: int = 16, progress: bool = False) -> list[Explanation]:
    """Grad-CAM for up to ``limit`` test images of a bench that the run's model gets wrong (most confident
    mistakes first), written to ``<bench>/gradcam/``; then the bench report is redrawn to show them."""

    if limit < 1:
        raise EdgexferError(f"--limit {limit} must be at least 1", "e.g. --limit 6")
    bench = Path(bench_dir)
    results = load_results(bench)
    source_run = (results.get("export") or {}).get("source_run") or {}
    run = load_run_model(run_dir)
    if source_run.get("model_sha256") and run.model_sha256 and source_run["model_sha256"] != run.model_sha256:
        raise EdgexferError(f"the bench {bench} measured another model than the run {run.run_dir}",
                            "pass the run that was exported and benched")
    export_path = (results.get("export") or {}).get("path")
    if not export_path:
        raise EdgexferError(f"{bench / 'results.json'} names no export folder", "re-run edgexfer bench")
    data_record = results.get("data") or {}
    export = load_export(export_path, verify_hashes=False)
    data = load_bench_data(export, data_record.get("path") if data_record.get("kind") == "data" else None,
                           progress=False)
    probs = np.concatenate([run.model.predict_on_batch(data.images[i:i + batch_size].astype(np.float32))
                            for i in range(0, len(data.images), batch_size)])
    predicted = probs.argmax(axis=1)
    wrong = np.flatnonzero(predicted != data.labels)
    wrong = wrong[np.argsort(-probs[wrong, predicted[wrong]], kind="stable")][:limit]
    sources = _paths_of(data, export, data_record, wrong)
    with FolderLock(bench, "edgexfer explain"):
        sweep_stale(bench / GRADCAM_DIR)  # what a killed explain left (an old overlay folder is put back)
        staging = make_temp_dir(f".{GRADCAM_DIR}.staging-", bench)
        try:
            done = _explain_into(run, staging, sources, [int(data.labels[i]) for i in wrong], None, batch_size,
                                 progress)
            _write_index(staging, run, done, selection="misclassified", limit=limit, misclassified=int(len(
                np.flatnonzero(predicted != data.labels))), n=int(len(data.labels)))
            fix_modes(staging)
            swap_in(staging, bench / GRADCAM_DIR)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        write_bench_report(results, bench)
    return done


def _paths_of(data: Any, export: Any, record: dict[str, Any], indices: Sequence[int] | np.ndarray) -> list[str]:
    """The files behind bench samples (bench keeps refs relative to its data source)."""

    source = Split.load(export.split_path).source if record.get("kind") != "data" else discover(record["path"])
    return [str(source.path_of(data.refs[i])) for i in indices]


# ---------------------------------------------------------------------------------------------- report


__all__ = ["Explanation", "RunModel", "explain_images", "explain_misclassified", "gradcam", "gradcam_markdown",
           "load_run_model", "read_gradcam_index", "write_overlay"]

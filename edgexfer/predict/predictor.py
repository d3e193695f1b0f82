"""``Predictor``: one verified artifact of an export, opened through the runtime table, on new images.

The artifact is checked against the export manifest's sha256 before it is loaded
(``edgexfer.evaluate.exported.load_export``) and again once loaded (:func:`check_unchanged`). Images are
read by ``edgexfer.data.images.load_image`` (the one decode + resize of training, calibration and bench).
``Predictor.predict`` is safe to call from several threads at once: ONNX Runtime sessions run
concurrently; other backends (TensorRT contexts) are serialized by a lock.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import numpy as np

from edgexfer.data.images import ImageReadError, load_image, to_rgb_uint8
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.exported import ExportDir, load_export
from edgexfer.evaluate.operating_point import DecisionRule
from edgexfer.io import sha256_file
from edgexfer.limits import check_threads
from edgexfer.predict.choose import PRECISIONS, choose_artifact
from edgexfer.predict.evidence import BenchEvidence
from edgexfer.predict.records import Prediction, PredictionRun, SkippedImage
from edgexfer.runtime import Artifact, Runtime

DEFAULT_BATCH_SIZE = 32  # the batch bench measures accuracy with (BenchConfig.eval_batch_size)


class Predictor:
    """One verified artifact of an export, ready to classify images (TensorFlow-free, thread-safe).

    >>> with Predictor("exported/demo", precision="auto") as model:
    ...     best = model.predict(["scan.png"])[0]
    ...     print(best.predicted_class, best.probability)
    """

    def __init__(self, export_dir: str | os.PathLike[str], precision: str = "auto", runtime: str = "auto", *,
                 bench: str | os.PathLike[str] | None = None, allow_failed: bool = False,
                 threads: int | None = None, batch_size: int = DEFAULT_BATCH_SIZE):
        if precision not in PRECISIONS:
            raise EdgexferError(f"unknown precision '{precision}'", f"choose from: {', '.join(PRECISIONS)}")
        self.batch_size = check_batch_size(batch_size)
        check_threads(threads)
        # the manifest and every artifact's sha256 are checked before anything is loaded
        self.export = load_export(export_dir)
        self.evidence = BenchEvidence.load(bench) if bench is not None else BenchEvidence.find(self.export)
        self.choice = choose_artifact(self.export, precision, runtime, evidence=self.evidence,
                                      allow_failed=allow_failed)
        self.classes = tuple(self.export.classes)
        self.image_size = self.export.image_size
        # opened for the batch sizes it will see: the TensorRT provider builds its optimization profiles for
        # them (a single image, and batch_size), not for bench's default sizes
        self._runtime: Runtime | None = self.choice.runtime.open(self.choice.artifact, threads,
                                                                  tuple(sorted({1, self.batch_size})))
        check_unchanged(self.choice.artifact, self.close)  # the bytes the session read are the ones judged
        spec = self._runtime.input_spec
        if tuple(spec.shape[1:3]) != tuple(self.image_size):
            self.close()
            raise EdgexferError(
                f"{self.choice.artifact.path.name} takes {spec.shape[1]}x{spec.shape[2]} images, the export "
                f"manifest says {self.image_size[0]}x{self.image_size[1]}", "re-export the model")
        self.provider = self._runtime.provider
        # ONNX Runtime's session.run may be called from many threads; other backends hold state per call
        self._lock: AbstractContextManager[Any] = (nullcontext() if self._runtime.name == "onnxruntime"
                                                    else threading.Lock())

    # -- what answers
    @property
    def artifact(self) -> str:
        return self.choice.artifact.name

    @property
    def runtime(self) -> str:
        return self.choice.runtime.name

    @property
    def precision(self) -> str:
        return self.choice.artifact.precision

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._runtime is not None:
            self._runtime.close()
            self._runtime = None

    # -- inputs
    def load(self, path: str | os.PathLike[str]) -> np.ndarray:
        """One image file as the model sees it: the shared loader at the model's size (uint8 RGB)."""

        return load_image(path, self.image_size)

    def _to_images(self, item: Any) -> list[np.ndarray]:
        if isinstance(item, (str, os.PathLike)):
            return [self.load(item)]
        arr = _finite_pixels(np.asarray(item))
        if arr.ndim == 4:  # a batch (N, H, W, C)
            return [to_rgb_uint8(a, self.image_size) for a in arr]
        return [to_rgb_uint8(arr, self.image_size)]

    # -- predictions
    def predict_batch(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Probabilities (N, classes) for raw uint8 RGB images already at the model size (N, H, W, 3)."""
        return self._predict_with(_finite_pixels(np.asarray(images)), batch_size or self.batch_size)

    def predict(self, inputs: str | os.PathLike[str] | np.ndarray | Iterable[Any],
                batch_size: int | None = None) -> list[Prediction]:
        """Classify image files and/or pixel arrays; one :class:`Prediction` per image, in order.

        A path is read by the shared image loader; an array (H, W), (H, W, 3) or a batch (N, H, W, 3) goes
        through the same ``to_rgb_uint8`` as array data sets. An unreadable file raises ``ImageReadError``
        (use :meth:`predict_files` to skip and list them instead).
        """
        items: list[Any]
        if isinstance(inputs, (str, os.PathLike, np.ndarray)):
            items = [inputs]
        else:
            items = list(inputs)
        images: list[np.ndarray] = []
        sources: list[str] = []
        for i, item in enumerate(items):
            converted = self._to_images(item)
            images += converted
            name = os.fspath(item) if isinstance(item, (str, os.PathLike)) else f"array[{i}]"
            sources += [name] if len(converted) == 1 else [f"{name}[{j}]" for j in range(len(converted))]
        return self._answer(images, sources, batch_size)

    def predict_files(self, paths: Sequence[str | os.PathLike[str]], batch_size: int | None = None, *,
                      progress: bool = False) -> PredictionRun:
        """Classify files; an unreadable one is skipped and listed, not fatal. Reads one batch at a time."""
        from tqdm.auto import tqdm


        step = check_batch_size(batch_size or self.batch_size)
        predictions: list[Prediction] = []
        skipped: list[SkippedImage] = []
        bar = tqdm(total=len(paths), desc="predict", unit="img", disable=None if progress else True,
                   file=sys.stderr)  # None: no bar when stderr is not a terminal
        try:
            for start in range(0, len(paths), step):
                images, sources = [], []
                for path in paths[start:start + step]:
                    try:
                        images.append(self.load(path))
                        sources.append(os.fspath(path))
                    except ImageReadError as exc:
                        skipped.append(SkippedImage(os.fspath(path), exc.reason))
                    except EdgexferError as exc:  # e.g. a DICOM file without the dicom extra
                        skipped.append(SkippedImage(os.fspath(path), exc.line()))
                predictions += self._answer(images, sources, step)
                bar.update(len(paths[start:start + step]))
        finally:
            bar.close()
        return PredictionRun(predictions, skipped, self.artifact, self.runtime, self.provider, self.classes,
                             str(self.export.path), self.choice.reason, self.choice.artifact.sha256, self.decision)

    @property
    def decision(self) -> DecisionRule | None:
        """The operating point the answers follow, or None (the most probable class): see ``served_decision``."""
        return served_decision(self.export, self.evidence)

    def _answer(self, images: list[np.ndarray], sources: list[str], batch_size: int | None) -> list[Prediction]:
        if not images:
            return []
        probs = self._predict_with(np.stack(images), batch_size or self.batch_size)
        rule = self.decision
        indices = rule.answer(probs) if rule is not None else probs.argmax(axis=1)
        out = []
        for source, row, chosen in zip(sources, probs, indices, strict=True):
            index = int(chosen)
            out.append(Prediction(source, self.classes[index], index, float(row[index]),
                                  tuple(float(v) for v in row), self.classes, self.artifact, self.runtime))
        return out

    def _predict_with(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        runtime = self._runtime
        if runtime is None:
            raise EdgexferError("this Predictor is closed", "create a new Predictor")
        step = min(check_batch_size(batch_size), runtime.max_batch or batch_size)
        outputs = []
        for start in range(0, len(images), step):
            with self._lock:
                outputs.append(runtime.predict(images[start:start + step]))
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.classes)), dtype=np.float32)


def served_decision(export: ExportDir, evidence: BenchEvidence | None) -> DecisionRule | None:
    """The operating point a served model applies: the one the export recorded in its manifest (chosen by
    ``export --positive-class``), else the one bench chose (binary task or ``bench --positive-class``), else
    None. Its ``source`` says where it came from."""
    recorded = export.decision()
    if recorded is not None:
        return recorded
    return evidence.decision if evidence is not None else None


def check_unchanged(artifact: Artifact, on_change: Callable[[], None] | None = None) -> None:
    """Hash ``artifact``'s file again after it was loaded: with the check before loading (``load_export``),
    the bytes a session or a copy read are the manifest's, whose sha256 the verdict was matched to."""
    actual = sha256_file(artifact.path)
    if actual != artifact.sha256:
        if on_change is not None:
            on_change()
        raise EdgexferError(f"{artifact.path} changed while it was loaded (sha256 {actual[:12]}…, the manifest says "
                            f"{str(artifact.sha256)[:12]}…)", "leave the export alone while it is loaded, and retry")


def _finite_pixels(arr: np.ndarray) -> np.ndarray:
    """``arr`` unchanged, or an error when it holds NaN or infinite values: scaled to 0..255 they would
    become an ordinary-looking image and a confident answer about pixels that do not exist."""
    if arr.dtype.kind in "fc":
        bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
        if bad:
            raise EdgexferError(f"the pixel array of shape {arr.shape} holds {bad} NaN or infinite value(s)",
                                "pass finite pixel values (uint8 0-255, or floats without NaN/inf)")
    elif arr.dtype.kind not in "uib":
        raise EdgexferError(f"the pixel array has dtype {arr.dtype}, not numbers", "pass a numeric array of pixels")
    return arr


def check_batch_size(value: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise EdgexferError(f"batch size {value!r} must be a positive integer", "e.g. --batch-size 32")
    return int(value)

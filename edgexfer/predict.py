"""Use a verified model: ``Predictor`` runs one artifact of an export on new images, without TensorFlow.

The pixels a deployed model sees are the ones bench measured: images are read by
``edgexfer.data.images.load_image`` (the one decode + resize of training, calibration and bench),
the artifact is opened through the runtime table (``edgexfer.runtime.RUNTIMES``) and checked against
the export manifest's sha256 first (``edgexfer.evaluate.exported.load_export``). Which artifact runs
is decided by :func:`choose_artifact`: ``precision="auto"`` takes the fastest artifact whose accuracy
gate passed in the bench results, and an artifact whose gate failed is refused unless
``allow_failed=True``.

``Predictor.predict`` is safe to call from several threads at once (one model, many web requests):
ONNX Runtime sessions run concurrently; other backends (TensorRT contexts) are serialized by a lock.
"""

from __future__ import annotations

import csv
import io
import os
import sys
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.contracts.predictions import PREDICTIONS_SCHEMA
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.exported import ExportDir, load_export
from edgexfer.runtime import RUNTIMES, Artifact, Runtime, RuntimeKind, get_runtime

#: bf16: the FP32 file run by OpenVINO with the bf16 precision hint (ov-cpu, on a CPU with native BF16)
PRECISIONS = ("auto", "fp32", "fp16", "int8", "bf16")
#: runtimes a Predictor may use, in the order ``runtime="auto"`` prefers them when no bench timing decides
#: (Keras needs TensorFlow)
PREDICT_RUNTIMES = ("trt", "ort-trt", "ort-cuda", "ort-cpu", "ov-cpu")
DEFAULT_BATCH_SIZE = 32  # the batch bench measures accuracy with (BenchConfig.eval_batch_size)


# ---------------------------------------------------------------------------------------------- bench evidence


@dataclass(frozen=True)
class GateVerdict:
    """What a bench said about one artifact on one runtime. ``passed`` None: not benched there."""

    artifact: str
    runtime: str
    passed: bool | None
    reasons: tuple[str, ...] = ()
    latency_ms: float | None = None  # p50 per image at the smallest batch size measured

    def describe(self) -> str:
        if self.passed is None:
            return f"{self.artifact} on {self.runtime}: not benched"
        state = "passed" if self.passed else "FAILED (" + "; ".join(self.reasons or ("no reason recorded",)) + ")"
        speed = f", {self.latency_ms:.3g} ms/image" if self.latency_ms is not None else ""
        return f"{self.artifact} on {self.runtime}: gate {state}{speed}"


@dataclass(frozen=True)
class BenchEvidence:
    """The gate verdicts and latencies of one bench results.json that measured this export."""

    path: Path
    verdicts: tuple[GateVerdict, ...]

    @classmethod
    def load(cls, location: str | os.PathLike[str], export: ExportDir | None = None) -> BenchEvidence:
        """Read a BENCH_DIR or its results.json (through ``edgexfer.contracts.bench.load_results``).

        With ``export``, a results file of another model is refused.
        """
        from edgexfer.contracts.bench import load_results

        path = Path(location)
        path = path / "results.json" if path.is_dir() else path
        if not path.is_file():
            raise EdgexferError(f"bench results {path} do not exist", "pass a folder written by edgexfer bench")
        results = load_results(path)
        if export is not None and not _same_model(results, export):
            raise EdgexferError(f"bench results {path} measured another model than the export {export.path}",
                                "pass the bench folder of this export (or bench it: edgexfer bench EXPORT_DIR)")
        verdicts = []
        for row in results.get("results", []):
            gate = row.get("gate") if isinstance(row.get("gate"), dict) else {}
            passed = gate.get("passed")
            verdicts.append(GateVerdict(
                artifact=str(row.get("artifact")), runtime=str(row.get("runtime")),
                passed=bool(passed) if isinstance(passed, bool) else None,
                reasons=tuple(str(r) for r in gate.get("reasons") or ()),
                latency_ms=_per_image_latency(row.get("latency_ms") or {})))
        return cls(path, tuple(verdicts))

    @classmethod
    def find(cls, export: ExportDir) -> BenchEvidence | None:
        """The bench results of ``export`` where edgexfer puts them, or None: ``<export>/../bench`` (demo),
        ``<export>/../../benchmarks/<name>`` (studies) and ``benchmarks/<name>`` (bench's default)."""
        name = export.name
        candidates = [export.path.parent / "bench", export.path.parent.parent / "benchmarks" / name,
                      Path("benchmarks") / name]
        for folder in candidates:
            if (folder / "results.json").is_file():
                try:
                    return cls.load(folder, export)
                except EdgexferError:
                    continue  # another model's results in a shared folder: keep looking
        return None

    def verdict(self, artifact: str, runtime: str) -> GateVerdict:
        """The verdict for ``artifact`` on ``runtime``; without one there, a failure on another runtime
        counts (the same file broke the gate somewhere), else not benched."""
        for v in self.verdicts:
            if v.artifact == artifact and v.runtime == runtime:
                return v
        for v in self.verdicts:
            if v.artifact == artifact and v.passed is False:
                return GateVerdict(artifact, runtime, False,
                                   tuple(f"on {v.runtime}: {r}" for r in v.reasons) or (f"failed on {v.runtime}",))
        return GateVerdict(artifact, runtime, None)


def _same_model(results: dict[str, Any], export: ExportDir) -> bool:
    source = (results.get("export") or {}).get("source_run") or {}
    mine = export.manifest.get("source_run") or {}
    if source.get("model_sha256") and mine.get("model_sha256"):
        return bool(source["model_sha256"] == mine["model_sha256"])
    return (results.get("export") or {}).get("name") == export.name


def _per_image_latency(latency: dict[str, Any]) -> float | None:
    sizes = sorted(int(b) for b in latency if str(b).isdigit() and isinstance(latency[b], dict))
    for size in sizes:
        p50 = latency[str(size)].get("p50")
        if isinstance(p50, (int, float)):
            return float(p50) / size
    return None


# ---------------------------------------------------------------------------------------------- choice


@dataclass(frozen=True)
class Choice:
    """The artifact and runtime chosen to answer, and why."""

    artifact: Artifact
    runtime: RuntimeKind
    verdict: GateVerdict
    reason: str


def choose_artifact(export: ExportDir, precision: str = "auto", runtime: str = "auto", *,
                    evidence: BenchEvidence | None = None, allow_failed: bool = False,
                    check_available: bool = True, prefer: Sequence[str] = PREDICT_RUNTIMES) -> Choice:
    """Pick the (artifact, runtime) pair to serve.

    ``precision`` "auto": the fastest pair whose gate passed in ``evidence``; without evidence, the FP32
    reference. A named precision: that artifact, refused when its gate failed (``allow_failed`` lets it
    through). ``runtime`` "auto": every runtime usable here (``check_available``), fastest benched first,
    else in the order of ``prefer`` (trt, ort-trt, ort-cuda, ort-cpu for predictions).
    """
    if precision not in PRECISIONS:
        raise EdgexferError(f"unknown precision '{precision}'", f"choose from: {', '.join(PRECISIONS)}")
    kinds = _runtime_kinds(runtime, check_available)
    pairs = [(a, k) for k in kinds for a in export.artifacts
             if k.supports(a) and (precision == "auto" or a.precision == precision)]
    not_derived: list[str] = []
    for k in kinds:  # artifacts a runtime derives from the export's files (OpenVINO's bf16) run on it alone
        derived = k.derive(export.artifacts)
        pairs += [(a, k) for a in derived.artifacts if precision == "auto" or a.precision == precision]
        not_derived += [f"{name} on {k.name}: {reason}" for name, reason in derived.skipped]
    if not pairs:
        what = "artifact" if precision == "auto" else f"{precision} artifact"
        have = ", ".join(f"{a.name} ({a.format})" for a in export.artifacts)
        runtimes = ", ".join(k.name for k in kinds)
        why = f"; {'; '.join(not_derived)}" if not_derived else ""
        fix = ("run bf16 with --runtime ov-cpu on a CPU with native BF16 (pip install 'edgexfer[openvino]')"
               if precision == "bf16" else "choose another --precision or --runtime, or re-export with that precision")
        raise EdgexferError(f"export {export.path} has no {what} that {runtimes} can run (it has {have}){why}", fix)
    rank = {name: i for i, name in enumerate(prefer)}

    def verdict_of(a: Artifact, k: RuntimeKind) -> GateVerdict:
        return evidence.verdict(a.name, k.name) if evidence else GateVerdict(a.name, k.name, None)

    def speed(item: tuple[Artifact, RuntimeKind, GateVerdict]) -> tuple[float, int, int]:
        a, k, v = item
        order = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}.get(a.precision, 9)
        return (v.latency_ms if v.latency_ms is not None else float("inf"), rank.get(k.name, 99), order)

    judged = [(a, k, verdict_of(a, k)) for a, k in pairs]
    if precision == "auto":
        passed = [item for item in judged if item[2].passed]
        if passed:
            a, k, v = min(passed, key=speed)
            return Choice(a, k, v, f"fastest artifact that passed the gate ({v.describe()}; results {evidence.path})"
                          if evidence else v.describe())
        fp32 = [item for item in judged if item[0].precision == "fp32"]
        safe = [item for item in fp32 if item[2].passed is not False or allow_failed]
        if fp32 and not safe:  # the model itself fails the gate (absolute floors, sanity): nothing is safe
            raise EdgexferError(f"no artifact passed the gate; {fp32[0][2].describe()}",
                                "retrain or re-bench the model, or pass --allow-failed to run it anyway")
        if not safe:
            raise EdgexferError(f"no artifact of export {export.path} passed a bench gate here, and it has no FP32 "
                                "reference to fall back on", "bench the export, or name --precision")
        a, k, v = min(safe, key=speed)
        why = ("no bench results found, so the FP32 reference answers" if evidence is None
               else f"no artifact passed the gate on these runtimes in {evidence.path}, so the FP32 reference answers")
        if v.passed is False:
            why += " (allowed although its gate failed)"
        return Choice(a, k, v, why)
    usable = [item for item in judged if item[2].passed is not False or allow_failed]
    if not usable:
        failed = judged[0][2]
        raise EdgexferError(f"artifact {failed.describe()} in {evidence.path if evidence else 'the bench'}",
                            "use a precision that passed (e.g. --precision auto), or --allow-failed to run it anyway")
    a, k, v = min(usable, key=lambda item: (item[2].passed is None, speed(item)))
    return Choice(a, k, v, v.describe() + (" (allowed although it failed)" if v.passed is False else ""))


def _runtime_kinds(runtime: str, check_available: bool) -> list[RuntimeKind]:
    if runtime == "auto":
        kinds = [RUNTIMES[name] for name in PREDICT_RUNTIMES]
        if check_available:
            kinds = [k for k in kinds if k.available()[0]]
        if not kinds:
            raise EdgexferError("no runtime is usable here (ONNX Runtime is missing)",
                                "install edgexfer with its base dependencies (pip install edgexfer)")
        return kinds
    if runtime not in PREDICT_RUNTIMES:
        get_runtime(runtime)  # an unknown name: the runtime table's own message
        raise EdgexferError(f"runtime '{runtime}' cannot serve predictions (it needs TensorFlow)",
                            f"choose from: auto, {', '.join(PREDICT_RUNTIMES)}")
    kind = get_runtime(runtime)
    if check_available:
        ok, reason = kind.available()
        if not ok:
            raise EdgexferError(f"runtime '{runtime}' is not usable here: {reason}",
                                "choose another --runtime (auto picks a usable one)")
    return [kind]


# ---------------------------------------------------------------------------------------------- predictions


@dataclass(frozen=True)
class Prediction:
    """One image's answer: the class, its probability, every class's probability, and who answered."""

    source: str  # the file path, or "array[<i>]"
    predicted_class: str
    class_index: int
    probability: float
    probabilities: tuple[float, ...]  # in the order of ``classes``
    classes: tuple[str, ...]
    artifact: str
    runtime: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.source, "predicted_class": self.predicted_class, "probability": self.probability,
                "probabilities": dict(zip(self.classes, self.probabilities, strict=True))}


@dataclass(frozen=True)
class SkippedImage:
    path: str
    reason: str


@dataclass
class PredictionRun:
    """What ``Predictor.predict_files`` did: a prediction for every readable file, the others skipped."""

    predictions: list[Prediction]
    skipped: list[SkippedImage]
    artifact: str
    runtime: str
    provider: str
    classes: tuple[str, ...]
    export: str
    reason: str = ""

    def to_csv(self) -> str:
        """``path,predicted_class,probability,p_<class>…``; floats written so that they read back exactly."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "predicted_class", "probability", *(f"p_{c}" for c in self.classes)])
        for p in self.predictions:
            writer.writerow([p.source, p.predicted_class, repr(p.probability), *(repr(v) for v in p.probabilities)])
        return buffer.getvalue()

    def to_json(self) -> dict[str, Any]:
        return {"schema": PREDICTIONS_SCHEMA, "export": self.export, "artifact": self.artifact,
                "runtime": self.runtime, "provider": self.provider, "classes": list(self.classes),
                "predictions": [p.as_dict() for p in self.predictions],
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped]}

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write ``.csv`` or ``.json`` atomically (complete under its name, or absent)."""
        from edgexfer.io import write_json, write_text

        out = Path(path)
        check_output_path(out)
        if out.suffix.lower() == ".json":
            return write_json(out, self.to_json())
        return write_text(out, self.to_csv())


def check_output_path(path: str | os.PathLike[str]) -> None:
    out = Path(path)
    if out.suffix.lower() not in (".csv", ".json"):
        raise EdgexferError(f"--out {out} must end in .csv or .json", "e.g. --out predictions.csv")
    if out.is_dir():
        raise EdgexferError(f"--out {out} is a folder", "name a file ending in .csv or .json")


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
        self.batch_size = _check_batch_size(batch_size)
        # the manifest and every artifact's sha256 are checked before anything is loaded
        self.export = load_export(export_dir)
        self.evidence = BenchEvidence.load(bench, self.export) if bench is not None else BenchEvidence.find(self.export)
        self.choice = choose_artifact(self.export, precision, runtime, evidence=self.evidence,
                                      allow_failed=allow_failed)
        self.classes = tuple(self.export.classes)
        self.image_size = self.export.image_size
        self._runtime: Runtime | None = self.choice.runtime.open(self.choice.artifact, threads)
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
        from edgexfer.data.images import load_image

        return load_image(path, self.image_size)

    def _to_images(self, item: Any) -> list[np.ndarray]:
        from edgexfer.data.images import to_rgb_uint8

        if isinstance(item, (str, os.PathLike)):
            return [self.load(item)]
        arr = np.asarray(item)
        if arr.ndim == 4:  # a batch (N, H, W, C)
            return [to_rgb_uint8(a, self.image_size) for a in arr]
        return [to_rgb_uint8(arr, self.image_size)]

    # -- predictions
    def predict_batch(self, images: np.ndarray, batch_size: int | None = None) -> np.ndarray:
        """Probabilities (N, classes) for raw uint8 RGB images already at the model size (N, H, W, 3)."""
        return self._predict_with(np.asarray(images), batch_size or self.batch_size)

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

        from edgexfer.data.images import ImageReadError

        step = _check_batch_size(batch_size or self.batch_size)
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
                             str(self.export.path), self.choice.reason)

    def _answer(self, images: list[np.ndarray], sources: list[str], batch_size: int | None) -> list[Prediction]:
        if not images:
            return []
        probs = self._predict_with(np.stack(images), batch_size or self.batch_size)
        out = []
        for source, row in zip(sources, probs, strict=True):
            index = int(np.argmax(row))
            out.append(Prediction(source, self.classes[index], index, float(row[index]),
                                  tuple(float(v) for v in row), self.classes, self.artifact, self.runtime))
        return out

    def _predict_with(self, images: np.ndarray, batch_size: int) -> np.ndarray:
        runtime = self._runtime
        if runtime is None:
            raise EdgexferError("this Predictor is closed", "create a new Predictor")
        step = min(_check_batch_size(batch_size), runtime.max_batch or batch_size)
        outputs = []
        for start in range(0, len(images), step):
            with self._lock:
                outputs.append(runtime.predict(images[start:start + step]))
        return np.concatenate(outputs) if outputs else np.zeros((0, len(self.classes)), dtype=np.float32)


def _check_batch_size(value: int) -> int:
    if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
        raise EdgexferError(f"batch size {value!r} must be a positive integer", "e.g. --batch-size 32")
    return int(value)


# ---------------------------------------------------------------------------------------------- inputs of the CLI


@dataclass
class InputFiles:
    """Image files named on a command line: files, folders (recursive) and CSV lists of paths."""

    paths: list[Path] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)  # listed files that do not exist


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> InputFiles:
    """Expand INPUT arguments: an image file; a folder (every image file below it, sorted); a ``.csv``/``.tsv``
    list of paths (the ``path`` column, else the first; relative to the list). A named file or folder that
    does not exist, or an input with no image at all, is an error; a listed file that is missing is skipped."""
    from edgexfer.data.images import is_image_file

    if not inputs:
        raise EdgexferError("no input images given", "pass image files, folders or a CSV of paths")
    found = InputFiles()
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise EdgexferError(f"input {p} does not exist", "pass existing image files, folders or a CSV of paths")
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f)
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not files:
                raise EdgexferError(f"folder {p} holds no image files (png, jpg, bmp, tif, dcm)",
                                    "pass a folder with images in it")
            found.paths += files
        elif p.suffix.lower() in (".csv", ".tsv"):
            listed = _read_path_list(p)
            for f in listed:
                if f.is_file():
                    found.paths.append(f)
                else:
                    found.skipped.append(SkippedImage(str(f), f"listed in {p.name} but no such file"))
        else:
            found.paths.append(p)  # any other file is tried as an image (unreadable ones are skipped)
    return found


def _read_path_list(path: Path) -> list[Path]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgexferError(f"cannot read the list {path}: {exc}", "pass a UTF-8 CSV with one path per row") from exc
    rows = [r for r in csv.reader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            if r and any(c.strip() for c in r)]
    if not rows:
        raise EdgexferError(f"the list {path} is empty", "put one image path per row")
    column = 0
    header = [c.strip().lower() for c in rows[0]]
    if "path" in header:
        column, rows = header.index("path"), rows[1:]
    elif not _looks_like_path(rows[0][0], path.parent):
        rows = rows[1:]  # a header without a "path" column: take the first column
    paths = [Path(r[column].strip()) for r in rows if len(r) > column and r[column].strip()]
    if not paths:
        raise EdgexferError(f"the list {path} names no files", "put one image path per row")
    return [p if p.is_absolute() else path.parent / p for p in paths]


def _looks_like_path(value: str, base: Path) -> bool:
    from edgexfer.data.images import IMAGE_SUFFIXES

    candidate = Path(value.strip())
    return candidate.suffix.lower() in IMAGE_SUFFIXES or (base / candidate).exists() or candidate.exists()


def predict_inputs(export_dir: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]], *,
                   precision: str = "auto", runtime: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE,
                   out: str | os.PathLike[str] | None = None, bench: str | os.PathLike[str] | None = None,
                   allow_failed: bool = False, threads: int | None = None, progress: bool = False,
                   log: Callable[[str], None] | None = None) -> PredictionRun:
    """What ``edgexfer predict`` does: check the options, expand the inputs, predict, write ``out``.

    Everything a user can get wrong is checked before a model is loaded or a file written. Raises
    EdgexferError when no file could be read at all (nothing is written then).
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    _check_batch_size(batch_size)
    if out is not None:
        check_output_path(out)
    files = collect_inputs(inputs)
    with Predictor(export_dir, precision, runtime, bench=bench, allow_failed=allow_failed, threads=threads,
                   batch_size=batch_size) as model:
        log(f"{model.artifact} ({model.precision}) on {model.runtime}: {model.choice.reason}")
        result = model.predict_files(files.paths, batch_size, progress=progress)
    result.skipped = files.skipped + result.skipped
    for s in result.skipped:
        log(f"skipped {s.path}: {s.reason}")
    if not result.predictions:
        raise EdgexferError(f"none of the {len(files.paths) + len(files.skipped)} input image(s) could be read",
                            "check the files listed above")
    if out is not None:
        result.write(out)
    return result


__all__ = ["BenchEvidence", "Choice", "GateVerdict", "InputFiles", "Prediction", "PredictionRun", "Predictor",
           "SkippedImage", "choose_artifact", "collect_inputs", "predict_inputs"]

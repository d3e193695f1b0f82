"""Use a verified model: ``Predictor`` runs one artifact of an export on new images, without TensorFlow.

The pixels a deployed model sees are the ones bench measured: images are read by
``edgexfer.data.images.load_image`` (the one decode + resize of training, calibration and bench),
the artifact is opened through the runtime table (``edgexfer.runtime.RUNTIMES``) and checked against
the export manifest's sha256 first (``edgexfer.evaluate.exported.load_export``) and again once loaded.
Which artifact runs is decided by :func:`choose_artifact`: ``precision="auto"`` takes the fastest
artifact whose accuracy gate passed in the bench results, and an artifact whose gate failed is refused
unless ``allow_failed=True``. A verdict counts only for the bytes it judged: bench rows carry the
sha256 of the file they ran, matched to the manifest's, never to an artifact's name. Bench results are
found from the export (``edgexfer.contracts.bench.bench_locations``) or named (``bench=``), never in
the current directory.

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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer._folders import refuse_overlap
from edgexfer.contracts.bench import (
    RESULTS_FILE,
    bench_locations,
    bench_rows,
    is_sha256,
    load_results,
    results_path,
)
from edgexfer.contracts.bench import SCHEMA as BENCH_SCHEMA
from edgexfer.contracts.predictions import PREDICTIONS_SCHEMA
from edgexfer.data.images import IMAGE_SUFFIXES, ImageReadError, is_image_file, load_image, to_rgb_uint8
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.exported import ExportDir, load_export
from edgexfer.evaluate.operating_point import DecisionRule
from edgexfer.io import check_writable, sha256_file, write_json, write_text
from edgexfer.limits import check_threads
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
    """What a bench said about one artifact on one runtime. ``passed`` None: not benched there, or benched
    as other bytes (``unbound`` then says so in one line, and the verdict counts for nothing)."""

    artifact: str
    runtime: str
    passed: bool | None
    reasons: tuple[str, ...] = ()
    latency_ms: float | None = None  # p50 per image at the smallest batch size measured
    sha256: str | None = None  # of the file the bench ran (None: a row of edgexfer.bench/1)
    file: str | None = None
    unbound: str = ""  # why results that name this artifact judge other bytes ("" when they do not)
    #: the gate's verdict: pass, fail or inconclusive (None: a bench before verdicts)
    outcome: str | None = None

    def describe(self) -> str:
        if self.unbound:
            return self.unbound
        if self.passed is None:
            return f"{self.artifact} on {self.runtime}: not benched"
        word = "INCONCLUSIVE" if self.outcome == "inconclusive" else "FAILED"
        state = "passed" if self.passed else f"{word} (" + "; ".join(self.reasons or ("no reason recorded",)) + ")"
        speed = f", {self.latency_ms:.3g} ms/image" if self.latency_ms is not None else ""
        bytes_ = f", sha256 {self.sha256[:12]}…" if self.sha256 else ""
        return f"{self.artifact} on {self.runtime}: gate {state}{speed}{bytes_}"


@dataclass(frozen=True)
class BenchEvidence:
    """The gate verdicts and latencies of one bench results.json; each verdict holds the sha256 of the file
    it judged, and counts only for a file with those bytes (``verdict``)."""

    path: Path
    verdicts: tuple[GateVerdict, ...]
    schema: str = BENCH_SCHEMA
    #: the clinical operating point bench chose (binary task or --positive-class), applied when predicting
    decision: DecisionRule | None = None

    @classmethod
    def load(cls, location: str | os.PathLike[str]) -> BenchEvidence:
        """Read a BENCH_DIR or its results.json (through ``edgexfer.contracts.bench.load_results``)."""
        path = results_path(location)
        if not path.is_file():
            raise EdgexferError(f"bench results {path} do not exist", "pass a folder written by edgexfer bench")
        results = load_results(path)
        verdicts = []
        for row in bench_rows(results):
            gate = row.gate if isinstance(row.gate, dict) else {}
            passed = gate.get("passed")
            verdicts.append(GateVerdict(
                artifact=str(row.artifact), runtime=str(row.runtime),
                passed=bool(passed) if isinstance(passed, bool) else None,
                reasons=tuple(str(r) for r in gate.get("reasons") or ()),
                latency_ms=_per_image_latency(row.latency_ms or {}),
                sha256=row.sha256 if is_sha256(row.sha256) else None, file=row.file,
                outcome=str(gate["verdict"]) if gate.get("verdict") else None))
        return cls(path, tuple(verdicts), str(results["schema"]),
                   DecisionRule.from_record(results.get("operating_point"), str(path)))

    @classmethod
    def find(cls, export: ExportDir) -> BenchEvidence | None:
        """The bench results of ``export``, looked for from the export only (never the current directory):
        bench's default ``benchmarks/<name>`` beside the export's parent, then ``<export>/../bench`` (the
        demo's). The first whose rows judged this export's bytes wins, else the first found (its verdicts then
        say why they do not count); None when neither holds results."""
        found: list[BenchEvidence] = []
        for folder in bench_locations(export.path, export.name):
            if (folder / RESULTS_FILE).is_file():
                try:
                    found.append(cls.load(folder))
                except EdgexferError:
                    continue  # not a readable results file: it judges nothing
        for evidence in found:
            if evidence.judges(export):
                return evidence
        return found[0] if found else None

    def judges(self, export: ExportDir) -> bool:
        """Whether any row judged the bytes of an artifact of ``export``."""
        mine = {a.sha256 for a in export.artifacts if a.sha256}
        return any(v.sha256 in mine for v in self.verdicts)

    def verdict(self, artifact: Artifact, runtime: str) -> GateVerdict:
        """The verdict for the bytes of ``artifact`` on ``runtime``, matched by sha256, never by name.

        Without a row for those bytes on ``runtime``, a failure of the same bytes on another runtime counts
        (the file broke the gate somewhere). Rows that name the artifact (or its file) but judged other bytes,
        or carry no sha256 (edgexfer.bench/1), count for nothing: the verdict is "not benched" and
        ``unbound`` says, in one line, whose bytes they judged."""
        name = artifact.name
        # the same bytes run in BF16 (OpenVINO's bf16 runs the FP32 file) are another verdict than FP32's
        same = [v for v in self.verdicts if v.sha256 is not None and v.sha256 == artifact.sha256
                and (v.artifact == name or "bf16" not in (v.artifact, artifact.precision))]
        for v in same:
            if v.runtime == runtime:
                return replace(v, artifact=name)
        for v in same:
            if v.passed is False:
                return GateVerdict(name, runtime, False,
                                   tuple(f"on {v.runtime}: {r}" for r in v.reasons) or (f"failed on {v.runtime}",),
                                   sha256=v.sha256, file=v.file)
        if same:
            return GateVerdict(name, runtime, None, sha256=artifact.sha256, file=artifact.path.name)
        named = [v for v in self.verdicts if v.artifact == name or v.file == artifact.path.name]
        if not named:
            return GateVerdict(name, runtime, None)
        return GateVerdict(name, runtime, None, file=artifact.path.name, unbound=self._unbound(artifact, named))

    def _unbound(self, artifact: Artifact, named: Sequence[GateVerdict]) -> str:
        benched = next((v.sha256 for v in named if v.sha256), None)
        if benched is None:
            return f"bench results {self.path} ({self.schema}) record no sha256, so they judge no file"
        return (f"bench results {self.path} are for another {artifact.path.name} (sha256 {benched[:8]}…, "
                f"this one {str(artifact.sha256)[:8]}…)")


def bench_again(export: ExportDir) -> str:
    return f"bench again: edgexfer bench {export.path}"


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

    def why(self) -> str:
        """``reason`` without the "<artifact> on <runtime>: " it may start with (for a line that names them)."""
        return self.reason.removeprefix(f"{self.artifact.name} on {self.runtime.name}: ")

    def line(self) -> str:
        """One line for the console: what answers (its precision only where its name does not say it), then
        why, without naming the pair a second time."""
        a = self.artifact
        head = f"{a.name} on {self.runtime.name}" + ("" if a.precision == a.name else f" ({a.precision})")
        return f"{head}: {self.why()}"


def choose_artifact(export: ExportDir, precision: str = "auto", runtime: str = "auto", *,
                    evidence: BenchEvidence | None = None, allow_failed: bool = False,
                    check_available: bool = True, prefer: Sequence[str] = PREDICT_RUNTIMES) -> Choice:
    """Pick the (artifact, runtime) pair to serve.

    Verdicts are matched to the artifacts' bytes (``BenchEvidence.verdict``: the manifest's sha256, which
    ``load_export`` checked against the files). ``precision`` "auto": the fastest pair whose gate passed in
    ``evidence``; without evidence, the FP32 reference. A named precision: that artifact, refused when its
    gate failed or when the results judged other bytes of it (``allow_failed`` lets both through). Whenever
    results name an artifact whose bytes they did not judge, the reason says so in one line. ``runtime``
    "auto": every runtime usable here (``check_available``), fastest benched first, else in the order of
    ``prefer`` (trt, ort-trt, ort-cuda, ort-cpu for predictions).
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
        return evidence.verdict(a, k.name) if evidence else GateVerdict(a.name, k.name, None)

    def speed(item: tuple[Artifact, RuntimeKind, GateVerdict]) -> tuple[float, int, int]:
        a, k, v = item
        order = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}.get(a.precision, 9)
        return (v.latency_ms if v.latency_ms is not None else float("inf"), rank.get(k.name, 99), order)

    judged = [(a, k, verdict_of(a, k)) for a, k in pairs]
    unbound = list(dict.fromkeys(v.unbound for _, _, v in judged if v.unbound))
    not_used = f"; not used: {'; '.join(unbound)}; {bench_again(export)}" if unbound else ""
    if precision == "auto":
        passed = [item for item in judged if item[2].passed]
        if passed:
            a, k, v = min(passed, key=speed)
            return Choice(a, k, v, (f"fastest artifact that passed the gate ({v.describe()}; results {evidence.path})"
                                    if evidence else v.describe()) + not_used)
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
        return Choice(a, k, v, why + not_used)
    usable = [item for item in judged if (item[2].passed is not False and not item[2].unbound) or allow_failed]
    if not usable:
        refused = judged[0][2]
        if refused.unbound:
            raise EdgexferError(refused.unbound, f"{bench_again(export)} (or --allow-failed to run it unverified)")
        raise EdgexferError(f"artifact {refused.describe()} in {evidence.path if evidence else 'the bench'}",
                            "use a precision that passed (e.g. --precision auto), or --allow-failed to run it anyway")
    a, k, v = min(usable, key=lambda item: (item[2].passed is not True, item[2].passed is None, speed(item)))
    note = (" (allowed although it failed)" if v.passed is False
            else " (allowed although unverified)" if v.unbound else "")
    return Choice(a, k, v, v.describe() + note)


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
    sha256: str | None = None  # of the file that answered (the manifest's, checked against the bytes loaded)
    decision: DecisionRule | None = None  # the clinical operating point the answers follow, if any

    def to_csv(self) -> str:
        """``path,predicted_class,probability,p_<class>…``; floats written so that they read back exactly."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "predicted_class", "probability", *(f"p_{c}" for c in self.classes)])
        for p in self.predictions:
            writer.writerow([p.source, p.predicted_class, repr(p.probability), *(repr(v) for v in p.probabilities)])
        return buffer.getvalue()

    def to_json(self) -> dict[str, Any]:
        decision = self.decision
        return {"schema": PREDICTIONS_SCHEMA, "export": self.export, "artifact": self.artifact,
                "sha256": self.sha256, "runtime": self.runtime, "provider": self.provider,
                "classes": list(self.classes),
                "decision": None if decision is None else {
                    "positive_class": decision.positive_class, "threshold": decision.threshold,
                    "source": decision.source},
                "predictions": [p.as_dict() for p in self.predictions],
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped]}

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write ``.csv`` or ``.json`` atomically (complete under its name, or absent)."""

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
        step = min(_check_batch_size(batch_size), runtime.max_batch or batch_size)
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
        check_writable(out)  # a read-only folder: said now, not after every image was predicted
        # inside the export or its bench, the list is deleted by the next export/bench; over an input list, lost.
        # A folder of images may hold it: only image files are read from folders.
        refuse_overlap(out, {"export folder": export_dir, "bench folder": bench})
        for given in inputs:
            if not Path(given).is_dir():
                refuse_overlap(out, {"input": given})
    files = collect_inputs(inputs)
    with Predictor(export_dir, precision, runtime, bench=bench, allow_failed=allow_failed, threads=threads,
                   batch_size=batch_size) as model:
        log(model.choice.line())
        if model.decision is not None:
            log(f"answers follow the clinical operating point from {model.decision.source}: "
                f"{model.decision.describe()}")
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

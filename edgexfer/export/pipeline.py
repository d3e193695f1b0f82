"""`export_run`: a finished run → FP32/FP16/INT8 ONNX (+ TensorRT engines) and manifest.json.

Everything is built in a staging folder beside EXPORT_DIR and swapped in by renames at the end, so a
failure at any step leaves EXPORT_DIR as it was: no partial file, no half-updated manifest.

No litter: the export holds EXPORT_DIR's folder lock for its lifetime; every temporary file (the INT8
rounds, ONNX Runtime's calibration models) lives inside the staging folder, which is removed when the
export fails or is interrupted (SIGINT, SIGTERM); after a kill -9 the next export of the same folder
sweeps the dead process's ``.<name>.staging-*`` and ``.<name>.old-*`` folders (safe: it holds the lock).
Files and folders get the modes the umask gives (0644/0755 under 022).
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

import edgexfer._folders as folders
import edgexfer.contracts.manifest as contract
import edgexfer.export.manifest as mf
import edgexfer.export.tensorrt as trt_export  # engine_support looked up when called (tests replace it)
from edgexfer.contracts import check_known_keys
from edgexfer.contracts.run import RunRecord, load_run
from edgexfer.data.calibration import find_or_build
from edgexfer.data.splits import Split
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.metrics import agreement
from edgexfer.evaluate.operating_point import OperatingPoint, choose_threshold, positive_index
from edgexfer.export.config import ExportConfig
from edgexfer.export.int8.stage import Int8Inputs, run_int8
from edgexfer.export.keras_onnx import convert_run_model, metadata_for
from edgexfer.export.onnx_fp16 import CHECK_LIMIT, convert_to_fp16
from edgexfer.export.tensorrt import EngineUnavailable, build_engine
from edgexfer.export.tensorrt_rules import EXPORT_FIX, require_tensorrt_ready
from edgexfer.io import fix_modes, lock_folder, make_temp_dir, write_json
from edgexfer.runtime.ort_runtime import predict_onnx

TIMING_CACHE_FILE = "trt_timing.cache"
#: the staging folder's scratch space (INT8 rounds, library temp files): removed before the swap
TEMP_DIR = ".tmp"


class Timeline:
    """Wall time per export stage, recorded in the manifest (``timings``) for benchmarks and users."""

    def __init__(self) -> None:
        self.stages: list[dict[str, Any]] = []

    @contextlib.contextmanager
    def stage(self, name: str):
        started, t0 = time.time(), time.perf_counter()
        try:
            yield
        finally:
            self.stages.append({"stage": name, "started": round(started, 3),
                                "seconds": round(time.perf_counter() - t0, 3)})


def export_run(config: ExportConfig | dict[str, Any]) -> dict[str, Any]:
    """Export the run ``config.run_dir`` into ``config.export_dir``; returns the manifest written.

    With ``engine=True`` where TensorRT or a GPU is missing, the ONNX artifacts and manifest are
    written first, then `EngineUnavailable` is raised (CLI: one line, exit 2).
    """
    if isinstance(config, dict):
        check_known_keys(ExportConfig, config, "export")  # one line, exit 2, like every config
        config = ExportConfig(**config)
    config.validate()
    check_export_dependencies()
    say = _printer(config.progress)
    timeline = Timeline()
    with timeline.stage("check_run"):
        run = load_run(config.run_dir)
        run.verify_model()
        run.verify_split()
    if config.wants_operating_point:  # an unknown class, or no positive class to take: one line, before any work
        if positive_index(run.classes, config.positive_class) is None:
            raise EdgexferError(f"--target-sensitivity needs --positive-class for a task of {len(run.classes)} classes",
                                f"name the positive class, one of: {', '.join(run.classes)}")
    out = config.export_dir
    _check_out(out)
    lock = lock_folder(out, "edgexfer export")
    try:
        _check_out(out)
        removed = sweep_stale(out)
        if removed:
            say(f"removed {len(removed)} folder(s) left by an export that was killed: {', '.join(p.name for p in removed)}")
        with _interrupts_raise():
            manifest, engine_reason = _export_locked(config, run, out, say, timeline)
    finally:
        lock.release()

    if engine_reason is not None:
        error = EngineUnavailable(
            f"--engine: no TensorRT engine was built ({engine_reason}); the ONNX artifacts are in {out}",
            "build engines on a machine with TensorRT and an NVIDIA GPU: edgexfer export RUN_DIR --engine",
        )
        error.manifest = manifest  # what was written, for the CLI's summary
        raise error
    return manifest


#: modules the export needs beyond the light (bench) install: the train extra
EXPORT_MODULES = ("tensorflow", "keras", "tf2onnx")


def check_export_dependencies() -> None:
    """Refuse at once (exit 2, nothing written) on the light install, where Keras/TensorFlow are not installed."""
    missing = []
    for name in EXPORT_MODULES:
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            missing.append(name)
    if missing:
        raise EdgexferError(f"export needs {', '.join(missing)}, which this installation does not have "
                            "(the light install runs bench and predict only)",
                            "install the train extra: pip install 'edgexfer[train]'")


def sweep_stale(out: Path) -> list[Path]:
    """Undo a killed export beside ``out`` (`edgexfer._folders.sweep_stale`): an old export a kill left aside
    is put back, ``.<name>.staging-*`` and ``.<name>.old-*`` folders are removed. Call holding ``out``'s lock."""
    return folders.sweep_stale(out)


class ExportInterrupted(EdgexferError):
    """SIGINT or SIGTERM during an export: the staging folder is removed, EXPORT_DIR is as it was."""

    def __init__(self, signum: int):
        name = signal.Signals(signum).name
        super().__init__(f"export interrupted by {name}; nothing was written and the temporary files are removed",
                         "run the same command again")
        self.exit_code = 128 + signum


@contextlib.contextmanager
def _interrupts_raise():
    """SIGINT and SIGTERM raise `ExportInterrupted` (so that ``finally`` blocks clean up) while the export runs;
    the previous handlers come back afterwards. Only the main thread can install handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise ExportInterrupted(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


@contextlib.contextmanager
def _temp_files_inside(folder: Path):
    """Route this thread's temporary files and folders (ONNX Runtime's calibration models, the INT8
    sensitivity models; the conversion child process gets it as its TMPDIR) into ``folder``, so that they go
    with the staging folder whatever happens. Other threads of the process keep their own temp folder."""
    with folders.thread_temp_dir(folder):  # this thread only: nothing process-wide changes
        yield


def _export_locked(config: ExportConfig, run: RunRecord, out: Path, say, timeline: Timeline
                   ) -> tuple[dict[str, Any], str | None]:
    engine_reason = None
    if config.engine:
        engine_ok, detail = trt_export.engine_support()
        if not engine_ok:
            engine_reason = detail
            say(f"TensorRT engines will not be built: {detail}; writing the ONNX artifacts only")

    h, w = run.image_size
    with timeline.stage("load_validation_images"):
        split = run.load_split(config.data_root)
        # INT8 judges its agreement with FP32 on up to agreement_images validation images
        limit = max(config.parity_samples, config.agreement_images if config.int8 else 0)
        val_images, _ = split.load_arrays("val", (h, w), limit=limit)
    if len(val_images) == 0:
        raise EdgexferError(f"the validation split of run {run.name} is empty, so parity cannot be checked",
                            "fine-tune with a validation fraction above zero")

    calset = None
    if config.int8:
        with timeline.stage("calibration_set"):
            calset, built = find_or_build(config.calibration_location, run.path, config.calibration_size,
                                          config.calibration_seed, data_root=config.data_root, progress=config.progress)
        calset.check_compatible(run.image_size, run.classes)
        say(f"calibration set {calset.npz_path} ({'built' if built else 'reused'}, {calset.size} images)")

    staging = None
    prefix = f".{out.name}.staging-{os.getpid()}-"
    try:
        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            staging = make_temp_dir(prefix, out.parent)
        except OSError as exc:
            raise EdgexferError(f"cannot create the export folder {out}: {exc.strerror or exc}",
                                "choose a writable --out") from None
        work = staging / TEMP_DIR
        with _temp_files_inside(work):
            artifacts, point = _build(config, run, staging, split, val_images, calset,
                                      engine_reason is None and config.engine, out, say, timeline)
        shutil.rmtree(work, ignore_errors=True)
        with timeline.stage("finalize"):
            for name in contract.RUN_FILES:
                _copy(run.path / name, staging / name)
            for name in contract.OPTIONAL_RUN_FILES:
                if (run.path / name).is_file():
                    _copy(run.path / name, staging / name)
            record = contract.new_manifest(out.name, run, artifacts, config.to_record())
            if point is not None:
                record.extra["operating_point"] = point.as_dict()
            record.extra["timings"] = timeline.stages
            contract.write_manifest(staging, record)
            manifest = record.to_dict()
            fix_modes(staging)
            _swap_in(staging, out)
    finally:
        # by its prefix, not the variable: a signal can land between mkdtemp and the assignment
        for left in out.parent.glob(f"{prefix}*"):
            shutil.rmtree(left, ignore_errors=True)
    return manifest, engine_reason


def summary_lines(manifest: dict[str, Any], export_dir: str | os.PathLike[str] | None = None) -> list[str]:
    """One line per artifact: name, file, size, parity/agreement and excluded nodes."""
    lines = []
    for a in manifest["artifacts"]:
        where = Path(export_dir) / a["file"] if export_dir is not None else a["file"]
        text = f"{a['name']:<9} {where}  {a['size_bytes'] / 1e6:.2f} MB"
        parity = a.get("parity")
        if parity:
            text += f"  vs {parity['against']}: top-1 agreement {parity['agreement'] * 100:.1f}%"
            if parity.get("interval"):
                text += f" (95% CI {parity['interval'][0] * 100:.1f}-{parity['interval'][1] * 100:.1f}%)"
            text += f", max |Δp| {parity['max_abs_diff']:.2e} (n={parity['n']})"
        if a.get("excluded_nodes"):
            text += f", {len(a['excluded_nodes'])} node(s) kept in float"
        if a.get("quantizer"):
            text += f", quantized by {a['quantizer']['name']}"
        lines.append(text)
        layers = a.get("layers")
        if layers:
            lowest = layers.get("lowest_sqnr") or {}
            lines.append(f"{'':<9} layer report {layers['file']}: {layers['nodes']} nodes"
                         + (f", lowest output SQNR {lowest['output_sqnr_db']:.1f} dB at {lowest['name']} ({lowest['op_type']})"
                            if lowest else ""))
    point = manifest.get("operating_point")
    if point:
        lines.append(f"operating point: '{point['positive_class']}' when its probability is at least "
                     f"{point['threshold']:.6g} ({point['method']}, chosen on {point['chosen_on']}); predict and "
                     "package apply it")
    return lines


# ------------------------------------------------------------------------------------------ stages


def _build(config: ExportConfig, run: RunRecord, staging: Path, split: Split, val_images: np.ndarray, calset: Any,
           build_engines: bool, out: Path, say, timeline: Timeline
           ) -> tuple[list[dict[str, Any]], OperatingPoint | None]:
    artifacts: list[dict[str, Any]] = []
    metadata = metadata_for(run)
    fp32_path = staging / mf.onnx_file("fp32")
    say(f"FP32: converting {run.model_path} to ONNX (opset {config.opset})")
    with timeline.stage("fp32_convert"):  # a child process: TensorFlow's memory is gone when it returns
        conversion = convert_run_model(run.model_path, fp32_path, image_size=run.image_size, opset=config.opset,
                                       metadata={**metadata, "edgexfer.precision": "fp32"},
                                       parity_images=val_images, batch_size=config.batch_size)
        fixes = conversion.fixes
    with timeline.stage("fp32_parity"):
        fp32_probs = predict_onnx(fp32_path, val_images, config.batch_size)
        assert conversion.keras_probs is not None  # parity images were given
        # Keras predicted the first KERAS_PARITY_LIMIT images (TensorFlow is the slow side of the check)
        parity = _parity("keras", conversion.keras_probs, fp32_probs[: len(conversion.keras_probs)])
    if parity["max_abs_diff"] > config.parity_tolerance:
        raise EdgexferError(
            f"the FP32 ONNX differs from the Keras model by {parity['max_abs_diff']:.2e} in probability on "
            f"{parity['n']} validation images (tolerance {config.parity_tolerance:g}); nothing was written",
            "report the backbone, or try another --opset",
        )
    artifacts.append(mf.artifact_record("fp32", fp32_path, fmt="onnx", precision="fp32", target="any", parity=parity,
                                        graph_fixes=fixes))
    point = None
    if config.wants_operating_point:
        with timeline.stage("operating_point"):
            point = _choose_operating_point(config, run, split, fp32_path, val_images, fp32_probs)
        say(f"operating point: '{point.positive_class}' at probability {point.threshold:.6g} ({point.method}; "
            f"sensitivity {point.sensitivity:.3f}, specificity {point.specificity:.3f} on {point.chosen_on})")

    if config.fp16:
        fp16_path = staging / mf.onnx_file("fp16")
        say("FP16: converting the FP32 graph")
        with timeline.stage("fp16_convert"):
            kept = convert_to_fp16(fp32_path, fp16_path)
        with timeline.stage("fp16_check"):
            fp16_probs = predict_onnx(fp16_path, val_images[:CHECK_LIMIT], config.batch_size)
            fp16_parity = _parity("fp32", fp32_probs[: len(fp16_probs)], fp16_probs)
        artifacts.append(mf.artifact_record("fp16", fp16_path, fmt="onnx", precision="fp16", target="any",
                                            parity=fp16_parity, excluded_nodes=kept))

    if config.int8:
        int8_path = staging / mf.onnx_file("int8", config.resolved_target)
        int8 = run_int8(config, Int8Inputs(fp32_path, int8_path, val_images, fp32_probs, split, run.image_size, calset,
                                           metadata), say, timeline)
        artifacts.append(int8.artifact(int8_path, config.resolved_target))

    if config.resolved_target == "tensorrt":  # TensorRT's parser rules, checked before any engine or the swap
        with timeline.stage("tensorrt_rules"):
            for artifact in _tensorrt_sources(artifacts):
                require_tensorrt_ready(staging / artifact["file"], artifact["file"], EXPORT_FIX)

    if build_engines:
        cache = staging / TIMING_CACHE_FILE
        previous = config.timing_cache if config.timing_cache is not None else out / TIMING_CACHE_FILE
        if previous.is_file():
            shutil.copyfile(previous, cache)
        sources = _tensorrt_sources(artifacts)
        for source in sources:
            precision = source["precision"]
            engine_path = staging / mf.engine_file(precision)
            say(f"TensorRT: building {engine_path.name} from {source['file']} (batch 1..{config.max_batch})")
            with timeline.stage(f"engine_{precision}"):
                record = build_engine(staging / source["file"], engine_path, input_name="image",
                                      image_size=run.image_size, max_batch=config.max_batch,
                                      opt_batch=config.opt_batch, timing_cache=cache)
            record["onnx_sha256"] = source["sha256"]
            write_json(Path(str(engine_path) + ".json"), record)
            artifacts.append(mf.artifact_record(f"{precision}-trt", engine_path, fmt="tensorrt", precision=precision,
                                                target="tensorrt", parity=None,
                                                excluded_nodes=source["excluded_nodes"],
                                                calibration=source["calibration"], engine=record,
                                                source_artifact=source["name"]))
    return artifacts, point


def _choose_operating_point(config: ExportConfig, run: RunRecord, split: Split, fp32_path: Path,
                            val_images: np.ndarray, fp32_probs: np.ndarray) -> OperatingPoint:
    """The clinical operating point on every validation image, with the FP32 ONNX's probabilities (those
    the parity check computed when it loaded them all); validation images without both kinds: one line."""
    images, labels = split.load_arrays("val", run.image_size)
    probs = fp32_probs if len(images) == len(val_images) else predict_onnx(fp32_path, images, config.batch_size)
    positive = positive_index(run.classes, config.positive_class)
    assert positive is not None  # export_run refused the options otherwise
    point = choose_threshold(labels, probs[:, positive], positive, run.classes, config.target_sensitivity,
                             f"the run's validation split ({len(labels)} images, FP32 ONNX)")
    if point is None:
        raise EdgexferError(f"the validation split of run {run.name} lacks images of class "
                            f"'{run.classes[positive]}' or of the other classes, so no threshold can be chosen; "
                            "nothing was written", "fine-tune with a larger validation fraction, or leave out "
                            "--positive-class/--target-sensitivity")
    return dataclasses.replace(point, source="export")


# ------------------------------------------------------------------------------------------ helpers


def _tensorrt_sources(artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The ONNX artifacts TensorRT builds from: FP16 and INT8, else FP32."""
    return [a for a in artifacts if a["precision"] in ("fp16", "int8")] or artifacts[:1]


def _parity(against: str, reference: np.ndarray, candidate: np.ndarray) -> dict[str, Any]:
    return {"against": against, **agreement(reference, candidate), "n": int(len(reference))}


def _printer(enabled: bool):
    def say(message: str) -> None:
        if enabled:
            print(f"edgexfer export: {message}", file=sys.stderr, flush=True)

    return say


def _check_out(out: Path) -> None:
    """EXPORT_DIR may be new, empty, or an earlier export (replaced whole); anything else is refused."""
    if out.exists() and not out.is_dir():
        raise EdgexferError(f"export path {out} is a file", "pass a folder to --out")
    if out.is_dir() and any(out.iterdir()) and not contract.is_export_dir(out):
        raise EdgexferError(f"{out} is not empty and holds no edgexfer export manifest", "choose another --out or empty the folder")


def _copy(src: Path, dst: Path) -> None:
    try:
        shutil.copyfile(src, dst)
    except OSError as exc:
        raise EdgexferError(f"cannot copy {src} into the export: {exc.strerror or exc}", "check free disk space") from None


def _swap_in(staging: Path, out: Path) -> None:
    """Replace ``out`` by ``staging`` (`edgexfer._folders.swap_in`: safe whatever step a kill lands on)."""
    folders.swap_in(staging, out)

"""A Triton Inference Server model repository written from an export, never by hand.

Layout (``write_triton_repository``)::

    <repository>/<model name>/config.pbtxt     model configuration (protobuf text format)
    <repository>/<model name>/labels.txt       class names, one a line, index order (output label file)
    <repository>/<model name>/1/model.onnx     the chosen ONNX artifact (or 1/model.plan for an engine)

``config.pbtxt`` names the graph's own input and output tensors, their dims without the batch axis
(``max_batch_size`` > 0 makes Triton add it), the data types, dynamic batching and, for the runtime the
bench measured, the backend: ``onnxruntime_onnx`` (CPU or GPU, or GPU with the TensorRT accelerator for
``ort-trt``), ``tensorrt_plan`` for an engine, or ``backend: "openvino"`` for ``ov-cpu`` (Triton's OpenVINO
backend reading ``1/model.onnx`` through ``default_model_filename``, with the latency hint, one stream and,
for the bf16 row, ``HINT_BF16``: https://github.com/triton-inference-server/openvino_backend, README
"Parameters" and "Loading non default model format"). The verdict that chose the artifact is the one whose
bench row recorded the artifact's sha256 (``edgexfer.predict.choose_artifact``); the model file is copied,
then its sha256 is checked against the export manifest, so what Triton serves is the bytes bench verified.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from edgexfer._folders import refuse_overlap, swap_in, sweep_stale
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.exported import ExportDir, load_export
from edgexfer.evaluate.operating_point import DecisionRule
from edgexfer.io import fix_modes, lock_folder, make_temp_dir, sha256_file
from edgexfer.predict import BenchEvidence, Choice, choose_artifact, served_decision

CONFIG = "config.pbtxt"
LABELS = "labels.txt"
#: the field types of Triton's model_config.proto (``int32 max_batch_size``, ``uint64
#: max_queue_delay_microseconds`` in DynamicBatching): larger values are rejected by Triton's own parser
#: (https://github.com/triton-inference-server/common/blob/main/protobuf/model_config.proto)
MAX_BATCH_SIZE = 2**31 - 1
MAX_QUEUE_DELAY_US = 2**64 - 1
INSTANCE_KINDS = ("auto", "gpu", "cpu")
# Triton model names are folder names; keep them portable
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_ORT_TYPES = {1: "TYPE_FP32", 10: "TYPE_FP16", 2: "TYPE_UINT8"}  # onnx.TensorProto element types
# the order a package falls back to when no bench verdict decides: plain ONNX Runtime first
PACKAGE_RUNTIMES = ("ort-cuda", "ort-cpu", "ort-trt", "trt", "ov-cpu")
OPENVINO = "openvino"  # Triton's OpenVINO backend (a backend name, where the others are platforms)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    data_type: str  # Triton DataType enum name, e.g. TYPE_FP32
    dims: tuple[int, ...]  # without the batch axis


@dataclass(frozen=True)
class TritonModel:
    """What was written: the model folder, its configuration's essentials and the artifact behind it."""

    repository: Path
    name: str
    folder: Path
    platform: str
    model_file: Path
    input: TensorSpec
    output: TensorSpec
    max_batch_size: int
    artifact: str
    runtime: str
    sha256: str
    reason: str

    @property
    def config_path(self) -> Path:
        return self.folder / CONFIG

    def serve_command(self) -> str:
        return f"tritonserver --model-repository={self.repository.absolute()}"


def default_model_name(export: ExportDir) -> str:
    """The export's name, unless that is the generic folder name ``exported`` (the demo's
    ``runs/demo/exported``): then the folder above it names the model (``demo``)."""
    if export.name != "exported":
        return export.name
    return export.path.resolve().parent.name or export.name


def write_triton_repository(export_dir: str | os.PathLike[str], out: str | os.PathLike[str], *,
                            precision: str = "auto", runtime: str = "auto", name: str | None = None,
                            max_batch_size: int = 32, max_queue_delay_us: int = 100,
                            instance_kind: str = "auto", bench: str | os.PathLike[str] | None = None,
                            allow_failed: bool = False, overwrite: bool = False) -> TritonModel:
    """Write ``<out>/<name>/`` (config.pbtxt, labels.txt, 1/model.onnx|model.plan) for the chosen artifact.

    The artifact is chosen as ``edgexfer predict`` chooses (``precision``/``runtime``; "auto": the bench's
    recommendation, else the fastest that passed the bench gate, else FP32), without asking whether that runtime is usable on this machine:
    the repository is for the server. An artifact whose gate failed is refused unless ``allow_failed``.
    """
    if not 1 <= max_batch_size <= MAX_BATCH_SIZE:
        raise EdgexferError(f"--max-batch-size {max_batch_size} is outside 1..{MAX_BATCH_SIZE} (Triton's "
                            "max_batch_size is an int32)", "e.g. --max-batch-size 32")
    if not 0 <= max_queue_delay_us <= MAX_QUEUE_DELAY_US:
        raise EdgexferError(f"--max-queue-delay-us {max_queue_delay_us} is outside 0..{MAX_QUEUE_DELAY_US} "
                            "(Triton's max_queue_delay_microseconds is a uint64)", "e.g. 100")
    if instance_kind not in INSTANCE_KINDS:
        raise EdgexferError(f"unknown instance kind '{instance_kind}'", f"choose from: {', '.join(INSTANCE_KINDS)}")
    export = load_export(export_dir)  # manifest and every artifact's sha256
    model_name = name or default_model_name(export)
    if not _NAME.match(model_name):
        raise EdgexferError(f"model name '{model_name}' is not a portable folder name",
                            "pass --name with letters, digits, '_', '-' or '.'")
    evidence = BenchEvidence.load(bench) if bench is not None else BenchEvidence.find(export)
    choice = choose_artifact(export, precision, runtime, evidence=evidence, allow_failed=allow_failed,
                             check_available=False, prefer=PACKAGE_RUNTIMES)
    if choice.runtime.name == "trt" and instance_kind == "cpu":
        raise EdgexferError("a TensorRT engine runs on a GPU only", "leave out --instance-kind cpu or choose an ONNX runtime")
    if choice.runtime.name == "ov-cpu" and instance_kind == "gpu":
        raise EdgexferError("ov-cpu packages for Triton's OpenVINO backend on the CPU",
                            "leave out --instance-kind gpu or choose --runtime ort-cuda")
    inp, outp, batch = _tensors(export, choice, max_batch_size)

    repository = Path(out)
    if repository.exists() and not repository.is_dir():
        raise EdgexferError(f"--out {repository} is a file", "pass a folder for the model repository")
    final = repository / model_name
    refuse_overlap(final, {"export folder": export.path})
    lock = lock_folder(final, "edgexfer package")
    try:
        sweep_stale(final)  # what a killed package left (an old model folder is put back)
        if final.exists() and not overwrite:
            raise EdgexferError(f"{final} already exists", "pass --overwrite to replace it, or --name another model")
        staging = make_temp_dir(f".{model_name}.staging-", repository)
        try:
            try:
                model_file = _fill(staging, export, choice, inp, outp, batch, max_queue_delay_us, instance_kind,
                                   model_name,
                                   served_decision(export, evidence))
                fix_modes(staging)
            except OSError as exc:  # a full disk, a quota: one line, and the staging folder goes
                raise EdgexferError(f"cannot write the model folder {final}: {exc.strerror or exc}",
                                    "check free disk space and permissions") from None
            swap_in(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    finally:
        lock.release()
    platform = _platform(choice)
    return TritonModel(repository, model_name, final, platform, final / "1" / model_file.name, inp, outp, batch,
                       choice.artifact.name, choice.runtime.name, str(choice.artifact.sha256), choice.reason)


def _tensors(export: ExportDir, choice: Choice, max_batch_size: int) -> tuple[TensorSpec, TensorSpec, int]:
    """Input/output names, types and dims from the artifact itself (and the manifest for engines)."""
    artifact = choice.artifact
    h, w = export.image_size
    classes = len(export.classes)
    if artifact.format == "tensorrt":
        engine = artifact.engine or {}
        name = (engine.get("input") or {}).get("name") or export.manifest["input"].get("name", "image")
        out_name = (export.manifest.get("output") or {}).get("name", "probabilities")
        limit = engine.get("max_batch")
        batch = min(max_batch_size, int(limit)) if isinstance(limit, int) and limit > 0 else max_batch_size
        return TensorSpec(name, "TYPE_FP32", (h, w, 3)), TensorSpec(out_name, "TYPE_FP32", (classes,)), batch
    import onnx

    model = onnx.load(str(artifact.path), load_external_data=False)
    initializers = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in initializers]
    if len(inputs) != 1 or len(model.graph.output) < 1:
        raise EdgexferError(f"{artifact.path.name} has {len(inputs)} inputs and {len(model.graph.output)} outputs; "
                            "an exported model has one of each", "re-export the model")

    def spec(value: onnx.ValueInfoProto, expected: tuple[int, ...]) -> TensorSpec:
        tensor = value.type.tensor_type
        dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tensor.shape.dim]
        if not dims or dims[0] > 0:
            raise EdgexferError(f"{artifact.path.name} tensor '{value.name}' has no variable batch axis ({dims})",
                                "re-export the model (edgexfer exports a dynamic batch axis)")
        if tuple(dims[1:]) != expected:
            raise EdgexferError(f"{artifact.path.name} tensor '{value.name}' has dims {dims[1:]}, the manifest "
                                f"implies {list(expected)}", "re-export the model")
        data_type = _ORT_TYPES.get(tensor.elem_type)
        if data_type is None:
            raise EdgexferError(f"{artifact.path.name} tensor '{value.name}' has ONNX element type {tensor.elem_type}",
                                "re-export the model with float32 input and output")
        return TensorSpec(value.name, data_type, tuple(dims[1:]))

    return spec(inputs[0], (h, w, 3)), spec(model.graph.output[0], (classes,)), max_batch_size


def _platform(choice: Choice) -> str:
    if choice.artifact.format == "tensorrt":
        return "tensorrt_plan"
    return OPENVINO if choice.runtime.name == "ov-cpu" else "onnxruntime_onnx"


def openvino_parameters(precision: str) -> dict[str, str]:
    """Triton OpenVINO backend parameters for an ov-cpu artifact: the latency hint and one stream (what bench
    timed), and HINT_BF16 for the bf16 row. The backend has no f32 hint (HINT_BF16 accepts only YES)."""
    params = {"PERFORMANCE_HINT": "LATENCY", "NUM_STREAMS": "1"}
    if precision == "bf16":
        params["HINT_BF16"] = "YES"
    return params


def config_text(name: str, platform: str, inp: TensorSpec, outp: TensorSpec, max_batch_size: int,
                max_queue_delay_us: int, instance_kind: str, tensorrt_accelerator: bool, comment: str, *,
                parameters: dict[str, str] | None = None) -> str:
    """config.pbtxt in protobuf text format (Triton's ``inference.ModelConfig``); ``platform`` "openvino" is
    written as the OpenVINO backend, reading ``model.onnx``, with ``parameters``."""

    def dims(values: tuple[int, ...]) -> str:
        return "[ " + ", ".join(str(v) for v in values) + " ]"

    runs_on = ([f'backend: "{OPENVINO}"', 'default_model_filename: "model.onnx"'] if platform == OPENVINO
               else [f'platform: "{platform}"'])
    lines = [f"# {line}" for line in comment.splitlines()] + [
        f'name: "{name}"',
        *runs_on,
        f"max_batch_size: {max_batch_size}",
        "input [",
        "  {",
        f'    name: "{inp.name}"',
        f"    data_type: {inp.data_type}",
        "    format: FORMAT_NHWC",
        f"    dims: {dims(inp.dims)}",
        "  }",
        "]",
        "output [",
        "  {",
        f'    name: "{outp.name}"',
        f"    data_type: {outp.data_type}",
        f"    dims: {dims(outp.dims)}",
        f'    label_filename: "{LABELS}"',
        "  }",
        "]",
        "dynamic_batching {",
        f"  max_queue_delay_microseconds: {max_queue_delay_us}",
        "}",
    ]
    if instance_kind != "auto":
        lines += ["instance_group [", "  {", "    count: 1", f"    kind: KIND_{instance_kind.upper()}", "  }", "]"]
    for key, value in (parameters or {}).items():
        lines += ["parameters {", f'  key: "{key}"', f'  value: {{ string_value: "{value}" }}', "}"]
    if tensorrt_accelerator:
        lines += ["optimization {", "  execution_accelerators {", "    gpu_execution_accelerator [",
                  '      { name: "tensorrt" }', "    ]", "  }", "}"]
    return "\n".join(lines) + "\n"


def _fill(staging: Path, export: ExportDir, choice: Choice, inp: TensorSpec, outp: TensorSpec, batch: int,
          max_queue_delay_us: int, instance_kind: str, name: str, decision: DecisionRule | None = None) -> Path:
    artifact = choice.artifact
    engine = artifact.format == "tensorrt"
    version = staging / "1"
    version.mkdir()
    target = version / ("model.plan" if engine else "model.onnx")
    shutil.copyfile(artifact.path, target)
    copied = sha256_file(target)
    if copied != artifact.sha256:
        raise EdgexferError(f"the copy of {artifact.path} does not match the manifest's sha256 (it changed while "
                            "being copied)", "run the command again; re-export the model if it persists")
    (staging / LABELS).write_text("".join(f"{c}\n" for c in export.classes), encoding="utf-8")
    openvino = choice.runtime.name == "ov-cpu"
    kind = "gpu" if engine and instance_kind == "auto" else ("cpu" if openvino and instance_kind == "auto"
                                                             else instance_kind)
    comment = (f"Written by edgexfer package from export '{export.name}': artifact {artifact.name} "
               f"({artifact.precision}, {artifact.path.name})"
               f"\nsha256 {artifact.sha256}; bench verdict for sha256 {choice.verdict.sha256 or 'none (not benched)'}"
               f"\nchosen: {choice.reason}\n"
               f"Input: raw RGB pixels 0-255, NHWC, {inp.dims[0]}x{inp.dims[1]}; output: class probabilities."
               + (f"\nDecision (clinical operating point from {decision.source}): answer {decision.describe()}; "
                  "Triton returns the probabilities, the client applies this rule" if decision is not None else ""))
    if openvino and artifact.precision != "bf16":
        comment += ("\nOpenVINO backend: it takes no f32 precision hint, so on a CPU with native BF16 it may run "
                    "float layers in bf16 (bench ran this file with f32; the bf16 row tells how bf16 fares).")
    text = config_text(name, _platform(choice), inp, outp, batch, max_queue_delay_us, kind,
                       choice.runtime.name == "ort-trt", comment,
                       parameters=openvino_parameters(artifact.precision) if openvino else None)
    (staging / CONFIG).write_text(text, encoding="utf-8")
    return target


__all__ = ["CONFIG", "LABELS", "OPENVINO", "TensorSpec", "TritonModel", "config_text", "write_triton_repository"]

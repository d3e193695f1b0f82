"""Options of one export, saved in the export's manifest so it can be reproduced."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import edgexfer.export.int8.nncf_quantize as nncf_quantize
from edgexfer._folders import refuse_overlap
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.gate import parse_fraction

TARGETS = ("cpu", "tensorrt")
CALIBRATION_METHODS = ("auto", "entropy", "minmax", "percentile")
#: what "auto" tries, in order: entropy, then (only when its INT8 agrees with FP32 below the bar) the others
CALIBRATION_METHODS_TRIED = ("entropy", "percentile", "minmax")
#: who quantizes INT8: ``auto`` (ours and NNCF's, judged alike, the more accurate kept), ``edgexfer`` or ``nncf``
QUANTIZERS = nncf_quantize.QUANTIZERS

#: FP32 ONNX vs Keras on validation images: the largest probability difference we accept
DEFAULT_PARITY_TOLERANCE = 1e-4
#: INT8 vs FP32 top-1 agreement on validation images below which nodes are kept in float
#: (0.98: the done-when bar; published per-channel PTQ of ResNet-class CNNs stays well above it)
DEFAULT_INT8_MIN_AGREEMENT = 0.98


@dataclass
class ExportConfig:
    """Everything `export_run` needs. Paths may be str or Path.

    ``target`` decides the INT8 profile: ``cpu`` (uint8 activations, what ONNX Runtime on x86 runs
    fastest) or ``tensorrt`` (int8 symmetric, zero point 0). ``None`` means ``tensorrt`` when
    ``engine`` is set, else ``cpu``.

    ``calibration_method``: ``auto`` calibrates with entropy and, when that INT8 model agrees with FP32 on
    fewer validation images than ``int8_min_agreement``, with percentile and minmax too, and keeps the method
    that agrees best (entropy on ties); the fallback rounds then go on with it. A named method is used alone.

    ``int8_kernel_choice`` (target ``cpu``, opt-in): time each INT8 convolution under ONNX Runtime's two CPU int8
    kernels on this machine and keep the faster (`edgexfer.export.int8.kernels.choose_cpu_kernels`; same values).
    Off by default: it rests on timing, so with it two exports of the same run may differ in bytes.

    ``quantizer``: ``edgexfer`` (ours: ONNX Runtime's ``quantize_static`` on our calibration), ``nncf`` (NNCF's
    ``nncf.quantize``, the ``openvino`` extra; target ``cpu`` only: `edgexfer.export.int8.nncf_quantize`) or ``auto``
    (the default: both where NNCF is installed and the target is ``cpu``, each through the same fallback rounds and
    judged on the same images; the one that agrees with FP32 on more images is written, ours on ties).

    ``agreement_images``: how many images judge INT8's agreement with FP32 (the bar, the fallback rounds): the
    validation images first, then train images not in the calibration set (`edgexfer.export.int8.agreement`).

    ``calibration`` is a calibration set (``.npz`` or its ``.json``) to reuse, or a folder where the set
    of the run's split (``cal-<split fingerprint>-<H>x<W>-<images>-seed<seed>``, never the run's folder
    name) is looked up and built when absent (default ``calibration/``).

    ``positive_class`` / ``target_sensitivity``: the clinical operating point, chosen on every validation image
    with FP32's probabilities (``edgexfer.evaluate.operating_point.choose_threshold``: the most specific
    threshold reaching the target sensitivity, else Youden's J) and written into the manifest, where bench
    judges it and Predictor, predict and package apply it. ``target_sensitivity`` alone: a binary task's
    second class. Neither: no operating point is recorded.
    """

    run_dir: Path
    out: Path | None = None
    fp16: bool = False
    int8: bool = False
    engine: bool = False
    target: str | None = None
    calibration: Path | None = None
    calibration_size: int = 500
    calibration_seed: int = 0
    calibration_method: str = "auto"
    quantizer: str = "auto"
    max_batch: int = 32
    opt_batch: int | None = None
    opset: int = 17
    data_root: Path | None = None
    parity_samples: int = 256
    parity_tolerance: float = DEFAULT_PARITY_TOLERANCE
    int8_min_agreement: float = DEFAULT_INT8_MIN_AGREEMENT
    int8_max_rounds: int = 3
    int8_nodes_per_round: int = 2
    int8_kernel_choice: bool = False
    agreement_images: int = 500
    sensitivity_samples: int = 16
    batch_size: int = 16
    timing_cache: Path | None = None
    progress: bool = True
    positive_class: str | None = None
    target_sensitivity: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)
        for name in ("out", "calibration", "data_root", "timing_cache"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, Path):
                setattr(self, name, Path(os.fspath(value)))

    @property
    def resolved_target(self) -> str:
        return self.target or ("tensorrt" if self.engine else "cpu")

    @property
    def run_name(self) -> str:
        return self.run_dir.resolve().name

    @property
    def export_dir(self) -> Path:
        return self.out if self.out is not None else Path("exported") / self.run_name

    @property
    def wants_operating_point(self) -> bool:
        return self.positive_class is not None or self.target_sensitivity is not None

    @property
    def calibration_location(self) -> Path:
        return self.calibration if self.calibration is not None else Path("calibration")

    def validate(self) -> None:
        """Refuse bad option values before any work is done."""
        if self.target is not None and self.target not in TARGETS:
            raise EdgexferError(f"unknown INT8 target '{self.target}'", f"use one of: {', '.join(TARGETS)}")
        if self.calibration_method not in CALIBRATION_METHODS:
            raise EdgexferError(
                f"unknown calibration method '{self.calibration_method}'", f"use one of: {', '.join(CALIBRATION_METHODS)}"
            )
        if self.quantizer not in QUANTIZERS:
            raise EdgexferError(f"unknown INT8 quantizer '{self.quantizer}'", f"use one of: {', '.join(QUANTIZERS)}")
        if self.int8 and self.quantizer == "nncf":
            if self.resolved_target == "tensorrt":
                raise EdgexferError(f"--quantizer nncf cannot write a tensorrt-target INT8 file: "
                                    f"{nncf_quantize.TENSORRT_BLOCKER}",
                                    "use --quantizer edgexfer (or auto) with --target tensorrt or --engine")
            nncf_quantize.require()
        if self.engine and self.int8 and self.resolved_target != "tensorrt":
            raise EdgexferError(
                "an INT8 TensorRT engine needs the tensorrt INT8 profile, not --target cpu",
                "drop --target or pass --target tensorrt with --engine",
            )
        for name in ("max_batch", "calibration_size", "parity_samples", "batch_size", "int8_max_rounds", "opset",
                     "agreement_images"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < (0 if name == "int8_max_rounds" else 1):
                raise EdgexferError(f"--{name.replace('_', '-')} {value} is not a positive whole number", "pass a value of 1 or more")
        if self.opt_batch is not None and not 1 <= self.opt_batch <= self.max_batch:
            raise EdgexferError(f"opt batch {self.opt_batch} is outside 1..{self.max_batch}", "choose 1 <= opt <= --max-batch")
        if self.opset < 13:
            raise EdgexferError(f"opset {self.opset} is too old for per-channel Q/DQ", "use --opset 13 or newer (default 17)")
        if self.target_sensitivity is not None:
            self.target_sensitivity = parse_fraction("--target-sensitivity", self.target_sensitivity)
        if not 0.0 <= self.int8_min_agreement <= 1.0:
            raise EdgexferError(f"INT8 agreement threshold {self.int8_min_agreement} is not in [0, 1]", "pass a fraction such as 0.98")
        # the export folder is replaced whole: it must neither be nor hold nor lie inside the run or the data
        refuse_overlap(self.export_dir, {"run folder": self.run_dir, "data": self.data_root})

    def to_record(self) -> dict[str, Any]:
        record = asdict(self)
        record["target"] = self.resolved_target
        return {k: (os.fspath(v) if isinstance(v, Path) else v) for k, v in record.items()}

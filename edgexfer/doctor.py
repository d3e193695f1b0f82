"""`edgexfer doctor`: what this machine has, what `bench` would run here, where caches live.

Meant to be pasted into a bug report. Nothing here imports TensorFlow (versions are read from the
installed distributions' metadata) so it answers in a second, on the light install too; the runtime
answers come from the same table the bench chooses from (``edgexfer.runtime.RUNTIMES``), so doctor
and bench cannot disagree.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import asdict, dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from edgexfer import __version__
from edgexfer._lazy import is_available
from edgexfer.export.tensorrt_rules import tensorrt_target
from edgexfer.logs import set_by_edgexfer
from edgexfer.runtime import (
    RUNTIMES,
    cuda,  # gpu_status looked up when called (tests replace it)
)
from edgexfer.runtime.ort_runtime import ort_providers, tensorrt_cache_dir
from edgexfer.runtime.ov_runtime import openvino_devices
from edgexfer.versions import bf16_instructions, int8_instructions, machine_info

# (label, distributions that provide it (the first one installed wins), the module it is imported as)
PACKAGES: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("numpy", ("numpy",), "numpy"),
    ("TensorFlow", ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tf-nightly"), "tensorflow"),
    ("Keras", ("keras",), "keras"),
    ("tf2onnx", ("tf2onnx",), "tf2onnx"),
    ("onnxconverter-common", ("onnxconverter-common",), "onnxconverter_common"),
    ("ONNX", ("onnx",), "onnx"),
    ("ONNX Runtime", ("onnxruntime-gpu", "onnxruntime", "onnxruntime-directml", "onnxruntime-openvino"), "onnxruntime"),
    # JetPack installs TensorRT's Python module from a Debian package, without pip metadata
    ("TensorRT", ("tensorrt", "tensorrt-cu12", "tensorrt-cu13"), "tensorrt"),
    ("cuda-python", ("cuda-python", "cuda-bindings"), "cuda"),
    ("KerasTuner", ("keras-tuner",), "keras_tuner"),
    ("pydicom", ("pydicom",), "pydicom"),
    ("OpenVINO", ("openvino",), "openvino"),
)


@dataclass(frozen=True)
class Package:
    name: str
    version: str | None  # None: not installed
    distribution: str | None = None
    importable: bool = False  # found on the import path (not imported: that would load TensorFlow)

    def describe(self) -> str:
        if self.version is None:
            return "not installed"
        return self.version if self.importable else f"{self.version} (installed, but Python cannot find the module)"


@dataclass(frozen=True)
class RuntimeCheck:
    name: str
    description: str
    usable: bool
    reason: str


@dataclass(frozen=True)
class Location:
    what: str
    path: str
    exists: bool
    files: int
    size_bytes: int
    #: what ``files`` counts: "file(s)", or "calibration set(s)" (record and images; a README is none)
    unit: str = "file(s)"


@dataclass
class DoctorReport:
    edgexfer: str
    python: str
    platform: str
    cpu: str
    cores: int | None
    packages: list[Package]
    onnxruntime_providers: list[str]
    gpu: dict[str, Any]
    runtimes: list[RuntimeCheck]
    locations: list[Location]
    environment: dict[str, str] = field(default_factory=dict)
    #: which TensorRT target the installed TensorRT is (JetPack 6.x, 7.x, x86 11.x), or what to install
    tensorrt_target: str = ""
    openvino_devices: list[str] = field(default_factory=list)  # Core().available_devices; empty without OpenVINO
    int8_instructions: list[str] = field(default_factory=list)  # the CPU's int8 instruction sets (/proc/cpuinfo)
    bf16_instructions: list[str] = field(default_factory=list)  # its native BF16 ones (none: bf16 is not benched)

    @property
    def install(self) -> str:
        """``full`` when finetune/export can run here, ``light`` when only bench can."""
        have = {p.name for p in self.packages if p.version and p.importable}
        return "full" if {"TensorFlow", "Keras", "tf2onnx"} <= have else "light"

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["install"] = self.install
        return out


def _package(label: str, distributions: tuple[str, ...], module: str) -> Package:
    importable = is_available(module)
    for dist in distributions:
        try:
            return Package(label, metadata.version(dist), dist, importable)
        except metadata.PackageNotFoundError:
            continue
    if importable and module == "tensorrt":  # no pip metadata (JetPack): ask the module itself
        try:
            imported = __import__(module)
            return Package(label, str(getattr(imported, "__version__", "unknown")), None, True)
        except Exception:  # a broken system install is still worth reporting as such
            return Package(label, "installed, fails to import", None, False)
    return Package(label, None)


def keras_home() -> Path:
    """Where Keras keeps downloaded weights (``$KERAS_HOME``, else ``~/.keras``; Keras falls back to /tmp
    when the home folder is not writable)."""
    if os.environ.get("KERAS_HOME"):
        return Path(os.environ["KERAS_HOME"]).expanduser()
    base = Path("~").expanduser()
    if not os.access(base, os.W_OK):
        base = Path("/tmp")
    return base / ".keras"


def _location(what: str, path: Path) -> Location:
    files = size = 0
    if path.is_dir():
        for item in path.rglob("*"):
            if item.is_file():
                files += 1
                size += item.stat().st_size
    return Location(what, str(path), path.is_dir(), files, size)


def _calibration_location(what: str, path: Path) -> Location:
    """A folder of calibration sets: the sets (``<id>.json`` beside ``<id>.npz``, docs/contracts.md section 3)
    are counted, not the files (the repository's calibration/README.md is no set)."""
    location = _location(what, path)
    sets = sum(1 for record in path.glob("*.json") if record.with_suffix(".npz").is_file()) if path.is_dir() else 0
    return replace(location, files=sets, unit="calibration set(s)")


#: where `make demo` (and `edgexfer demo` with its default --out) writes its calibration set
DEMO_CALIBRATION = Path("runs") / "demo" / "calibration"


ENVIRONMENT = ("CUDA_VISIBLE_DEVICES", "KERAS_HOME", "TF_CPP_MIN_LOG_LEVEL", "EDGEXFER_VERBOSE", "OMP_NUM_THREADS",
               "LD_LIBRARY_PATH")


def diagnose() -> DoctorReport:
    """Everything doctor reports; no TensorFlow import, no GPU session opened."""

    info = machine_info()
    packages = [_package(*p) for p in PACKAGES]
    runtimes = []
    for kind in RUNTIMES.values():
        ok, reason = kind.available()
        runtimes.append(RuntimeCheck(kind.name, kind.description, ok, reason))
    return DoctorReport(
        edgexfer=__version__,
        python=f"{platform.python_version()} ({sys.executable})",
        platform=str(info.get("platform")),
        cpu=str(info.get("processor")),
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        packages=packages,
        onnxruntime_providers=ort_providers(),
        gpu=cuda.gpu_status().as_dict(),
        runtimes=runtimes,
        locations=[
            _location("Keras weights cache (--weights imagenet downloads here)", keras_home() / "models"),
            _calibration_location("calibration sets (export --calibration default, relative to this folder)",
                                  Path("calibration").resolve()),
            _calibration_location("calibration sets of the demo (make demo, relative to this folder)",
                                  DEMO_CALIBRATION.resolve()),
            _location("ONNX Runtime TensorRT engines (ort-trt; per TensorRT version and GPU)", tensorrt_cache_dir()),
        ],
        environment={k: os.environ[k] for k in ENVIRONMENT if k in os.environ and not set_by_edgexfer(k)},
        tensorrt_target=tensorrt_target(next((p.version for p in packages if p.name == "TensorRT"), None)),
        openvino_devices=openvino_devices(),
        int8_instructions=int8_instructions(),
        bf16_instructions=bf16_instructions(),
    )


def _size(n: int) -> str:
    return f"{n / 1e6:.1f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def doctor_lines(report: DoctorReport) -> list[str]:
    """The human-readable report, one fact per line."""
    width = max(len(p.name) for p in report.packages) + 2
    gpu = report.gpu
    lines = [
        f"edgexfer {report.edgexfer} ({report.install} install)",
        f"python      {report.python}",
        f"platform    {report.platform}",
        f"cpu         {report.cpu}, {report.cores} usable cores",
        f"  int8      {', '.join(report.int8_instructions) or 'no int8 instruction sets found'}",
        f"  bf16      {', '.join(report.bf16_instructions) or 'none native (the bf16 row is skipped here)'}",
        "",
        "packages",
    ]
    for p in report.packages:
        lines.append(f"  {p.name:<{width}}{p.describe()}")
        if p.name == "TensorRT" and report.tensorrt_target:
            lines.append(f"  {'':<{width}}target: {report.tensorrt_target}")
    lines.append(f"  {'providers':<{width}}{', '.join(report.onnxruntime_providers) or 'none (ONNX Runtime missing)'}"
                 "  (built into this ONNX Runtime; usable ones below)")
    openvino = next((p for p in report.packages if p.name == "OpenVINO"), None)
    if openvino is not None and openvino.version:
        lines.append(f"  {'devices':<{width}}{', '.join(report.openvino_devices) or 'none'}  (listed by OpenVINO)")
    lines += ["", "GPU"]
    if gpu.get("usable"):
        lines.append(f"  {gpu.get('name')} (compute capability {gpu.get('compute_capability')}, {gpu.get('count')} "
                     f"device(s)), CUDA driver {gpu.get('driver_version')}")
    else:
        lines.append(f"  none usable: {gpu.get('reason')}")
    lines += ["", "runtimes edgexfer bench would use here"]
    name_width = max(len(r.name) for r in report.runtimes) + 2
    for r in report.runtimes:
        lines.append(f"  {'yes' if r.usable else 'no ':<4}{r.name:<{name_width}}"
                     + (r.description if r.usable else f"skipped: {r.reason}"))
    lines += ["", "caches"]
    for loc in report.locations:
        state = f"{loc.files} {loc.unit}, {_size(loc.size_bytes)}" if loc.exists else "not created yet"
        lines.append(f"  {loc.what}:")
        lines.append(f"    {loc.path} ({state})")
    if report.install == "light":
        lines += ["", "light install: bench and runtimes only; for finetune and export: pip install 'edgexfer[train]'"]
    if report.environment:
        lines += ["", "environment"] + [f"  {k}={v}" for k, v in report.environment.items()]
    return lines

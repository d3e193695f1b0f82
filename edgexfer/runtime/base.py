"""The one Runtime contract every backend implements (docs/contracts.md section 5).

A runtime is a context manager over one artifact. ``predict`` takes raw RGB pixels (uint8 or
float32 0–255, NHWC at the model's size) and returns class probabilities; it times itself, and a
GPU backend synchronizes its device inside ``_run`` so the clock covers the whole call.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from edgexfer.errors import EdgexferError

_R = TypeVar("_R", bound="Runtime")


@dataclass(frozen=True)
class InputSpec:
    """The model input: name, shape (None for the batch axis), dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str = "float32"

    @property
    def image_size(self) -> tuple[int, int]:
        """(H, W) of an NHWC image input."""
        return int(self.shape[1]), int(self.shape[2])  # type: ignore[arg-type]


@dataclass(frozen=True)
class Artifact:
    """One model file of an export directory, as the manifest records it (contract section 4).

    ``format`` is "onnx", "tensorrt" or "keras" (the source run's model, for the Keras runtime).
    """

    name: str
    path: Path
    format: str
    precision: str
    target: str = "any"
    sha256: str | None = None
    size_bytes: int | None = None
    engine: dict[str, Any] | None = None
    record: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_manifest(cls, entry: dict[str, Any], export_dir: Path) -> Artifact:
        return cls(
            name=str(entry["name"]),
            path=Path(export_dir) / entry["file"],
            format=str(entry.get("format", "onnx")),
            precision=str(entry.get("precision", "fp32")),
            target=str(entry.get("target") or "any"),
            sha256=entry.get("sha256"),
            size_bytes=entry.get("size_bytes"),
            engine=entry.get("engine"),
            record=dict(entry),
        )


@dataclass(frozen=True)
class Execution:
    """What a backend says it executed, where it can say (OpenVINO's compiled model); recorded in bench rows.

    ``precision_hint`` is the inference precision asked for and granted (f32, bf16); ``layer_precisions``
    counts the compiled model's layers by type and the precision each ran in (constants left out)."""

    library: str
    device: str
    precision_hint: str
    performance_hint: str
    threads: int | None
    layer_precisions: dict[str, dict[str, int]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Derived:
    """Artifacts a runtime makes at load time from an export's files (OpenVINO's BF16: the FP32 file with the
    bf16 precision hint), and the ones it cannot make here with the reason (artifact name, reason)."""

    artifacts: tuple[Artifact, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


class Runtime(ABC):
    """One loaded artifact on one backend. Use as ``with kind.open(artifact, threads) as rt:``."""

    name: str = "runtime"
    provider: str = ""
    input_spec: InputSpec
    last_latency_ms: float = float("nan")
    #: the largest batch the artifact accepts (TensorRT engines have a profile maximum)
    max_batch: int | None = None
    #: what the backend executed, where it reports it (None: it does not)
    execution: Execution | None = None

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:  # noqa: B027 - optional hook, most backends free on garbage collection
        """Release sessions and device memory."""

    def predict(self, batch: np.ndarray) -> np.ndarray:
        """Class probabilities (N, classes) for a batch of raw pixels; records ``last_latency_ms``."""
        x = self._prepare(batch)
        start = time.perf_counter()
        out = self._run(x)  # a GPU backend returns only after its stream is synchronized
        self.last_latency_ms = (time.perf_counter() - start) * 1000.0
        return np.asarray(out, dtype=np.float32)

    def _prepare(self, batch: np.ndarray) -> np.ndarray:
        """Check the shape and cast to the input dtype before the clock starts (host memory)."""
        arr = np.asarray(batch)
        expected = self.input_spec.shape[1:]
        if arr.ndim != 4 or tuple(arr.shape[1:]) != tuple(expected):
            raise EdgexferError(
                f"{self.name} input of shape {tuple(arr.shape)} does not fit the model input "
                f"(N, {', '.join(str(d) for d in expected)})",
                "feed raw RGB pixels at the model's image size",
            )
        if self.max_batch is not None and arr.shape[0] > self.max_batch:
            raise EdgexferError(
                f"batch of {arr.shape[0]} exceeds the artifact's maximum batch {self.max_batch}",
                "use a smaller --batch-sizes value or rebuild the engine with a larger max batch",
            )
        return np.ascontiguousarray(arr, dtype=np.dtype(self.input_spec.dtype))

    @abstractmethod
    def _run(self, batch: np.ndarray) -> np.ndarray:
        """Run the model on a prepared batch; return probabilities after the device has finished."""


@dataclass(frozen=True)
class RuntimeKind:
    """A row of the RUNTIMES table: how to tell if a backend is usable here and open an artifact."""

    name: str
    description: str
    available_fn: Callable[[], tuple[bool, str]]  # usable here, else why not
    supports_fn: Callable[[Artifact], bool]
    open_fn: Callable[..., Runtime]  # (artifact, threads, batch_sizes=None)
    #: artifacts this runtime derives from the export's own (None: it runs the export's files only)
    derive_fn: Callable[[Sequence[Artifact]], Derived] | None = None

    def derive(self, artifacts: Sequence[Artifact]) -> Derived:
        """The artifacts this runtime makes from ``artifacts`` (run on this runtime only), and those it cannot."""
        return self.derive_fn(artifacts) if self.derive_fn is not None else Derived()

    def available(self) -> tuple[bool, str]:
        return self.available_fn()

    def supports(self, artifact: Artifact) -> bool:
        return bool(self.supports_fn(artifact))

    def open(self, artifact: Artifact, threads: int | None = None,
             batch_sizes: tuple[int, ...] | None = None) -> Runtime:
        """Open ``artifact``; ``batch_sizes``: the batches it will run (a TensorRT provider session builds an
        optimization profile for each), None for the defaults."""
        if batch_sizes is None:
            return self.open_fn(artifact, threads)
        return self.open_fn(artifact, threads, batch_sizes)

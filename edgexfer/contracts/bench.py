"""A bench directory's results.json (docs/contracts.md section 6) and its typed rows.

``BenchRow`` is one artifact on one runtime: ``precision`` is the artifact's numeric format (fp32, fp16,
int8); the macro-averaged precision metric is ``precision_macro`` (as in metrics.json). ``load_results`` is
the one reader (report, predict, explain and studies use it), ``write_results`` the one writer; both run
``validate_results``.

A verdict names the bytes it judged: every row of ``edgexfer.bench/2`` carries the sha256 of the file it ran
(ONNX file or TensorRT engine), the device and the versions it ran on. Results of ``edgexfer.bench/1`` are
still read (reports, studies) but their rows carry no sha256, so they judge no file: whoever serves an
artifact (``edgexfer.predict``) uses a verdict only when the sha256 of the bytes it loads equals the row's.

Where a bench lives is derived from the export, never from the current directory: ``default_bench_dir``
(``benchmarks/<export name>`` beside the export's parent folder, which holds the exports: ``exported/``).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgexfer.errors import EdgexferError
from edgexfer.io import read_json, write_json

SCHEMA = "edgexfer.bench/2"
#: the version before rows carried sha256: read, never a verdict for any file
SCHEMA_UNBOUND = "edgexfer.bench/1"
READABLE_SCHEMAS = (SCHEMA, SCHEMA_UNBOUND)
RESULTS_FILE = "results.json"
TOP_KEYS = ("schema", "reference", "thresholds", "machine", "data", "skipped", "results")
ROW_KEYS = ("artifact", "precision", "runtime", "provider", "accuracy", "precision_macro", "recall_macro", "f1",
            "auc", "per_class", "confusion_matrix", "agreement", "max_abs_diff", "latency_ms", "throughput_ips",
            "end_to_end_ms", "size_bytes", "peak_rss_mb", "threads", "gate")
#: what a row of SCHEMA adds: the bytes it judged and where it ran
BOUND_ROW_KEYS = ("sha256", "device", "versions")
LATENCY_KEYS = ("p50", "p90", "p99", "mean")
THRESHOLD_KEYS = ("max_accuracy_drop", "max_f1_drop", "max_recall_drop")
#: what ``recommended`` names, in words (the bench verdict's "fastest that passes" follows it too)
RECOMMENDATION_RULE = ("the fastest row whose gate passed (the FP32 reference included; not the Keras model, which is "
                       "the training-side reference), by p50 at the smallest batch size timed; ties: fp32, fp16, bf16, "
                       "int8, then the bench's order")
#: runtimes whose rows are the training-side reference: benched and shown, never recommended or deployed
REFERENCE_RUNTIMES = frozenset({"keras"})
_PRECISION_ORDER = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}


@dataclass
class BenchRow:
    """One row of ``results``: what was run, its metrics, its latency, and (set by the gate) how it compares
    with FP32. Latency dicts are keyed by batch size as a string."""

    artifact: str
    precision: str  # the artifact's numeric format: fp32 | fp16 | int8 | bf16 (the FP32 file run in bf16)
    target: str
    format: str
    file: str
    runtime: str
    provider: str
    accuracy: float
    precision_macro: float
    recall_macro: float
    f1: float
    auc: float | None
    loss: float | None
    per_class: dict[str, dict[str, float | int]]
    confusion_matrix: list[list[int]]
    n: int
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    throughput_ips: dict[str, float] = field(default_factory=dict)
    latency_samples_ms: dict[str, list[float]] = field(default_factory=dict)
    end_to_end_ms: float | None = None
    size_bytes: int | None = None
    peak_rss_mb: float | None = None  # the process's peak so far (every row before this one included)
    #: the peak resident memory this row's session added over the process's memory just before it opened (MB)
    session_peak_mb: float | None = None
    threads: int | None = None
    agreement: float | None = None
    max_abs_diff: float | None = None
    reference: dict[str, str] | None = None
    ci95: dict[str, Any] | None = None
    vs_reference: dict[str, Any] | None = None
    gate: dict[str, Any] = field(default_factory=dict)
    sha256: str | None = None  # of the file this row ran (None: a row of edgexfer.bench/1, which judges no file)
    device: str | None = None  # what executed it: "CPU: <processor> (<int8 instruction sets>)" or "GPU: <name> …"
    versions: dict[str, str | None] = field(default_factory=dict)  # the runtime's libraries and edgexfer
    #: what the backend executed where it reports it (OpenVINO: precision hint, threads, layer precisions)
    execution: dict[str, Any] | None = None

    @property
    def key(self) -> tuple[str, str]:
        return (self.artifact, self.runtime)

    def metrics(self) -> dict[str, Any]:
        """What the gate compares (the ``classification_metrics`` keys it reads)."""
        return {"accuracy": self.accuracy, "f1": self.f1, "per_class": self.per_class, "n": self.n}

    def latency(self, batch: int = 1) -> dict[str, float]:
        return (self.latency_ms or {}).get(str(batch)) or {}

    @property
    def baseline_accuracy(self) -> float | None:
        """Majority-class baseline of the images this row was measured on (confusion matrix rows are true
        classes); None without a matrix."""
        return majority_baseline(self.confusion_matrix)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BenchRow:
        """From a results.json row; a key an older file lacks reads as None (or empty)."""
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            if f.name in d:
                values[f.name] = d[f.name]
            elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                values[f.name] = {"per_class": {}, "confusion_matrix": [], "n": 0}.get(f.name)
        return cls(**values)


@dataclass(frozen=True)
class Recommendation:
    """``results.json``'s ``recommended``: the artifact and runtime a site should deploy, by
    ``RECOMMENDATION_RULE`` (``recommend``), and the bytes it names."""

    artifact: str
    precision: str
    runtime: str
    sha256: str | None
    batch: int  # the batch size whose p50 decided
    p50_ms: float
    #: the FP32 reference's p50 at ``batch`` over this one's (1.0 when the reference is the recommendation)
    speedup_vs_reference: float | None
    #: the next fastest passing row's p50 over this one's (None: no other row passed): how near the choice was
    margin: float | None
    rule: str = RECOMMENDATION_RULE

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Recommendation:
        """From results.json's ``recommended`` (as ``validate_results`` checked it)."""
        margin, speedup = d.get("margin"), d.get("speedup_vs_reference")
        return cls(artifact=str(d["artifact"]), precision=str(d.get("precision")), runtime=str(d["runtime"]),
                   sha256=d.get("sha256") if is_sha256(d.get("sha256")) else None, batch=int(d.get("batch") or 1),
                   p50_ms=float(d["p50_ms"]), speedup_vs_reference=float(speedup) if speedup is not None else None,
                   margin=float(margin) if margin is not None else None,
                   rule=str(d.get("rule") or RECOMMENDATION_RULE))

    def describe(self) -> str:
        """``<artifact> on <runtime>, <p50> ms`` (at batch ``batch`` when it is not 1)."""
        at = "" if self.batch == 1 else f" at batch {self.batch}"
        return f"{self.artifact} on {self.runtime}, {self.p50_ms:.3g} ms{at}"


def recommend(rows: Sequence[BenchRow]) -> Recommendation | None:
    """The fastest row that passed its gate (``RECOMMENDATION_RULE``); None when none passed or none was timed."""
    sizes = sorted({int(b) for r in rows for b in (r.latency_ms or {}) if str(b).isdigit()})
    if not sizes:
        return None
    batch = str(sizes[0])

    def p50(row: BenchRow) -> float | None:
        value = ((row.latency_ms or {}).get(batch) or {}).get("p50")
        return float(value) if isinstance(value, (int, float)) and value > 0 else None

    passed = [(p50(r), _PRECISION_ORDER.get(r.precision, 9), i, r) for i, r in enumerate(rows)
              if (r.gate or {}).get("passed") is True and p50(r) is not None and r.runtime not in REFERENCE_RUNTIMES]
    if not passed:
        return None
    ranked = sorted(passed, key=lambda item: item[:3])
    fastest, row = ranked[0][0], ranked[0][3]
    assert fastest is not None
    reference = next((p50(r) for r in rows if (r.gate or {}).get("reference")), None)
    return Recommendation(
        artifact=row.artifact, precision=row.precision, runtime=row.runtime, sha256=row.sha256, batch=int(batch),
        p50_ms=fastest, speedup_vs_reference=round(reference / fastest, 3) if reference else None,
        margin=round(float(ranked[1][0]) / fastest, 3) if len(ranked) > 1 and ranked[1][0] else None)


def majority_baseline(confusion_matrix: Any) -> float | None:
    try:
        support = [sum(int(v) for v in true_row) for true_row in confusion_matrix]
    except (TypeError, ValueError):
        return None
    total = sum(support)
    return max(support) / total if total else None


def validate_results(results: Any) -> None:
    """Raise ValueError naming the first missing or mistyped key."""
    if not isinstance(results, dict):
        raise ValueError(f"results must be an object, not {type(results).__name__}")
    for key in TOP_KEYS:
        if key not in results:
            raise ValueError(f"results has no '{key}'")
    if results["schema"] not in READABLE_SCHEMAS:
        raise ValueError(f"results schema is {results['schema']!r}, expected {SCHEMA!r}")
    bound = results["schema"] == SCHEMA
    for key in THRESHOLD_KEYS:
        if not isinstance(results["thresholds"].get(key), (int, float)):
            raise ValueError(f"thresholds.{key} is missing or not a number")
    if not isinstance(results["results"], list) or not results["results"]:
        raise ValueError("results.results must be a non-empty list")
    for i, row in enumerate(results["results"]):
        where = f"results[{i}] ({row.get('artifact')} on {row.get('runtime')})"
        for key in ROW_KEYS + (BOUND_ROW_KEYS if bound else ()):
            if key not in row:
                raise ValueError(f"{where} has no '{key}'")
        if bound and not is_sha256(row["sha256"]):
            raise ValueError(f"{where}.sha256 = {row['sha256']!r} is not a sha256 (64 hex digits)")
        for key in ("accuracy", "f1", "agreement"):
            value = row[key]
            if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
                raise ValueError(f"{where}.{key} = {value!r} is not a fraction in [0, 1]")
        for batch, stats in row["latency_ms"].items():
            if not str(batch).isdigit():
                raise ValueError(f"{where}.latency_ms key {batch!r} is not a batch size")
            for key in LATENCY_KEYS:
                if not isinstance(stats.get(key), (int, float)):
                    raise ValueError(f"{where}.latency_ms[{batch}].{key} is missing")
            if batch not in row["throughput_ips"]:
                raise ValueError(f"{where}.throughput_ips has no batch {batch}")
        gate = row["gate"]
        if not isinstance(gate, dict) or not isinstance(gate.get("passed"), bool) or not isinstance(gate.get("reasons"), list):
            raise ValueError(f"{where}.gate must be {{'passed': bool, 'reasons': [...]}}")
    chosen = results.get("recommended")  # absent in files written before it
    if chosen is not None:
        if not isinstance(chosen, dict):
            raise ValueError("recommended must be null or an object")
        named = [r for r in results["results"]
                 if (r.get("artifact"), r.get("runtime")) == (chosen.get("artifact"), chosen.get("runtime"))]
        if not named or named[0]["gate"]["passed"] is not True:
            raise ValueError(f"recommended ({chosen.get('artifact')} on {chosen.get('runtime')}) is not a row "
                             "whose gate passed")
        if chosen.get("runtime") in REFERENCE_RUNTIMES:
            raise ValueError(f"recommended names {chosen.get('runtime')}, the training-side reference, not a runtime "
                             "to deploy on")
        if not isinstance(chosen.get("p50_ms"), (int, float)):
            raise ValueError("recommended.p50_ms is missing or not a number")


def is_sha256(value: Any) -> bool:
    return isinstance(value, str) and len(value) == 64 and all(c in "0123456789abcdef" for c in value)


def default_bench_dir(export_path: str | os.PathLike[str], export_name: str) -> Path:
    """Where ``edgexfer bench`` writes when no --out is given, and where predict/package look first:
    ``benchmarks/<export name>`` beside the export's parent folder (``exported/<name>`` ->
    ``benchmarks/<name>``), from the export's own path, whatever the current directory. Relative to the
    current directory when inside it, for shorter messages."""
    folder = Path(os.path.abspath(export_path)).parent.parent / "benchmarks" / export_name
    try:
        return folder.relative_to(Path.cwd())
    except ValueError:
        return folder


def bench_locations(export_path: str | os.PathLike[str], export_name: str) -> list[Path]:
    """The bench folders an export's results are looked for in, in order: bench's default
    (``default_bench_dir``) and ``<export>/../bench`` (the demo's layout). Never the current directory."""
    return [default_bench_dir(export_path, export_name), Path(export_path).parent / "bench"]


def results_path(path: str | os.PathLike[str]) -> Path:
    p = Path(path)
    return p / RESULTS_FILE if p.is_dir() else p


def load_results(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a results.json (a BENCH_DIR or the file itself)."""
    p = results_path(path)
    results = read_json(p, "bench results")
    try:
        validate_results(results)
    except ValueError as exc:
        raise EdgexferError(f"{p} is not a bench results file: {exc}", "re-run edgexfer bench") from exc
    return results


def bench_rows(results: dict[str, Any]) -> list[BenchRow]:
    """The typed rows of a results.json read by ``load_results``."""
    return [BenchRow.from_dict(r) for r in results.get("results", [])]


def is_bench_dir(path: str | os.PathLike[str]) -> bool:
    """A folder an earlier bench wrote: its results.json carries the bench schema."""
    try:
        results = read_json(Path(path) / RESULTS_FILE, "bench results")
    except EdgexferError:
        return False
    return isinstance(results, dict) and results.get("schema") in READABLE_SCHEMAS


def write_results(out_dir: str | os.PathLike[str], results: dict[str, Any]) -> Path:
    """Validate and write ``results.json`` (rows may be ``BenchRow`` objects or their dicts)."""
    record = {"schema": SCHEMA, **{k: v for k, v in results.items() if k != "schema"},
              "results": [r.to_dict() if isinstance(r, BenchRow) else r for r in results.get("results", [])]}

    validate_results(record)
    return write_json(Path(out_dir) / RESULTS_FILE, record)

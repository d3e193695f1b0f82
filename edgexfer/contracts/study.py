"""A study directory's results.json (docs/contracts.md section 7) and its rows.

``StudyRow`` is one artifact on one runtime of one backbone, made from a bench row (``study_rows``);
``read_study_results`` is the one reader (``edgexfer report``), ``write_study_results`` the one writer.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgexfer.contracts._base import read_record, require_keys
from edgexfer.contracts.bench import REFERENCE_RUNTIMES as REFERENCE_RUNTIMES
from edgexfer.contracts.bench import BenchRow, Recommendation, bench_rows
from edgexfer.errors import EdgexferError
from edgexfer.io import read_json, write_json

SCHEMA = "edgexfer.study/1"
RESULTS_FILE = "results.json"
#: what a reader needs; the writer records every key of docs/contracts.md section 7
TOP_KEYS = ("backbones", "results")
_FIX = "point to a folder written by edgexfer compare (re-run it to regenerate results.json)"


def row_key(row: Any) -> tuple[str, str, str]:
    """A study row's identity: backbone, artifact, runtime (a row dict or a ``StudyRow``)."""
    get = row.get if isinstance(row, dict) else (lambda k: getattr(row, k, None))
    return (str(get("backbone")), str(get("artifact")), str(get("runtime")))


def row_label(row: dict[str, Any]) -> str:
    """How reports and reasons name a row: ``<backbone> <artifact> on <runtime>``."""
    return f"{row['backbone']} {row.get('artifact')} on {row.get('runtime')}"


@dataclass
class StudyRow:
    """A bench row of one backbone, at batch 1: what the study's tables, plots and recommendation read.
    ``precision`` is the numeric format; ``precision_macro`` and ``recall_macro`` the metrics."""

    backbone: str
    artifact: str
    precision: str
    runtime: str
    provider: str | None
    accuracy: float | None
    loss: float | None
    precision_macro: float | None
    recall_macro: float | None
    f1: float | None
    auc: float | None
    agreement: float | None
    latency_p50_ms: float | None
    latency_p90_ms: float | None
    throughput_ips: float | None
    size_bytes: int | None
    threads: int | None
    gate_passed: bool | None
    gate_reasons: list[str] = field(default_factory=list)
    confusion_matrix: list[list[int]] | None = None
    model_usable: bool | None = None
    baseline_accuracy: float | None = None
    pareto: bool = False
    #: the bench gate's verdict: pass, fail or inconclusive (None: a bench before verdicts; read gate_passed)
    gate_verdict: str | None = None

    @classmethod
    def from_bench(cls, backbone: str, row: BenchRow, model_usable: bool | None) -> StudyRow:
        latency = row.latency(1)
        return cls(backbone=backbone, artifact=row.artifact, precision=row.precision, runtime=row.runtime,
                   provider=row.provider, accuracy=row.accuracy, loss=row.loss, precision_macro=row.precision_macro,
                   recall_macro=row.recall_macro, f1=row.f1, auc=row.auc, agreement=row.agreement,
                   latency_p50_ms=latency.get("p50"), latency_p90_ms=latency.get("p90"),
                   throughput_ips=(row.throughput_ips or {}).get("1"), size_bytes=row.size_bytes, threads=row.threads,
                   gate_passed=(row.gate or {}).get("passed"), gate_reasons=list((row.gate or {}).get("reasons") or []),
                   confusion_matrix=row.confusion_matrix, model_usable=model_usable,
                   baseline_accuracy=row.baseline_accuracy, gate_verdict=(row.gate or {}).get("verdict"))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class BackboneDeploy:
    """What a backbone's bench says to deploy (its results.json ``recommended``), as the study records it in
    ``backbones[].deploy``. ``status``: "ok" (``artifact`` on ``runtime``, ``p50_ms`` at ``batch``), "none"
    (nothing passed the gate: ``reason`` says why) or "unrecorded" (a bench written before it recorded one)."""

    status: str
    artifact: str | None = None
    precision: str | None = None
    runtime: str | None = None
    p50_ms: float | None = None
    batch: int | None = None
    sha256: str | None = None
    speedup_vs_reference: float | None = None
    reason: str = ""

    @classmethod
    def from_bench(cls, bench: dict[str, Any]) -> BackboneDeploy:
        """From a bench results.json read by ``load_results``."""
        if "recommended" not in bench:
            return cls("unrecorded", reason="the bench recorded no recommendation (written before it did)")
        chosen = bench["recommended"]
        if isinstance(chosen, dict):
            rec = Recommendation.from_dict(chosen)
            return cls("ok", rec.artifact, rec.precision, rec.runtime, rec.p50_ms, rec.batch, rec.sha256,
                       rec.speedup_vs_reference)
        return cls("none", reason=nothing_passed(bench))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> BackboneDeploy:
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})

    @property
    def key(self) -> tuple[str | None, str | None]:
        return (self.artifact, self.runtime)

    def line(self) -> str:
        """``deploy: <artifact> on <runtime>, <p50> ms`` or ``nothing passed: <why>`` (one line)."""
        if self.status == "ok" and self.p50_ms is not None:
            at = "" if self.batch in (None, 1) else f" at batch {self.batch}"
            return f"deploy: {self.artifact} on {self.runtime}, {self.p50_ms:.3g} ms{at}"
        if self.status == "none":
            return f"nothing passed: {self.reason}"
        return f"not recorded: {self.reason}"

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def nothing_passed(bench: dict[str, Any]) -> str:
    """Why no row of a bench passed its gate, in one line: the model check, else each row's verdict."""
    check = bench.get("model_check") or {}
    if check.get("usable") is False or check.get("verdict") == "not_usable":
        return f"the FP32 model is not usable ({check.get('reason') or 'no reason recorded'})"
    parts = []
    for row in bench_rows(bench):
        gate = row.gate or {}
        if row.runtime in REFERENCE_RUNTIMES or gate.get("passed") is True:
            continue
        verdict = "inconclusive" if gate.get("verdict") == "inconclusive" else "failed"
        first = next(iter(gate.get("reasons") or ()), "")
        parts.append(f"{row.artifact} on {row.runtime} {verdict}" + (f" ({str(first).split(' (')[0]})" if first else ""))
    return "; ".join(parts) or "no device artifact was benched"


def study_rows(backbone: str, bench: dict[str, Any]) -> list[dict[str, Any]]:
    """The study rows (as written in results.json) of one bench ``results.json`` read by ``load_results``."""
    usable = (bench.get("model_check") or {}).get("usable")
    return [StudyRow.from_bench(backbone, row, usable).to_dict() for row in bench_rows(bench)]


def results_path(study_dir: str | os.PathLike[str]) -> Path:
    return Path(study_dir) / RESULTS_FILE


def read_study_results(study_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """A study's results.json, checked (schema and top-level keys)."""
    path = results_path(study_dir)
    record = read_record(path, SCHEMA, "study results file",
                         "for a bench directory use edgexfer report BENCH_DIR; " + _FIX)
    require_keys(record, TOP_KEYS, path, _FIX)
    return record


def results_schema(directory: str | os.PathLike[str]) -> str | None:
    """The schema of ``directory/results.json`` (a study's or a bench's), None when it records none."""
    record = read_json(results_path(directory), "results file")
    schema = record.get("schema") if isinstance(record, dict) else None
    return schema if isinstance(schema, str) else None


def write_study_results(study_dir: str | os.PathLike[str], results: dict[str, Any]) -> Path:
    record = {"schema": SCHEMA, **{k: v for k, v in results.items() if k != "schema"}}
    missing = [k for k in TOP_KEYS if k not in record]
    if missing:
        raise EdgexferError(f"study results lack {', '.join(missing)}", "this is a bug in edgexfer: report it")
    return write_json(results_path(study_dir), record)

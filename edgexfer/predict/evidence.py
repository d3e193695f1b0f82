"""What a bench said about an export's artifacts: gate verdicts bound to the bytes they judged (sha256).

A verdict counts only for the file whose sha256 its bench row recorded (``BenchEvidence.verdict``), never
for an artifact's name. Bench results are found from the export (``edgexfer.contracts.bench.bench_locations``)
or named, never in the current directory.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from edgexfer.contracts.bench import (
    RESULTS_FILE,
    Recommendation,
    bench_locations,
    bench_rows,
    is_sha256,
    load_results,
    results_path,
)
from edgexfer.contracts.bench import SCHEMA as BENCH_SCHEMA
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.exported import ExportDir
from edgexfer.evaluate.operating_point import DecisionRule
from edgexfer.runtime import Artifact


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
    #: results.json's ``recommended``: what bench says to deploy (None: nothing passed, or results written before it)
    recommended: Recommendation | None = None

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
        chosen = results.get("recommended")
        return cls(path, tuple(verdicts), str(results["schema"]),
                   DecisionRule.from_record(results.get("operating_point"), str(path)),
                   Recommendation.from_dict(chosen) if isinstance(chosen, dict) else None)

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

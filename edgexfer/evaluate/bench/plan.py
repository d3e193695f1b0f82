"""Which artifact runs on which runtime: every pair a chosen runtime supports, FP32 first (the reference),
and what was skipped and why."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgexfer.errors import EdgexferError
from edgexfer.evaluate.exported import ExportDir
from edgexfer.runtime import RUNTIMES, Artifact, RuntimeKind


@dataclass
class BenchJob:
    """One artifact on one runtime."""

    artifact: Artifact
    kind: RuntimeKind


@dataclass
class BenchPlan:
    """The jobs in the order they run (FP32 first), and the artifacts or runtimes left out (``runtime``,
    ``reason`` and, for an artifact, ``artifact``: results.json's ``skipped`` entries)."""

    jobs: list[BenchJob]
    skipped: list[dict[str, str]]


def plan_jobs(export: ExportDir, kinds: Sequence[RuntimeKind], explicit: bool) -> BenchPlan:
    """Every (artifact, runtime) pair a chosen runtime supports; FP32 first so it is the reference."""
    skipped: list[dict[str, str]] = []
    artifacts = list(export.artifacts)
    if any(k.name == "keras" for k in kinds):
        keras_artifact, why = export.keras_artifact()
        if keras_artifact is None:
            if explicit:
                raise EdgexferError(f"runtime 'keras' cannot run: {why}", "leave keras out of --runtimes")
            skipped.append({"runtime": "keras", "reason": why})
        else:
            artifacts.append(keras_artifact)
    order = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}
    artifacts.sort(key=lambda a: (a.format == "keras", a.format == "tensorrt", order.get(a.precision, 9), a.name))
    jobs = [BenchJob(a, k) for a in artifacts for k in kinds if k.supports(a)]
    for kind in kinds:  # artifacts a runtime makes from the export's files (OpenVINO's bf16) run on it alone
        derived = kind.derive(export.artifacts)
        jobs += [BenchJob(a, kind) for a in derived.artifacts]
        skipped += [{"runtime": kind.name, "artifact": name, "reason": reason} for name, reason in derived.skipped]
    if not any(j.artifact.name == "fp32" for j in jobs):
        # the reference is not optional: run FP32 on the CPU provider when no chosen runtime takes it
        cpu = RUNTIMES["ort-cpu"]
        ok, reason = cpu.available()
        if ok and any(a.name == "fp32" for a in artifacts):
            jobs.insert(0, BenchJob(export.artifact("fp32"), cpu))
    covered = {j.artifact.name for j in jobs}
    for a in artifacts:
        if a.name not in covered:
            skipped.append({"runtime": "-", "artifact": a.name,
                            "reason": f"no chosen runtime runs {a.format} {a.precision} (target {a.target})"})
    return BenchPlan(jobs, skipped)

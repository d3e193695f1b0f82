"""The gate over every row: each against the one FP32 reference (agreement, intervals, paired decisions,
floors, the model check) and the clinical operating point it is judged at. Each row gets its ``gate`` record;
what broke and what is undecided come back typed."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.contracts.run import read_sanity as read_run_sanity
from edgexfer.evaluate.bench.config import BenchConfig
from edgexfer.evaluate.bench.measure import Measurements
from edgexfer.evaluate.bench_data import AgreementPool, BenchData
from edgexfer.evaluate.exported import ExportDir
from edgexfer.evaluate.gate import (
    Breach,
    ModelCheck,
    Thresholds,
    check_floors,
    check_model,
    decision_breach,
    judge_drops,
    model_breach,
    verdict_of,
)
from edgexfer.evaluate.metrics import agreement
from edgexfer.evaluate.operating_point import (
    OperatingPoint,
    choose_threshold,
    decide_at,
    positive_index,
    read_at,
)
from edgexfer.evaluate.stats import (
    PairedDecision,
    agreement_bounds,
    agreement_evidence,
    confidence_intervals,
    f1_drop_interval,
    flips_by_metric,
    mcnemar_exact,
)


@dataclass(frozen=True)
class Undecided:
    """An inconclusive decision of one artifact on one runtime."""

    artifact: str
    precision: str
    runtime: str
    decision: PairedDecision


@dataclass
class GateResult:
    """What the gate found over every row: the thresholds broken, the decisions left open, the model check."""

    breaches: list[Breach]
    undecided: list[Undecided]
    model_check: ModelCheck


@dataclass
class PointChoice:
    """The operating point judged (None when there is none) and results.json's record of it (None when the task
    has no positive class; else it says the threshold, or why there is none)."""

    point: OperatingPoint | None
    record: dict[str, Any] | None


def read_sanity(export: ExportDir) -> dict[str, Any] | None:
    """The run's sanity record (metrics.json ``sanity``): the export's copy, else the source run's; None for
    runs that predate it."""
    candidates = [export.path]
    run_path = export.source_run.path
    if run_path:
        candidates.append(Path(run_path))
    return read_run_sanity(*candidates)


def choose_point(config: BenchConfig, export: ExportDir, data: BenchData, pool: AgreementPool,
                 reference_pool_probs: np.ndarray) -> PointChoice:
    """The clinical operating point: the one the export recorded (what is served), else chosen on FP32's
    probabilities of the validation images (None, with a record saying why, when the task has no positive
    class or there are no validation images of both kinds)."""
    recorded = export.operating_point
    if recorded is not None:
        return PointChoice(recorded, recorded.as_dict())
    positive = positive_index(data.classes, config.positive_class)
    if positive is None:
        return PointChoice(None, None)
    val = np.asarray([s == "val" for s in pool.sources], dtype=bool) & (pool.labels >= 0)
    base = {"positive_class": data.classes[positive],
            "method": "target_sensitivity" if config.target_sensitivity is not None else "youden",
            "target_sensitivity": config.target_sensitivity, "source": "bench"}
    if not val.any():
        return PointChoice(None, {**base, "threshold": None,
                                  "note": "no validation images here to choose the threshold on (the run's "
                                          "validation split is needed: it is never chosen on the images it is "
                                          "judged on)"})
    point = choose_threshold(pool.labels[val], reference_pool_probs[val][:, positive], positive, data.classes,
                             config.target_sensitivity, f"the run's validation split ({int(val.sum())} images)")
    if point is None:
        return PointChoice(None, {**base, "threshold": None,
                                  "note": "the validation images lack positives or negatives: no threshold can "
                                          "be chosen"})
    return PointChoice(point, point.as_dict())


def judge_rows(measured: Measurements, thresholds: Thresholds, data: BenchData, sanity: dict[str, Any] | None,
               pool: AgreementPool | None = None, point: OperatingPoint | None = None) -> GateResult:
    """Agreement with FP32, intervals, the paired test and the gate: every row against the one FP32 reference
    (FP32 on the first runtime that ran it, ONNX Runtime CPU by default), other runtimes' FP32 rows included, so
    that a runtime whose FP32 is numerically wrong fails instead of judging its own precisions (and being
    recommended as fastest); paired non-inferiority decisions for every relative threshold; absolute floors for
    every row; and every row fails when the FP32 model itself is not usable (inconclusive when that cannot be told)."""
    rows, probabilities, pool_predictions = measured.rows, measured.probabilities, measured.pool_predictions
    reference_key = measured.reference_key
    by_key = {r.key: r for r in rows}
    labels = data.labels
    model = check_model(by_key[reference_key].metrics(), sanity)
    breaches: list[Breach] = []
    undecided: list[Undecided] = []
    for row in rows:
        key = row.key
        ref_key = reference_key
        ref_metrics = by_key[ref_key].metrics()
        parity = agreement(probabilities[ref_key], probabilities[key])
        row.agreement, row.max_abs_diff = parity["agreement"], parity["max_abs_diff"]
        row.reference = {"artifact": ref_key[0], "runtime": ref_key[1]}
        pred = probabilities[key].argmax(1)
        ref_pred = probabilities[ref_key].argmax(1)
        row.ci95 = confidence_intervals(labels, pred, data.classes)
        is_reference = key == ref_key
        row.vs_reference = None if is_reference else mcnemar_exact(ref_pred == labels, pred == labels).as_dict()
        flips = flips_by_metric(labels, ref_pred, pred, data.classes)
        found: list[Breach] = []
        decisions = []
        evidence = None
        if not is_reference:
            f1_interval = f1_drop_interval(labels, ref_pred, pred, len(data.classes))
            extra_ref = _argmax((pool_predictions or {}).get(ref_key))
            extra = _argmax((pool_predictions or {}).get(key))
            sources = ["test"] * len(labels) + (list(pool.sources) if pool is not None else [])
            evidence = agreement_evidence(np.concatenate([ref_pred, extra_ref]), np.concatenate([pred, extra]),
                                          sources, data.classes)
            bounds = agreement_bounds(evidence, labels, ref_pred, data.classes)
            decisions = judge_drops(ref_metrics, row.metrics(), thresholds, flips=flips, f1_interval=f1_interval,
                                    agreement=bounds)
            if point is not None:
                decisions += decide_at(labels, probabilities[ref_key][:, point.positive_index],
                                       probabilities[key][:, point.positive_index], point, thresholds.max_recall_drop)
            found += [decision_breach(d, artifact=row.artifact, precision=row.precision, runtime=row.runtime)
                      for d in decisions if d.outcome == "fail"]
        found += check_floors(row.metrics(), thresholds, reference=ref_metrics, artifact=row.artifact,
                              precision=row.precision, runtime=row.runtime,
                              flips=None if is_reference else flips)
        if model.verdict == "not_usable":
            found.insert(0, model_breach(model, artifact=row.artifact, precision=row.precision,
                                         runtime=row.runtime))
        open_items = [d for d in decisions if d.outcome == "inconclusive"]
        verdict = verdict_of(found, open_items, model)
        reasons = [b.reason() for b in found] + [d.reason() for d in open_items]
        if model.verdict == "inconclusive":
            reasons.append(f"the model check is inconclusive: {model.reason}")
        row.gate = {"passed": verdict == "pass", "verdict": verdict, "reasons": reasons,
                    "breaches": [b.__dict__ for b in found],
                    "inconclusive": [d.as_dict() for d in open_items],
                    "decisions": [d.as_dict() for d in decisions], "agreement": evidence,
                    "operating_point": (read_at(labels, probabilities[key][:, point.positive_index], point)
                                        if point is not None else None)}
        if is_reference:
            row.gate["reference"] = True
        breaches += found
        undecided += [Undecided(row.artifact, row.precision, row.runtime, d) for d in open_items]
    return GateResult(breaches, undecided, model)


def _argmax(probabilities: np.ndarray | None) -> np.ndarray:
    return probabilities.argmax(1) if probabilities is not None and len(probabilities) else np.zeros(0, np.int64)

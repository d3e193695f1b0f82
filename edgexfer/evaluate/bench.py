"""`edgexfer bench`: accuracy per artifact × runtime, the gate against FP32, latency on this machine.

The bench knows runtimes only through ``edgexfer.runtime.RUNTIMES`` (available / supports / open):
nothing here is backend-specific. It writes ``results.json``, ``report.md`` and ``plots/`` in the
bench directory (docs/contracts.md section 6) before it raises ``GateFailed`` on a broken gate.
"""

from __future__ import annotations

import functools
import gc
import os
import resource
import shutil
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer._folders import refuse_overlap, staging_dir, swap_in, sweep_stale
from edgexfer.contracts.bench import SCHEMA, BenchRow, is_bench_dir, recommend, write_results
from edgexfer.contracts.bench import default_bench_dir as bench_dir_of
from edgexfer.contracts.layers import layer_summaries
from edgexfer.contracts.run import read_sanity as read_run_sanity
from edgexfer.errors import EdgexferError, GateFailed, GateInconclusive
from edgexfer.evaluate.bench_data import AgreementPool, BenchData, load_agreement_pool, load_bench_data
from edgexfer.evaluate.exported import ExportDir, load_export
from edgexfer.evaluate.gate import (
    Breach,
    ModelCheck,
    Thresholds,
    breach_table,
    check_floors,
    check_model,
    decision_breach,
    judge_drops,
    model_breach,
    parse_fraction,
    undecided_table,
    verdict_of,
)
from edgexfer.evaluate.latency import end_to_end_ms, make_batch, summarize, time_runtime
from edgexfer.evaluate.memory import SessionMemory
from edgexfer.evaluate.metrics import agreement, classification_metrics
from edgexfer.evaluate.operating_point import (
    OperatingPoint,
    choose_threshold,
    decide_at,
    positive_index,
    read_at,
)
from edgexfer.evaluate.stats import (
    AGREEMENT_METHOD,
    ECE_METHOD,
    F1_METHOD,
    PAIRED_METHOD,
    PairedDecision,
    agreement_bounds,
    agreement_evidence,
    confidence_intervals,
    f1_drop_interval,
    flips_by_metric,
    mcnemar_exact,
    reliability,
    resolution_warnings,
)
from edgexfer.io import fix_modes, lock_folder, sha256_file
from edgexfer.limits import check_batch_fits, check_threads
from edgexfer.report.bench_report import write_bench_report
from edgexfer.runtime import RUNTIMES, Artifact, RuntimeKind, gpu_status, select_runtimes
from edgexfer.versions import int8_instructions, library_versions, machine_info, onnxruntime_version

#: how latency is measured, recorded in results.json and said in report.md
LATENCY_METHOD = ("one ONNX Runtime session (or engine, or OpenVINO compiled model) at a time: each artifact's session is built, measured "
                  "and closed before the next is built, so no idle thread pool of another session competes "
                  "for the cores while the clock runs, as on a device that serves one model")


@dataclass
class BenchConfig:
    """Options of `edgexfer bench` (one field per CLI option)."""

    export_dir: Path
    out: Path | None = None  # default: benchmarks/<export name> beside the export's parent (default_bench_dir)
    data: Path | None = None  # default: the run's test split
    unlabeled: Path | None = None  # a folder of images that add to the agreement with FP32 (no labels needed)
    positive_class: str | None = None  # clinical operating point: this class against the rest (binary: the 2nd)
    target_sensitivity: float | None = None  # the threshold's sensitivity on validation images (None: Youden's J)
    runtimes: list[str] | None = None  # default: every runtime usable here
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    warmup: int = 10
    iterations: int = 50
    threads: int | None = None  # ONNX Runtime intra-op threads (None: library default)
    thresholds: Thresholds = field(default_factory=Thresholds)
    end_to_end_images: int = 20  # images timed from file (decode + resize + predict at batch 1)
    eval_batch_size: int = 32
    progress: bool = True
    log: Callable[[str], None] | None = None  # where to say what was skipped (stderr by default)

    def __post_init__(self) -> None:
        self.export_dir = Path(self.export_dir)
        self.out = Path(self.out) if self.out is not None else None
        self.data = Path(self.data) if self.data is not None else None
        self.unlabeled = Path(self.unlabeled) if self.unlabeled is not None else None
        if not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes):
            raise EdgexferError(f"batch sizes {list(self.batch_sizes)} must be positive integers", "e.g. --batch-sizes 1,8,32")
        self.batch_sizes = tuple(sorted({int(b) for b in self.batch_sizes}))
        if self.iterations < 1 or self.warmup < 0:
            raise EdgexferError("--iterations must be at least 1 and --warmup at least 0", "e.g. --warmup 10 --iterations 50")
        if self.target_sensitivity is not None:
            self.target_sensitivity = parse_fraction("--target-sensitivity", self.target_sensitivity)
        check_threads(self.threads)
        if isinstance(self.thresholds, dict):
            self.thresholds = Thresholds(**self.thresholds)
        if not isinstance(self.thresholds, Thresholds):
            raise EdgexferError(f"thresholds {self.thresholds!r} are not a Thresholds", "pass edgexfer.evaluate.gate.Thresholds")


@dataclass(frozen=True)
class Undecided:
    """An inconclusive decision of one artifact on one runtime."""

    artifact: str
    precision: str
    runtime: str
    decision: PairedDecision


@dataclass
class BenchOutcome:
    results: dict[str, Any]
    out_dir: Path
    breaches: list[Breach]
    model_check: ModelCheck | None = None
    undecided: list[Undecided] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        """pass, fail or inconclusive over every row (the exit code: 0, 1, 3)."""
        return verdict_of(self.breaches, [u.decision for u in self.undecided], self.model_check)

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    def settle_line(self) -> str:
        """Which precision is inconclusive and what would decide it, in one line: per artifact and runtime,
        the most images any undecided threshold needs overall and per class (rows needing the same merge)."""
        parts = []
        if self.model_check is not None and self.model_check.verdict == "inconclusive":
            parts.append(f"the model check: {self.model_check.reason}")
        needs: dict[tuple[str, str], dict[str, PairedDecision]] = {}
        for u in self.undecided:
            slot = needs.setdefault((u.artifact, u.runtime), {})
            key = u.decision.population
            if key not in slot or (u.decision.images_needed or 0) > (slot[key].images_needed or 0):
                slot[key] = u.decision
        texts: dict[str, list[str]] = {}
        for (artifact, runtime), slot in needs.items():
            text = ", ".join(d.settle_text() for d in slot.values())
            texts.setdefault(text, []).append(f"{artifact} on {runtime}")
        parts += [f"{' and '.join(rows)}: {text}" for text, rows in texts.items()]
        return "; ".join(parts)


@dataclass
class _Job:
    artifact: Artifact
    kind: RuntimeKind


class BenchGateFailed(GateFailed):
    """The gate broke (exit 1) after every output was written: ``table`` says what broke, ``outcome`` holds all."""

    def __init__(self, problem: str, fix: str, *, outcome: BenchOutcome):
        super().__init__(problem, fix)
        self.outcome = outcome
        self.table = breach_table(outcome.breaches)


class BenchGateInconclusive(GateInconclusive):
    """Nothing broke but something is undecided (exit 3) after every output was written: ``table`` lists the
    undecided thresholds and how many images would decide each, ``outcome`` holds all."""

    def __init__(self, problem: str, fix: str, *, outcome: BenchOutcome):
        super().__init__(problem, fix)
        self.outcome = outcome
        self.table = undecided_table([(u.artifact, u.precision, u.runtime, u.decision) for u in outcome.undecided])


#: either verdict that is not a pass (both carry ``.outcome`` and ``.table``)
BenchVerdictError = (BenchGateFailed, BenchGateInconclusive)


def default_bench_dir(export: ExportDir) -> Path:
    """``benchmarks/<export name>`` beside the export's parent folder: derived from the export, not from the
    current directory, so that predict and package find it from the export alone."""
    return bench_dir_of(export.path, export.name)


def check_bench_out(out: Path) -> None:
    """--out may be new, empty, or an earlier bench folder (its files are replaced); anything else is refused,
    so that results.json, report.md and plots/ never land in a data folder (where plots/ would become a class)."""
    if out.exists() and not out.is_dir():
        raise EdgexferError(f"bench output {out} is a file", "pass a folder to --out")
    if out.is_dir() and any(out.iterdir()) and not is_bench_dir(out):
        raise EdgexferError(f"{out} is not empty and is not a bench folder (no bench results.json)",
                            "choose another --out or empty the folder")


def read_sanity(export: ExportDir) -> dict[str, Any] | None:
    """The run's sanity record (metrics.json ``sanity``): the export's copy, else the source run's; None for
    runs that predate it."""
    candidates = [export.path]
    run_path = export.source_run.path
    if run_path:
        candidates.append(Path(run_path))
    return read_run_sanity(*candidates)


def run_bench(config: BenchConfig) -> BenchOutcome:
    """Run the bench; write results.json, report.md, plots/; raise GateFailed (exit 1) if the gate broke,
    GateInconclusive (exit 3) if nothing broke but something could not be decided on these images.

    The error (``BenchGateFailed``/``BenchGateInconclusive``) carries ``.table`` (as text) and ``.outcome``.
    """
    log = config.log or (lambda line: print(line, file=sys.stderr))
    export = load_export(config.export_dir)
    config.thresholds.check_classes(export.classes)
    for batch in config.batch_sizes:
        check_batch_fits(batch, *export.image_size, option="--batch-sizes")
    positive_index(export.classes, config.positive_class)  # an unknown class: one line, before any work
    check_recorded_point(export, config)
    out_dir = Path(config.out or default_bench_dir(export))
    # the bench folder is replaced whole; inside its export it would be deleted by the next export
    refuse_overlap(out_dir, {"export folder": export.path, "data": config.data})
    check_bench_out(out_dir)
    kinds, skipped = select_runtimes(config.runtimes)
    jobs, more_skipped = _plan(export, kinds, explicit=config.runtimes is not None)
    skipped += more_skipped
    if not any(job.artifact.name == "fp32" for job in jobs):
        raise EdgexferError(f"export {export.path} has no FP32 ONNX artifact that a runtime here can run, and every "
                            "precision is judged against it", "re-export with FP32 and include ort-cpu in --runtimes")
    lock = lock_folder(out_dir, "edgexfer bench")
    try:
        check_bench_out(out_dir)  # another bench may have written it while we waited for nothing: check again
        sweep_stale(out_dir)  # what a killed bench left (an old bench folder a kill left aside is put back)
        return _run_locked(config, export, out_dir, jobs, skipped, log)
    finally:
        lock.release()


def _run_locked(config: BenchConfig, export: ExportDir, out_dir: Path, jobs: list[_Job],
                skipped: list[dict[str, str]], log: Callable[[str], None]) -> BenchOutcome:
    for entry in skipped:
        log(f"skipped {entry['runtime']}{' / ' + entry['artifact'] if entry.get('artifact') else ''}: {entry['reason']}")
    data = load_bench_data(export, config.data, progress=config.progress)
    pool = load_agreement_pool(export, data, config.data, config.unlabeled, progress=config.progress)

    rows: list[BenchRow] = []
    probabilities: dict[tuple[str, str], np.ndarray] = {}
    pool_predictions: dict[tuple[str, str], np.ndarray] = {}
    reference_key: tuple[str, str] | None = None
    for job in jobs:
        row, probs, pool_probs = _bench_one(job, export, data, config, pool)
        gc.collect()  # the session is closed: free it now, before the next one is built and timed
        key = (job.artifact.name, job.kind.name)
        probabilities[key] = probs
        pool_predictions[key] = pool_probs
        if reference_key is None and job.artifact.name == "fp32":
            reference_key = key
        rows.append(row)
    assert reference_key is not None  # _plan puts an FP32 job first

    sanity = read_sanity(export)  # about the model itself, whatever images it is measured on
    point, point_record = _operating_point(config, export, data, pool, pool_predictions[reference_key])
    breaches, undecided, model = _compare_and_gate(rows, probabilities, reference_key, config.thresholds, data,
                                                   sanity, pool, pool_predictions, point)
    warnings = resolution_warnings(data.description.get("class_counts") or {}, len(data.labels),
                                   config.thresholds.max_accuracy_drop, config.thresholds.max_recall_drop)
    for line in warnings:
        log(f"warning: {line}")
    results = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "export": {"path": str(export.path), "name": export.name, "source_run": export.manifest["source_run"],
                   "int8_layers": layer_summaries(export.path, export.manifest["artifacts"])},
        "reference": "fp32",
        "reference_runtime": reference_key[1],
        "thresholds": config.thresholds.as_dict(),
        "model_check": model.as_dict(),
        "statistics": {"intervals": "Wilson score, 95% (statsmodels proportion_confint)",
                       "paired_test": "McNemar's exact test against FP32 on the same images (statsmodels mcnemar)",
                       "decision": {"proportions": PAIRED_METHOD, "f1": F1_METHOD, "agreement": AGREEMENT_METHOD,
                                    "rule": "pass: the interval of the drop is within the limit; fail: it lies "
                                            "above the limit (or a floor is broken, or the model is not usable); "
                                            "inconclusive: otherwise"},
                       "resolution_warnings": warnings},
        "settings": {"batch_sizes": list(config.batch_sizes), "warmup": config.warmup,
                     "iterations": config.iterations, "threads": config.threads,
                     "end_to_end_images": min(config.end_to_end_images, len(data.refs)),
                     "inputs": "host memory (decoded, resized uint8 NHWC); end_to_end_ms adds decode + resize",
                     "latency_method": LATENCY_METHOD},
        "machine": machine_record(),
        "data": data.description,
        "agreement_pool": pool.description,
        "operating_point": point_record,
        "calibration": {"method": ECE_METHOD,
                        "rows": [{"artifact": r.artifact, "runtime": r.runtime,
                                  **reliability(data.labels, probabilities[r.key])} for r in rows]},
        "skipped": skipped,
        "results": rows,
    }
    recommended = recommend(rows)  # after the gate: the fastest row that passed it
    results["recommended"] = recommended.to_dict() if recommended is not None else None

    # built whole beside out_dir and swapped in: a full disk or a kill leaves the previous bench (or nothing)
    staging = staging_dir(out_dir)
    try:
        write_results(staging, results)
        results = {"schema": SCHEMA, **results, "results": [r.to_dict() for r in rows]}
        write_bench_report(results, staging)
        fix_modes(staging)
        swap_in(staging, out_dir)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    outcome = BenchOutcome(results, out_dir, breaches, model, undecided)
    if outcome.verdict == "inconclusive":
        rows_undecided = sorted({f"{u.artifact} on {u.runtime}" for u in undecided})
        what = ", ".join(rows_undecided) if rows_undecided else "every precision"
        raise BenchGateInconclusive(
            f"accuracy gate inconclusive for {what}: too few images to show the loss is within the thresholds "
            f"({outcome.settle_line()})",
            "bench on more labelled images (--data), or add unlabeled images (--unlabeled) for the agreement with "
            f"FP32, to decide; see {out_dir / 'report.md'}", outcome=outcome)
    if outcome.verdict == "fail":
        broken = sorted({f"{b.artifact} on {b.runtime}" for b in breaches})
        if model.verdict == "not_usable":
            problem = f"accuracy gate failed: the model itself is not usable ({model.reason})"
            fix = f"fine-tune a model that learns (see the run's metrics.json) before exporting; {out_dir / 'report.md'}"
        else:
            problem = f"accuracy gate failed for {', '.join(broken)} ({len(breaches)} threshold(s) broken)"
            # true from the command (which prints the table first) and from Python (which prints nothing)
            fix = (f"what broke is in the table of this error (.table in Python; printed above by the command) and in "
                   f"{out_dir / 'report.md'}")
        raise BenchGateFailed(problem, fix, outcome=outcome)
    return outcome


def _plan(export: ExportDir, kinds: Sequence[RuntimeKind], explicit: bool) -> tuple[list[_Job], list[dict[str, str]]]:
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
    jobs = [_Job(a, k) for a in artifacts for k in kinds if k.supports(a)]
    for kind in kinds:  # artifacts a runtime makes from the export's files (OpenVINO's bf16) run on it alone
        derived = kind.derive(export.artifacts)
        jobs += [_Job(a, kind) for a in derived.artifacts]
        skipped += [{"runtime": kind.name, "artifact": name, "reason": reason} for name, reason in derived.skipped]
    if not any(j.artifact.name == "fp32" for j in jobs):
        # the reference is not optional: run FP32 on the CPU provider when no chosen runtime takes it
        cpu = RUNTIMES["ort-cpu"]
        ok, reason = cpu.available()
        if ok and any(a.name == "fp32" for a in artifacts):
            jobs.insert(0, _Job(export.artifact("fp32"), cpu))
    covered = {j.artifact.name for j in jobs}
    for a in artifacts:
        if a.name not in covered:
            skipped.append({"runtime": "-", "artifact": a.name,
                            "reason": f"no chosen runtime runs {a.format} {a.precision} (target {a.target})"})
    return jobs, skipped


def _bench_one(job: _Job, export: ExportDir, data: BenchData, config: BenchConfig,
               pool: AgreementPool | None = None) -> tuple[BenchRow, np.ndarray, np.ndarray]:
    """One artifact on one runtime: (its row, its probabilities on the labelled images, and on ``pool``'s)."""
    from tqdm.auto import tqdm

    label = f"{job.artifact.name} on {job.kind.name}"
    # the memory this artifact costs: from just before its session opens until it is closed
    with SessionMemory() as memory, \
            job.kind.open(job.artifact, config.threads, (*config.batch_sizes, config.eval_batch_size)) as runtime:
        if runtime.input_spec.shape[1:3] != export.image_size:
            raise EdgexferError(
                f"{job.artifact.path.name} takes {runtime.input_spec.shape[1]}x{runtime.input_spec.shape[2]} images, "
                f"the export manifest says {export.image_size[0]}x{export.image_size[1]}", "re-export the model")
        step = min(config.eval_batch_size, runtime.max_batch or config.eval_batch_size)
        outputs = []
        for start in tqdm(range(0, len(data.images), step), desc=f"accuracy {label}", unit="batch",
                          disable=None if config.progress else True, file=sys.stderr, leave=False):
            outputs.append(runtime.predict(data.images[start:start + step]))
        probs = np.concatenate(outputs)
        metrics = classification_metrics(data.labels, probs, data.classes)
        extra = pool.images if pool is not None else data.images[:0]
        pool_out = [runtime.predict(extra[start:start + step])
                    for start in tqdm(range(0, len(extra), step), desc=f"agreement {label}", unit="batch",
                                      disable=None if config.progress else True, file=sys.stderr, leave=False)]
        pool_probs = (np.concatenate(pool_out) if pool_out
                      else np.zeros((0, len(data.classes)), dtype=np.float32))

        latency, throughput, raw = {}, {}, {}
        for batch_size in config.batch_sizes:
            if runtime.max_batch is not None and batch_size > runtime.max_batch:
                continue  # the engine profile stops below this batch size
            batch = make_batch(data.images, batch_size)
            bar = functools.partial(tqdm, desc=f"latency {label} batch {batch_size}", unit="it",
                                    disable=None if config.progress else True, file=sys.stderr, leave=False)
            times = time_runtime(runtime, batch, config.warmup, config.iterations, progress=bar)
            stats = summarize(times, batch_size)
            latency[str(batch_size)] = {k: stats[k] for k in ("p50", "p90", "p99", "mean", "min", "max", "std", "n")}
            throughput[str(batch_size)] = stats["throughput_ips"]
            raw[str(batch_size)] = times
        e2e = end_to_end_ms(runtime, data.load, data.refs[: config.end_to_end_images])
        provider = runtime.provider
        # the bytes this row judged: hashed while the session that read them is alive, and refused when they
        # are not the manifest's (load_export checked them before the session was built)
        sha256 = sha256_file(job.artifact.path)
        if job.artifact.sha256 is not None and sha256 != job.artifact.sha256:
            raise EdgexferError(f"{job.artifact.path} changed while bench ran it (sha256 {sha256[:12]}…, the "
                                f"manifest says {str(job.artifact.sha256)[:12]}…)",
                                "leave the export alone while it is benched, and bench again")
        execution = runtime.execution.as_dict() if runtime.execution is not None else None
    row = BenchRow(
        artifact=job.artifact.name,
        precision=job.artifact.precision,
        target=job.artifact.target,
        format=job.artifact.format,
        file=job.artifact.path.name,
        runtime=job.kind.name,
        provider=provider,
        accuracy=metrics["accuracy"],
        precision_macro=metrics["precision_macro"],
        recall_macro=metrics["recall_macro"],
        f1=metrics["f1"],
        auc=metrics["auc"],
        loss=metrics["loss"],
        per_class=metrics["per_class"],
        confusion_matrix=metrics["confusion_matrix"],
        n=metrics["n"],
        latency_ms=latency,
        throughput_ips=throughput,
        latency_samples_ms=raw,
        end_to_end_ms=e2e.get("p50"),
        size_bytes=job.artifact.path.stat().st_size,
        peak_rss_mb=peak_rss_mb(),
        session_peak_mb=round(memory.peak_mb, 1),
        threads=config.threads,
        sha256=sha256,
        device=device_of(job.kind.name, provider),
        versions=runtime_versions(job.kind.name),
        execution=execution,
    )
    return row, probs, pool_probs


def _compare_and_gate(rows: list[BenchRow], probabilities: dict[tuple[str, str], np.ndarray],
                      reference_key: tuple[str, str], thresholds: Thresholds, data: BenchData,
                      sanity: dict[str, Any] | None, pool: AgreementPool | None = None,
                      pool_predictions: dict[tuple[str, str], np.ndarray] | None = None,
                      point: OperatingPoint | None = None,
                      ) -> tuple[list[Breach], list[Undecided], ModelCheck]:
    """Agreement with FP32, intervals, the paired test and the gate: every row against the one FP32 reference
    (FP32 on the first runtime that ran it, ONNX Runtime CPU by default), other runtimes' FP32 rows included, so
    that a runtime whose FP32 is numerically wrong fails instead of judging its own precisions (and being
    recommended as fastest); paired non-inferiority decisions for every relative threshold; absolute floors for
    every row; and every row fails when the FP32 model itself is not usable (inconclusive when that cannot be told)."""
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
    return breaches, undecided, model


def check_recorded_point(export: ExportDir, config: BenchConfig) -> None:
    """The export's recorded operating point is the one served, so it is the one judged: asking bench for
    another positive class or target sensitivity is one line (exit 2) before any work."""
    recorded = export.operating_point
    if recorded is None or (config.positive_class is None and config.target_sensitivity is None):
        return
    asked_class = config.positive_class or recorded.positive_class
    if asked_class != recorded.positive_class or config.target_sensitivity not in (None, recorded.target_sensitivity):
        target = (f"sensitivity {recorded.target_sensitivity:g}" if recorded.target_sensitivity is not None
                  else "Youden's J")
        raise EdgexferError(f"export {export.path} records the operating point '{recorded.positive_class}' at "
                            f"{recorded.threshold:.6g} ({target}), the one predict and package serve, not the "
                            "--positive-class/--target-sensitivity asked for",
                            "leave those options out to judge the recorded one, or re-export with them")


def _operating_point(config: BenchConfig, export: ExportDir, data: BenchData, pool: AgreementPool,
                     reference_pool_probs: np.ndarray) -> tuple[OperatingPoint | None, dict[str, Any] | None]:
    """The clinical operating point: the one the export recorded (what is served), else chosen on FP32's
    probabilities of the validation images (None, with a record saying why, when the task has no positive
    class or there are no validation images of both kinds)."""
    recorded = export.operating_point
    if recorded is not None:
        return recorded, recorded.as_dict()
    positive = positive_index(data.classes, config.positive_class)
    if positive is None:
        return None, None
    val = np.asarray([s == "val" for s in pool.sources], dtype=bool) & (pool.labels >= 0)
    base = {"positive_class": data.classes[positive],
            "method": "target_sensitivity" if config.target_sensitivity is not None else "youden",
            "target_sensitivity": config.target_sensitivity, "source": "bench"}
    if not val.any():
        return None, {**base, "threshold": None,
                      "note": "no validation images here to choose the threshold on (the run's validation split is "
                              "needed: it is never chosen on the images it is judged on)"}
    point = choose_threshold(pool.labels[val], reference_pool_probs[val][:, positive], positive, data.classes,
                             config.target_sensitivity, f"the run's validation split ({int(val.sum())} images)")
    if point is None:
        return None, {**base, "threshold": None,
                      "note": "the validation images lack positives or negatives: no threshold can be chosen"}
    return point, point.as_dict()


def _argmax(probabilities: np.ndarray | None) -> np.ndarray:
    return probabilities.argmax(1) if probabilities is not None and len(probabilities) else np.zeros(0, np.int64)


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB): ru_maxrss is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def device_of(runtime: str, provider: str) -> str:
    """What executed a row, in words: the CPU and the instruction sets its int8 kernels use, for ONNX Runtime's
    CPU provider (and Keras without a GPU), else the GPU the CUDA driver reports as device 0."""
    gpu = gpu_status()
    on_cpu = provider == "CPUExecutionProvider" or (runtime == "keras" and not gpu.usable)
    if on_cpu:
        sets = int8_instructions()
        return f"CPU: {machine_info()['processor']}" + (f" ({', '.join(sets)})" if sets else "")
    capability = f" (compute capability {gpu.compute_capability})" if gpu.compute_capability else ""
    driver = f", driver {gpu.driver_version}" if gpu.driver_version else ""
    return f"GPU: {gpu.name or 'unknown'}{capability}{driver}"


#: the libraries that execute each runtime's rows (beside edgexfer's own version)
_RUNTIME_LIBRARIES = {"keras": ("tensorflow", "keras"), "trt": ("tensorrt", "cuda-python")}


def runtime_versions(runtime: str) -> dict[str, str | None]:
    """The versions a row ran on: edgexfer and the runtime's libraries (ONNX Runtime, whichever wheel)."""
    if runtime.startswith("ort-"):
        return {"edgexfer": library_versions(("edgexfer",))["edgexfer"], "onnxruntime": onnxruntime_version()}
    names = ("edgexfer", *_RUNTIME_LIBRARIES.get(runtime, ()))
    return {name: version for name, version in library_versions(names).items() if name != "python"}


def machine_record() -> dict[str, Any]:
    info: dict[str, Any] = dict(machine_info())
    info["cpu"] = info.get("processor")
    info["cores_usable"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["gpu"] = gpu_status().as_dict()
    info["libraries"] = library_versions()
    return info

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
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.contracts.bench import SCHEMA, BenchRow, is_bench_dir, write_results
from edgexfer.contracts.run import read_sanity as read_run_sanity
from edgexfer.errors import EdgexferError, GateFailed
from edgexfer.evaluate.bench_data import BenchData, load_bench_data
from edgexfer.evaluate.exported import ExportDir, load_export
from edgexfer.evaluate.gate import (
    Breach,
    ModelCheck,
    Thresholds,
    breach_table,
    check_floors,
    check_gate,
    check_model,
    model_breach,
)
from edgexfer.evaluate.latency import end_to_end_ms, make_batch, summarize, time_runtime
from edgexfer.evaluate.metrics import agreement, classification_metrics
from edgexfer.io import lock_folder
from edgexfer.runtime import RUNTIMES, Artifact, RuntimeKind, select_runtimes

#: how latency is measured, recorded in results.json and said in report.md
LATENCY_METHOD = ("one ONNX Runtime session (or engine, or OpenVINO compiled model) at a time: each artifact's session is built, measured "
                  "and closed before the next is built, so no idle thread pool of another session competes "
                  "for the cores while the clock runs, as on a device that serves one model")


@dataclass
class BenchConfig:
    """Options of `edgexfer bench` (one field per CLI option)."""

    export_dir: Path
    out: Path | None = None  # default: benchmarks/<export name>
    data: Path | None = None  # default: the run's test split
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
        if not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes):
            raise EdgexferError(f"batch sizes {list(self.batch_sizes)} must be positive integers", "e.g. --batch-sizes 1,8,32")
        self.batch_sizes = tuple(sorted({int(b) for b in self.batch_sizes}))
        if self.iterations < 1 or self.warmup < 0:
            raise EdgexferError("--iterations must be at least 1 and --warmup at least 0", "e.g. --warmup 10 --iterations 50")
        if self.threads is not None and self.threads < 1:
            raise EdgexferError(f"--threads {self.threads} must be at least 1", "leave it out for the library default")
        if isinstance(self.thresholds, dict):
            self.thresholds = Thresholds(**self.thresholds)
        if not isinstance(self.thresholds, Thresholds):
            raise EdgexferError(f"thresholds {self.thresholds!r} are not a Thresholds", "pass edgexfer.evaluate.gate.Thresholds")


@dataclass
class BenchOutcome:
    results: dict[str, Any]
    out_dir: Path
    breaches: list[Breach]
    model_check: ModelCheck | None = None

    @property
    def passed(self) -> bool:
        return not self.breaches


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


def default_bench_dir(export: ExportDir) -> Path:
    return Path("benchmarks") / export.name


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
    """Run the bench; write results.json, report.md, plots/; raise GateFailed (exit 1) if the gate broke.

    The error (``BenchGateFailed``) carries ``.table`` (what broke, as text) and ``.outcome``.
    """
    log = config.log or (lambda line: print(line, file=sys.stderr))
    export = load_export(config.export_dir)
    config.thresholds.check_classes(export.classes)
    out_dir = Path(config.out or default_bench_dir(export))
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
        return _run_locked(config, export, out_dir, jobs, skipped, log)
    finally:
        lock.release()


def _run_locked(config: BenchConfig, export: ExportDir, out_dir: Path, jobs: list[_Job],
                skipped: list[dict[str, str]], log: Callable[[str], None]) -> BenchOutcome:
    for entry in skipped:
        log(f"skipped {entry['runtime']}{' / ' + entry['artifact'] if entry.get('artifact') else ''}: {entry['reason']}")
    data = load_bench_data(export, config.data, progress=config.progress)

    rows: list[BenchRow] = []
    probabilities: dict[tuple[str, str], np.ndarray] = {}
    reference_key: tuple[str, str] | None = None
    for job in jobs:
        row, probs = _bench_one(job, export, data, config)
        gc.collect()  # the session is closed: free it now, before the next one is built and timed
        key = (job.artifact.name, job.kind.name)
        probabilities[key] = probs
        if reference_key is None and job.artifact.name == "fp32":
            reference_key = key
        rows.append(row)
    assert reference_key is not None  # _plan puts an FP32 job first

    from edgexfer.evaluate.stats import resolution_warnings

    sanity = read_sanity(export)  # about the model itself, whatever images it is measured on
    breaches, model = _compare_and_gate(rows, probabilities, reference_key, config.thresholds, data, sanity)
    warnings = resolution_warnings(data.description.get("class_counts") or {}, len(data.labels),
                                   config.thresholds.max_accuracy_drop, config.thresholds.max_recall_drop)
    for line in warnings:
        log(f"warning: {line}")
    results = {
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "export": {"path": str(export.path), "name": export.name, "source_run": export.manifest["source_run"]},
        "reference": "fp32",
        "reference_runtime": reference_key[1],
        "thresholds": config.thresholds.as_dict(),
        "model_check": model.as_dict(),
        "statistics": {"intervals": "Wilson score, 95% (statsmodels proportion_confint)",
                       "paired_test": "McNemar's exact test against FP32 on the same images (statsmodels mcnemar)",
                       "resolution_warnings": warnings},
        "settings": {"batch_sizes": list(config.batch_sizes), "warmup": config.warmup,
                     "iterations": config.iterations, "threads": config.threads,
                     "end_to_end_images": min(config.end_to_end_images, len(data.refs)),
                     "inputs": "host memory (decoded, resized uint8 NHWC); end_to_end_ms adds decode + resize",
                     "latency_method": LATENCY_METHOD},
        "machine": machine_record(),
        "data": data.description,
        "skipped": skipped,
        "results": rows,
    }
    from edgexfer.report.bench_report import write_bench_report

    write_results(out_dir, results)
    results = {"schema": SCHEMA, **results, "results": [r.to_dict() for r in rows]}
    write_bench_report(results, out_dir)
    outcome = BenchOutcome(results, out_dir, breaches, model)
    if breaches:
        broken = sorted({f"{b.artifact} on {b.runtime}" for b in breaches})
        if not model.usable:
            problem = f"accuracy gate failed: the model itself is not usable ({model.reason})"
            fix = f"fine-tune a model that learns (see the run's metrics.json) before exporting; {out_dir / 'report.md'}"
        else:
            problem = f"accuracy gate failed for {', '.join(broken)} ({len(breaches)} threshold(s) broken)"
            fix = f"see the table above and {out_dir / 'report.md'}"
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


def _bench_one(job: _Job, export: ExportDir, data: BenchData, config: BenchConfig) -> tuple[BenchRow, np.ndarray]:
    from tqdm.auto import tqdm

    label = f"{job.artifact.name} on {job.kind.name}"
    with job.kind.open(job.artifact, config.threads) as runtime:
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
        threads=config.threads,
        execution=execution,
    )
    return row, probs


def _compare_and_gate(rows: list[BenchRow], probabilities: dict[tuple[str, str], np.ndarray],
                      reference_key: tuple[str, str], thresholds: Thresholds, data: BenchData,
                      sanity: dict[str, Any] | None) -> tuple[list[Breach], ModelCheck]:
    """Agreement with FP32, intervals, the paired test and the gate: each row against FP32 on its own runtime
    when that ran, else the global FP32 reference (the first runtime that ran FP32, ONNX Runtime CPU by
    default); absolute floors for every row; and every row fails when the FP32 model itself is not usable."""
    from edgexfer.evaluate.stats import confidence_intervals, flips_by_metric, mcnemar_exact

    by_key = {r.key: r for r in rows}
    labels = data.labels
    model = check_model(by_key[reference_key].metrics(), sanity)
    breaches: list[Breach] = []
    for row in rows:
        key = row.key
        ref_key = ("fp32", row.runtime) if ("fp32", row.runtime) in by_key else reference_key
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
        if not is_reference:
            found += check_gate(ref_metrics, row.metrics(), thresholds, artifact=row.artifact,
                                precision=row.precision, runtime=row.runtime, flips=flips)
        found += check_floors(row.metrics(), thresholds, reference=ref_metrics, artifact=row.artifact,
                              precision=row.precision, runtime=row.runtime,
                              flips=None if is_reference else flips)
        if not model.usable:
            found.insert(0, model_breach(model, artifact=row.artifact, precision=row.precision,
                                         runtime=row.runtime))
        row.gate = {"passed": not found, "reasons": [b.reason() for b in found],
                    "breaches": [b.__dict__ for b in found]}
        if is_reference:
            row.gate["reference"] = True
        breaches += found
    return breaches, model


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB): ru_maxrss is KiB on Linux, bytes on macOS."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def machine_record() -> dict[str, Any]:
    from edgexfer.runtime.cuda import gpu_status
    from edgexfer.versions import library_versions, machine_info

    info: dict[str, Any] = dict(machine_info())
    info["cpu"] = info.get("processor")
    info["cores_usable"] = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info["gpu"] = gpu_status().as_dict()
    info["libraries"] = library_versions()
    return info

"""What ``edgexfer bench`` does, in order: its options checked against the export before any work, the
folder locked, every job measured, the gate, results.json and the report written, then the verdict."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

from edgexfer._folders import refuse_overlap, sweep_stale
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.bench.config import (
    BenchConfig,
    check_bench_out,
    check_recorded_point,
    default_bench_dir,
)
from edgexfer.evaluate.bench.judge import choose_point, judge_rows, read_sanity
from edgexfer.evaluate.bench.measure import measure_jobs
from edgexfer.evaluate.bench.outcome import BenchOutcome, raise_unless_passed
from edgexfer.evaluate.bench.plan import BenchJob, plan_jobs
from edgexfer.evaluate.bench.results import results_record, write_bench
from edgexfer.evaluate.bench_data import load_agreement_pool, load_bench_data
from edgexfer.evaluate.exported import ExportDir, load_export
from edgexfer.evaluate.operating_point import positive_index
from edgexfer.evaluate.stats import resolution_warnings
from edgexfer.io import lock_folder
from edgexfer.limits import check_batch_fits
from edgexfer.runtime import select_runtimes


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
    plan = plan_jobs(export, kinds, explicit=config.runtimes is not None)
    skipped += plan.skipped
    if not any(job.artifact.name == "fp32" for job in plan.jobs):
        raise EdgexferError(f"export {export.path} has no FP32 ONNX artifact that a runtime here can run, and every "
                            "precision is judged against it", "re-export with FP32 and include ort-cpu in --runtimes")
    lock = lock_folder(out_dir, "edgexfer bench")
    try:
        check_bench_out(out_dir)  # another bench may have written it while we waited for nothing: check again
        sweep_stale(out_dir)  # what a killed bench left (an old bench folder a kill left aside is put back)
        return _run_locked(config, export, out_dir, plan.jobs, skipped, log)
    finally:
        lock.release()


def _run_locked(config: BenchConfig, export: ExportDir, out_dir: Path, jobs: list[BenchJob],
                skipped: list[dict[str, str]], log: Callable[[str], None]) -> BenchOutcome:
    for entry in skipped:
        log(f"skipped {entry['runtime']}{' / ' + entry['artifact'] if entry.get('artifact') else ''}: {entry['reason']}")
    data = load_bench_data(export, config.data, progress=config.progress)
    pool = load_agreement_pool(export, data, config.data, config.unlabeled, progress=config.progress)
    measured = measure_jobs(jobs, export, data, config, pool)

    sanity = read_sanity(export)  # about the model itself, whatever images it is measured on
    point = choose_point(config, export, data, pool, measured.pool_predictions[measured.reference_key])
    gate = judge_rows(measured, config.thresholds, data, sanity, pool, point.point)
    warnings = resolution_warnings(data.description.get("class_counts") or {}, len(data.labels),
                                   config.thresholds.max_accuracy_drop, config.thresholds.max_recall_drop)
    for line in warnings:
        log(f"warning: {line}")
    results = results_record(config, export, data, pool, measured, gate, point, warnings, skipped)
    results = write_bench(out_dir, results, measured.rows)
    return raise_unless_passed(BenchOutcome(results, out_dir, gate.breaches, gate.model_check, gate.undecided))

"""Running one artifact on one runtime: its accuracy and probabilities (labelled images and the agreement
pool), its latency at each batch size, the memory its session cost, and the row that records it (with the
bytes it judged, the device and the versions)."""

from __future__ import annotations

import functools
import gc
import resource
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edgexfer.contracts.bench import BenchRow
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.bench.config import BenchConfig
from edgexfer.evaluate.bench.plan import BenchJob
from edgexfer.evaluate.bench_data import AgreementPool, BenchData
from edgexfer.evaluate.exported import ExportDir
from edgexfer.evaluate.latency import end_to_end_ms, make_batch, summarize, time_runtime
from edgexfer.evaluate.memory import SessionMemory
from edgexfer.evaluate.metrics import classification_metrics
from edgexfer.io import sha256_file
from edgexfer.runtime import gpu_status
from edgexfer.versions import int8_instructions, library_versions, machine_info, onnxruntime_version

#: how latency is measured, recorded in results.json and said in report.md
LATENCY_METHOD = ("one ONNX Runtime session (or engine, or OpenVINO compiled model) at a time: each artifact's session is built, measured "
                  "and closed before the next is built, so no idle thread pool of another session competes "
                  "for the cores while the clock runs, as on a device that serves one model")


@dataclass
class Measured:
    """What one job measured: its row, and its probabilities on the labelled images and on the agreement
    pool's other images."""

    row: BenchRow
    probabilities: np.ndarray
    pool_probabilities: np.ndarray


@dataclass
class Measurements:
    """Every job's row (in the order they ran) and probabilities, keyed (artifact, runtime); ``reference_key``
    is the FP32 row every other row is judged against (FP32 on the first runtime that ran it)."""

    rows: list[BenchRow]
    probabilities: dict[tuple[str, str], np.ndarray]
    pool_predictions: dict[tuple[str, str], np.ndarray]
    reference_key: tuple[str, str]


def measure_jobs(jobs: Sequence[BenchJob], export: ExportDir, data: BenchData, config: BenchConfig,
                 pool: AgreementPool) -> Measurements:
    """Every job in turn, one session alive at a time; the plan puts an FP32 job first."""
    rows: list[BenchRow] = []
    probabilities: dict[tuple[str, str], np.ndarray] = {}
    pool_predictions: dict[tuple[str, str], np.ndarray] = {}
    reference_key: tuple[str, str] | None = None
    for job in jobs:
        measured = bench_one(job, export, data, config, pool)
        gc.collect()  # the session is closed: free it now, before the next one is built and timed
        key = (job.artifact.name, job.kind.name)
        probabilities[key] = measured.probabilities
        pool_predictions[key] = measured.pool_probabilities
        if reference_key is None and job.artifact.name == "fp32":
            reference_key = key
        rows.append(measured.row)
    assert reference_key is not None  # plan_jobs puts an FP32 job first
    return Measurements(rows, probabilities, pool_predictions, reference_key)


def bench_one(job: BenchJob, export: ExportDir, data: BenchData, config: BenchConfig,
              pool: AgreementPool | None = None) -> Measured:
    """One artifact on one runtime: its row, its probabilities on the labelled images, and on ``pool``'s."""
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
    return Measured(row, probs, pool_probs)


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

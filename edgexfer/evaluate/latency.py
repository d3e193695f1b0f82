"""Latency of a runtime: warm-up, then timed iterations per batch size.

Inputs are already in host memory (decode and resize happen before the clock); the end-to-end
figure (``end_to_end_ms``) adds decode + resize of one image file. GPU runtimes synchronize inside
``Runtime.predict`` before its clock stops, so every figure is wall time of finished work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

from edgexfer.runtime.base import Runtime


def summarize(times_ms: Sequence[float], batch_size: int) -> dict[str, float]:
    """p50/p90/p99/mean/min/max/std of per-batch times (ms) and throughput in images per second."""
    t = np.asarray(times_ms, dtype=np.float64)
    if t.size == 0:
        raise ValueError("no timings to summarize")
    p50, p90, p99 = np.percentile(t, [50, 90, 99])
    mean = float(t.mean())
    return {
        "p50": float(p50),
        "p90": float(p90),
        "p99": float(p99),
        "mean": mean,
        "min": float(t.min()),
        "max": float(t.max()),
        "std": float(t.std()),
        "n": int(t.size),
        # images per second at the median batch time: robust to a few slow outliers
        "throughput_ips": float(batch_size * 1000.0 / p50) if p50 > 0 else float("inf"),
    }


def make_batch(images: np.ndarray, batch_size: int) -> np.ndarray:
    """A batch of ``batch_size`` real images (repeated when the data set holds fewer)."""
    if len(images) == 0:
        raise ValueError("no images to build a batch from")
    index = np.arange(batch_size) % len(images)
    return np.ascontiguousarray(images[index])


def time_runtime(
    runtime: Runtime,
    batch: np.ndarray,
    warmup: int = 10,
    iterations: int = 50,
    progress: Callable[[Iterable[int]], Iterable[int]] | None = None,
) -> list[float]:
    """Per-call times (ms) of ``runtime.predict(batch)`` after ``warmup`` untimed calls."""
    for _ in range(max(0, warmup)):
        runtime.predict(batch)
    loop: Iterable[int] = range(max(1, iterations))
    if progress is not None:
        loop = progress(loop)
    times = []
    for _ in loop:
        runtime.predict(batch)
        times.append(runtime.last_latency_ms)
    return times


def end_to_end_ms(runtime: Runtime, load: Callable[[Any], np.ndarray], refs: Sequence[Any],
                  warmup: int = 2) -> dict[str, float]:
    """Mean/p50 ms for one image from its file: decode + resize (``load``) + predict at batch 1."""
    if not refs:
        return {}
    for ref in list(refs)[:warmup]:
        runtime.predict(load(ref)[None])
    times = []
    for ref in refs:
        start = time.perf_counter()
        runtime.predict(load(ref)[None])
        times.append((time.perf_counter() - start) * 1000.0)
    t = np.asarray(times)
    return {"p50": float(np.percentile(t, 50)), "mean": float(t.mean()), "n": int(t.size)}

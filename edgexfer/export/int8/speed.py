"""Last step of the INT8 stage (target ``cpu``): does INT8 run faster than FP32 on the exporting machine?

Timing on shared cores is noisy: on one machine the same demo export measured INT8 at 0.79x FP32 in one run and
1.41x in the next, while the bench of the same run measured 1.3x. So the check measures in interleaved rounds
(FP32, INT8, FP32, INT8, …), each session alone (an idle session's spinning threads would slow the other), keeps
every round's ratio, and states the spread. It advises against INT8 only when INT8 was slower in every round
(the whole range below 1); anything else is left to the bench, which measures on the test images at every batch
size. The check never changes what is written.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgexfer.runtime.ort_runtime import OrtRuntime

#: INT8 must run at least this much faster than FP32 in every round to be called worth it here
INT8_PAYS_AT = 1.2
SLOWER_ADVICE = "INT8 was slower than FP32 in every round here: use FP32/FP16 on this CPU"


@dataclass(frozen=True)
class SpeedCheck:
    """Per-round median latencies at batch 1 and the INT8 speed-up of each round (FP32 ms / INT8 ms)."""

    fp32_ms: tuple[float, ...]
    int8_ms: tuple[float, ...]
    threads: int

    @property
    def ratios(self) -> tuple[float, ...]:
        return tuple(f / i if i > 0 else float("inf") for f, i in zip(self.fp32_ms, self.int8_ms, strict=True))

    @property
    def verdict(self) -> str:
        """``pays`` (at least `INT8_PAYS_AT` in every round), ``slower`` (below 1 in every round), else ``unclear``."""
        return speed_verdict(self.ratios)

    @property
    def advice(self) -> str | None:
        return SLOWER_ADVICE if self.verdict == "slower" else None

    def record(self) -> dict[str, Any]:
        ratios = self.ratios
        return {"batch": 1, "threads": self.threads, "rounds": len(ratios),
                "fp32_p50_ms": round(float(np.median(self.fp32_ms)), 3),
                "int8_p50_ms": round(float(np.median(self.int8_ms)), 3),
                "speedup": round(float(np.median(ratios)), 3),
                "speedup_range": [round(min(ratios), 3), round(max(ratios), 3)],
                "verdict": self.verdict, "pays": self.verdict == "pays", "advice": self.advice,
                "measured": "ONNX Runtime CPU provider, interleaved rounds, each session alone, on the machine "
                            "that exported; the bench decides"}

    def line(self) -> str:
        low, high = min(self.ratios), max(self.ratios)
        text = (f"runs {float(np.median(self.ratios)):.2f}x FP32 here at batch 1 "
                f"({low:.2f}-{high:.2f}x over {len(self.ratios)} interleaved rounds)")
        if self.advice:
            return f"{text}: {self.advice}"
        return text + ("" if self.verdict == "pays" else "; the bench will measure it on the test images")


def speed_verdict(ratios: Sequence[float]) -> str:
    """``slower`` only when every round's ratio is below 1, ``pays`` only when every one reaches
    `INT8_PAYS_AT`; a range that straddles either line is ``unclear``."""
    if max(ratios) < 1.0:
        return "slower"
    if min(ratios) >= INT8_PAYS_AT:
        return "pays"
    return "unclear"


def cpu_speed_check(fp32_path: str | os.PathLike[str], int8_path: str | os.PathLike[str], image: np.ndarray, *,
                    iterations: int = 10, warmup: int = 2, rounds: int = 5) -> SpeedCheck:
    """Time FP32 and INT8 at batch 1 on this machine's CPU in ``rounds`` interleaved rounds, one session alive at
    a time; each round keeps the median of ``iterations`` calls after ``warmup``."""
    batch = np.ascontiguousarray(image[:1], dtype=np.float32)
    threads = len(os.sched_getaffinity(0))
    medians: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(rounds):
        for name, path in (("fp32", fp32_path), ("int8", int8_path)):
            with OrtRuntime(path, threads=threads) as runtime:
                for _ in range(warmup):
                    runtime.predict(batch)
                times = []
                for _ in range(iterations):
                    runtime.predict(batch)
                    times.append(runtime.last_latency_ms)
            medians[name].append(float(np.median(times)))
    return SpeedCheck(tuple(medians["fp32"]), tuple(medians["int8"]), threads)

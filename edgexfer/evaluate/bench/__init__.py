"""`edgexfer bench`: accuracy per artifact × runtime, the gate against FP32, latency on this machine.

The bench knows runtimes only through ``edgexfer.runtime.RUNTIMES`` (available / supports / open):
nothing here is backend-specific. It writes ``results.json``, ``report.md`` and ``plots/`` in the
bench directory (docs/contracts.md section 6) before it raises ``GateFailed`` on a broken gate.

The parts, each its own module under this package (this package's names are the public surface):

* ``config``: what bench is asked (``BenchConfig``) and the checks of it made before any work;
* ``plan``: which artifact runs on which runtime, FP32 first (``plan_jobs``, ``BenchJob``);
* ``measure``: one artifact on one runtime: probabilities, latency, memory, its row (``bench_one``,
  ``Measurements``);
* ``judge``: every row against the FP32 reference, at the operating point (``judge_rows``, ``GateResult``);
* ``outcome``: the verdict and the errors that carry it (``BenchOutcome``, ``BenchGateFailed``,
  ``BenchGateInconclusive``);
* ``results``: results.json's record and the bench folder written whole;
* ``run``: what ``edgexfer bench`` does, in order (``run_bench``).
"""

from __future__ import annotations

from edgexfer.evaluate.bench.config import BenchConfig
from edgexfer.evaluate.bench.outcome import (
    BenchGateFailed,
    BenchGateInconclusive,
    BenchOutcome,
    BenchVerdictError,
)
from edgexfer.evaluate.bench.run import run_bench

__all__ = ["BenchConfig", "BenchGateFailed", "BenchGateInconclusive", "BenchOutcome", "BenchVerdictError", "run_bench"]

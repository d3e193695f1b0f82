"""Step 5 of the INT8 stage: the calibration method, then the accuracy-driven fallback rounds.

Round 0 quantizes every node with the first method; under ``auto``, when its agreement with FP32 does not settle
the bar, the other methods are tried too and the one that agrees on most images goes on. Each later round keeps
in float the next nodes that lose the most signal (`edgexfer.export.int8.sensitivity`) on top of the best round's,
and is kept only when it agrees on more images than the best so far: a round that does worse is recorded and
dropped, and the following round tries the next nodes of the same ranking instead. The rounds stop as soon as
the bar is met with evidence (the whole Wilson interval at or above it), when every judging image agrees (no
float node can do better), when no node loses signal, or after ``max_rounds``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

import edgexfer.export.int8.nncf_quantize as nncf_quantize
from edgexfer.contracts.layers import KeptNode
from edgexfer.export.int8.agreement import Agreement, JudgingImages, judge
from edgexfer.export.int8.calibrate import calibration_batches
from edgexfer.export.int8.quantize import quantize
from edgexfer.export.int8.sensitivity import NodeLoss, node_sensitivity
from edgexfer.runtime.ort_runtime import predict_onnx


class Stages(Protocol):
    """Where the export records the wall time of each step (``edgexfer.export.pipeline.Timeline``)."""

    def stage(self, name: str) -> contextlib.AbstractContextManager[None]: ...


@dataclass(frozen=True)
class Candidate:
    """One quantized model: its file, method, the nodes kept in float and how it agrees with FP32."""

    path: Path
    method: str
    kept: tuple[KeptNode, ...]
    settings: dict[str, Any]
    agreement: Agreement


@dataclass(frozen=True)
class Round:
    """One fallback round: ``nodes`` it put in float on top of the best round's, ``kept`` when it became the best."""

    number: int
    method: str
    excluded: int
    agreement: Agreement
    kept: bool
    nodes: tuple[str, ...] = ()

    def record(self) -> dict[str, Any]:
        return {"round": self.number, "method": self.method, "excluded": self.excluded, "nodes": list(self.nodes),
                "agreement": self.agreement.rate, "agreed": self.agreement.agreed, "n": self.agreement.n,
                "interval": [round(v, 4) for v in self.agreement.interval],
                "max_abs_diff": self.agreement.max_abs_diff, "kept": self.kept}


@dataclass(frozen=True)
class FallbackResult:
    chosen: Candidate
    methods: tuple[tuple[str, Agreement], ...]
    rounds: tuple[Round, ...]
    bar: float
    max_rounds: int
    stopped: str

    @property
    def outcome(self) -> str:
        """The chosen model against the bar: ``met``, ``missed`` or ``inconclusive`` (`Agreement.against`)."""
        return self.chosen.agreement.against(self.bar)

    def record(self) -> dict[str, Any]:
        return {"min_agreement": self.bar, "max_rounds": self.max_rounds, "passed": self.outcome == "met",
                "outcome": self.outcome, "stopped": self.stopped,
                "methods": [{"method": m, "agreement": a.rate, "agreed": a.agreed, "n": a.n,
                             "max_abs_diff": a.max_abs_diff} for m, a in self.methods],
                "rounds": [r.record() for r in self.rounds]}


@dataclass(frozen=True)
class Quantizer:
    """Quantizes the pre-processed FP32 graph with some nodes kept in float and judges the result. ``kind``: who
    quantizes, ``edgexfer`` (ONNX Runtime's ``quantize_static`` on our ranges, calibrated once per method and cached
    in ``work``) or ``nncf`` (`edgexfer.export.int8.nncf_quantize`, the nodes kept in float as its ignored scope)."""

    float_path: Path
    work: Path
    calset: Any
    target: str
    judging: JudgingImages
    batch_size: int
    timeline: Stages
    progress: bool = False
    kind: str = "edgexfer"

    def attempt(self, method: str, kept: Sequence[KeptNode], label: str) -> Candidate:
        label = label if self.kind == "edgexfer" else f"{self.kind}_{label}"
        path, ranges = self.work / f"int8_{label}.onnx", self.work / f"ranges_{method}.json"
        excluded = [k.name for k in kept]
        with self.timeline.stage(f"int8_quantize_{label}"):
            if self.kind == nncf_quantize.NAME:
                batches = calibration_batches(self.calset, self.batch_size, progress=self.progress,
                                              desc="INT8 calibration (NNCF)")
                settings = nncf_quantize.quantize_nncf(self.float_path, path, images=batches,
                                                       subset_size=self.calset.size, target=self.target,
                                                       nodes_to_exclude=excluded)
            else:
                batches = calibration_batches(self.calset, self.batch_size,
                                              progress=self.progress and not ranges.is_file(),
                                              desc=f"INT8 calibration ({method})")
                settings = quantize(self.float_path, path, reader=batches, target=self.target, method=method,
                                    nodes_to_exclude=excluded, cache_path=ranges)
        with self.timeline.stage(f"int8_check_{label}"):
            agreement = judge(self.judging, predict_onnx(path, self.judging.images, self.batch_size))
        return Candidate(path, method, tuple(kept), settings, agreement)

    def ranking(self, candidate: Candidate, sample: np.ndarray, round_no: int) -> list[NodeLoss]:
        with self.timeline.stage(f"int8_sensitivity_round{round_no}"):
            return node_sensitivity(self.float_path, candidate.path, sample, skip=[k.name for k in candidate.kept])


def settled(agreement: Agreement, bar: float) -> str | None:
    """Why no more rounds are needed, or None."""
    if agreement.against(bar) == "met":
        return "the bar is met with evidence"
    if agreement.agreed == agreement.n:
        return "every judging image agrees"
    return None


def choose_method(quantizer: Quantizer, methods: Sequence[str], bar: float,
                  say: Callable[[str], None]) -> tuple[Candidate, tuple[tuple[str, Agreement], ...]]:
    """Round 0 with ``methods[0]``; the others only while none settles the bar. The one agreeing on most images
    wins (the earlier on ties)."""
    best = quantizer.attempt(methods[0], (), "round0")
    say(f"INT8 ({quantizer.target}, {methods[0]}) round 0: agreement with FP32 {best.agreement.text()}")
    tried = [(methods[0], best.agreement)]
    for other in methods[1:]:
        if settled(best.agreement, bar):
            break
        alt = quantizer.attempt(other, (), f"{other}_round0")
        say(f"INT8 ({quantizer.target}, {other}) round 0: agreement with FP32 {alt.agreement.text()}")
        tried.append((other, alt.agreement))
        if alt.agreement.better_than(best.agreement):
            best = alt
    return best, tuple(tried)


def run_fallback(quantizer: Quantizer, methods: Sequence[str], *, bar: float, max_rounds: int, nodes_per_round: int,
                 sample: np.ndarray, say: Callable[[str], None]) -> FallbackResult:
    best, tried = choose_method(quantizer, methods, bar, say)
    rounds = [Round(0, best.method, 0, best.agreement, True)]
    ranking: list[NodeLoss] | None = None
    given_up: set[str] = set()  # nodes of rounds that did not help: the next round tries the next ones
    stopped = settled(best.agreement, bar)
    for number in range(1, max_rounds + 1):
        if stopped:
            break
        if ranking is None:
            ranking = quantizer.ranking(best, sample, number)
        fresh = [r for r in ranking if r.sqnr_drop_db > 0 and r.name not in given_up][:nodes_per_round]
        if not fresh:
            stopped = "no other node loses signal"
            break
        reason = f"round {number}: agreement {best.agreement.text()} does not meet the {bar * 100:g}% bar"
        kept = best.kept + tuple(KeptNode(r.name, r.op_type, f"{reason}; quantizing it lost {r.sqnr_drop_db:.1f} dB SQNR",
                                          r.sqnr_drop_db, number) for r in fresh)
        candidate = quantizer.attempt(best.method, kept, f"round{number}")
        improved = candidate.agreement.better_than(best.agreement)
        say(f"INT8 ({quantizer.target}, {best.method}) round {number}: {len(kept)} node(s) in float, agreement "
            f"{candidate.agreement.text()}" + ("" if improved else ": no better, dropped"))
        rounds.append(Round(number, best.method, len(kept), candidate.agreement, improved, tuple(r.name for r in fresh)))
        if improved:
            best, ranking = candidate, None
        else:
            given_up.update(r.name for r in fresh)
        stopped = settled(best.agreement, bar)
    return FallbackResult(best, tried, tuple(rounds), bar, max_rounds,
                          stopped or f"{max_rounds} round(s) done without meeting the bar")


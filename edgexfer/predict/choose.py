"""Which (artifact, runtime) pair answers: :func:`choose_artifact` over an export and its bench evidence.

``precision="auto"`` takes what the bench recommends (results.json's ``recommended``: the fastest artifact whose
gate passed, across runtimes and precisions) when its bytes are the ones on disk and its runtime can serve here, so
bench, predict and package name the same pair; otherwise the fastest artifact whose gate passed on the runtimes at
hand, and the reason says why the bench's pick was not taken. An artifact whose gate failed, or whose bytes the
results did not judge, is refused unless ``allow_failed=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from edgexfer.errors import EdgexferError
from edgexfer.evaluate.exported import ExportDir
from edgexfer.predict.evidence import BenchEvidence, GateVerdict, bench_again
from edgexfer.runtime import RUNTIMES, Artifact, RuntimeKind, get_runtime

#: bf16: the FP32 file run by OpenVINO with the bf16 precision hint (ov-cpu, on a CPU with native BF16)
PRECISIONS = ("auto", "fp32", "fp16", "int8", "bf16")
#: runtimes a Predictor may use, in the order ``runtime="auto"`` prefers them when no bench timing decides
#: (Keras needs TensorFlow)
PREDICT_RUNTIMES = ("trt", "ort-trt", "ort-cuda", "ort-cpu", "ov-cpu")


@dataclass(frozen=True)
class Choice:
    """The artifact and runtime chosen to answer, and why."""

    artifact: Artifact
    runtime: RuntimeKind
    verdict: GateVerdict
    reason: str

    def why(self) -> str:
        """``reason`` without the "<artifact> on <runtime>: " it may start with (for a line that names them)."""
        return self.reason.removeprefix(f"{self.artifact.name} on {self.runtime.name}: ")

    def line(self) -> str:
        """One line for the console: what answers (its precision only where its name does not say it), then
        why, without naming the pair a second time."""
        a = self.artifact
        head = f"{a.name} on {self.runtime.name}" + ("" if a.precision == a.name else f" ({a.precision})")
        return f"{head}: {self.why()}"


def choose_artifact(export: ExportDir, precision: str = "auto", runtime: str = "auto", *,
                    evidence: BenchEvidence | None = None, allow_failed: bool = False,
                    check_available: bool = True, prefer: Sequence[str] = PREDICT_RUNTIMES) -> Choice:
    """Pick the (artifact, runtime) pair to serve.

    Verdicts are matched to the artifacts' bytes (``BenchEvidence.verdict``: the manifest's sha256, which
    ``load_export`` checked against the files). ``precision`` "auto": the bench's ``recommended`` pair when its
    sha256 is the file's and its runtime is among the runtimes at hand (usable here when ``check_available``),
    else the fastest pair whose gate passed in ``evidence``, the reason saying why the bench's pick was not
    taken; without evidence, the FP32 reference. A named precision: that artifact, refused when its
    gate failed or when the results judged other bytes of it (``allow_failed`` lets both through). Whenever
    results name an artifact whose bytes they did not judge, the reason says so in one line. ``runtime``
    "auto": every runtime usable here (``check_available``), fastest benched first, else in the order of
    ``prefer`` (trt, ort-trt, ort-cuda, ort-cpu for predictions).
    """
    if precision not in PRECISIONS:
        raise EdgexferError(f"unknown precision '{precision}'", f"choose from: {', '.join(PRECISIONS)}")
    kinds = _runtime_kinds(runtime, check_available)
    pairs = [(a, k) for k in kinds for a in export.artifacts
             if k.supports(a) and (precision == "auto" or a.precision == precision)]
    not_derived: list[str] = []
    for k in kinds:  # artifacts a runtime derives from the export's files (OpenVINO's bf16) run on it alone
        derived = k.derive(export.artifacts)
        pairs += [(a, k) for a in derived.artifacts if precision == "auto" or a.precision == precision]
        not_derived += [f"{name} on {k.name}: {reason}" for name, reason in derived.skipped]
    if not pairs:
        what = "artifact" if precision == "auto" else f"{precision} artifact"
        have = ", ".join(f"{a.name} ({a.format})" for a in export.artifacts)
        runtimes = ", ".join(k.name for k in kinds)
        why = f"; {'; '.join(not_derived)}" if not_derived else ""
        fix = ("run bf16 with --runtime ov-cpu on a CPU with native BF16 (pip install 'edgexfer[openvino]')"
               if precision == "bf16" else "choose another --precision or --runtime, or re-export with that precision")
        raise EdgexferError(f"export {export.path} has no {what} that {runtimes} can run (it has {have}){why}", fix)
    rank = {name: i for i, name in enumerate(prefer)}

    def verdict_of(a: Artifact, k: RuntimeKind) -> GateVerdict:
        return evidence.verdict(a, k.name) if evidence else GateVerdict(a.name, k.name, None)

    def speed(item: tuple[Artifact, RuntimeKind, GateVerdict]) -> tuple[float, int, int]:
        a, k, v = item
        order = {"fp32": 0, "fp16": 1, "bf16": 2, "int8": 3}.get(a.precision, 9)
        return (v.latency_ms if v.latency_ms is not None else float("inf"), rank.get(k.name, 99), order)

    judged = [(a, k, verdict_of(a, k)) for a, k in pairs]
    unbound = list(dict.fromkeys(v.unbound for _, _, v in judged if v.unbound))
    not_used = f"; not used: {'; '.join(unbound)}; {bench_again(export)}" if unbound else ""
    if precision == "auto":
        passed = [item for item in judged if item[2].passed]
        if passed and evidence is not None:
            taken, why_not = _recommended(evidence, judged, runtime, check_available, not_derived)
            if taken is not None:
                a, k, v = taken
                return Choice(a, k, v, "the bench's recommendation, the fastest artifact that passed the gate across "
                                       f"runtimes and precisions ({v.describe()}; results {evidence.path})" + not_used)
            a, k, v = min(passed, key=speed)
            return Choice(a, k, v, f"fastest artifact that passed the gate here ({v.describe()}; results "
                                   f"{evidence.path}); not the bench's recommendation: {why_not}" + not_used)
        fp32 = [item for item in judged if item[0].precision == "fp32"]
        safe = [item for item in fp32 if item[2].passed is not False or allow_failed]
        if fp32 and not safe:  # the model itself fails the gate (absolute floors, sanity): nothing is safe
            raise EdgexferError(f"no artifact passed the gate; {fp32[0][2].describe()}",
                                "retrain or re-bench the model, or pass --allow-failed to run it anyway")
        if not safe:
            raise EdgexferError(f"no artifact of export {export.path} passed a bench gate here, and it has no FP32 "
                                "reference to fall back on", "bench the export, or name --precision")
        a, k, v = min(safe, key=speed)
        why = ("no bench results found, so the FP32 reference answers" if evidence is None
               else f"no artifact passed the gate on these runtimes in {evidence.path}, so the FP32 reference answers")
        if v.passed is False:
            why += " (allowed although its gate failed)"
        return Choice(a, k, v, why + not_used)
    usable = [item for item in judged if (item[2].passed is not False and not item[2].unbound) or allow_failed]
    if not usable:
        refused = judged[0][2]
        if refused.unbound:
            raise EdgexferError(refused.unbound, f"{bench_again(export)} (or --allow-failed to run it unverified)")
        raise EdgexferError(f"artifact {refused.describe()} in {evidence.path if evidence else 'the bench'}",
                            "use a precision that passed (e.g. --precision auto), or --allow-failed to run it anyway")
    a, k, v = min(usable, key=lambda item: (item[2].passed is not True, item[2].passed is None, speed(item)))
    note = (" (allowed although it failed)" if v.passed is False
            else " (allowed although unverified)" if v.unbound else "")
    return Choice(a, k, v, v.describe() + note)


def _recommended(evidence: BenchEvidence, judged: Sequence[tuple[Artifact, RuntimeKind, GateVerdict]], runtime: str,
                 check_available: bool, not_derived: Sequence[str]
                 ) -> tuple[tuple[Artifact, RuntimeKind, GateVerdict] | None, str]:
    """The (artifact, runtime, verdict) the bench recommends, when it can be served from these bytes with these
    runtimes; else None and why not (one clause)."""
    rec = evidence.recommended
    if rec is None:
        return None, f"{evidence.path} names none (written before bench recorded one; bench again to record it)"
    named = f"{rec.artifact} on {rec.runtime}"
    for a, k, v in judged:
        if (a.name, k.name) != (rec.artifact, rec.runtime):
            continue
        if rec.sha256 is None or rec.sha256 != a.sha256:
            return None, (f"{named} judged other bytes of {a.path.name} (sha256 {str(rec.sha256)[:8]}…, this one "
                          f"{str(a.sha256)[:8]}…)")
        if v.passed is not True:
            return None, f"{named} has no passing verdict for these bytes ({v.describe()})"
        return (a, k, v), ""
    if rec.runtime not in PREDICT_RUNTIMES:
        return None, f"{named}: edgexfer serves with {', '.join(PREDICT_RUNTIMES)}, not {rec.runtime}"
    if runtime != "auto" and runtime != rec.runtime:
        return None, f"{named}, but --runtime {runtime} was asked for"
    if check_available:
        ok, reason = RUNTIMES[rec.runtime].available()
        if not ok:
            return None, f"{named}, and {rec.runtime} is not usable here: {reason}"
    derived = next((line for line in not_derived if line.startswith(f"{named}: ")), None)
    if derived is not None:
        return None, derived
    return None, f"{named}, and this export has no {rec.artifact} artifact that {rec.runtime} runs"


def _runtime_kinds(runtime: str, check_available: bool) -> list[RuntimeKind]:
    if runtime == "auto":
        kinds = [RUNTIMES[name] for name in PREDICT_RUNTIMES]
        if check_available:
            kinds = [k for k in kinds if k.available()[0]]
        if not kinds:
            raise EdgexferError("no runtime is usable here (ONNX Runtime is missing)",
                                "install edgexfer with its base dependencies (pip install edgexfer)")
        return kinds
    if runtime not in PREDICT_RUNTIMES:
        get_runtime(runtime)  # an unknown name: the runtime table's own message
        raise EdgexferError(f"runtime '{runtime}' cannot serve predictions (it needs TensorFlow)",
                            f"choose from: auto, {', '.join(PREDICT_RUNTIMES)}")
    kind = get_runtime(runtime)
    if check_available:
        ok, reason = kind.available()
        if not ok:
            raise EdgexferError(f"runtime '{runtime}' is not usable here: {reason}",
                                "choose another --runtime (auto picks a usable one)")
    return [kind]

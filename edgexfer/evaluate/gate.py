"""The accuracy gate: each precision against the FP32 ONNX reference of the same export, absolute floors,
and the model's own usability. Three outcomes: pass, fail, inconclusive.

Each relative threshold is a paired non-inferiority decision on the same images as FP32 (``stats``):
- accuracy and the recall (sensitivity) of EVERY class: Tango's score interval of the drop from the images
  FP32 got right and this precision wrong, and the other way round. The interval within the limit: pass;
  above it: fail; straddling it: inconclusive, with how many images (of the class) would decide;
- macro F1: a paired bootstrap interval of its drop; it passes only together with accuracy.
A result fails outright when
- its accuracy, macro F1 or a class's recall is below an absolute floor (``--min-accuracy``,
  ``--min-f1``, ``--min-recall [CLASS=]VALUE``: a pneumonia sensitivity floor is what a clinical user sets);
- the FP32 model itself is not usable: it is shown no better than always answering one class on the test
  images, or the run's sanity record says it learned nothing. Then every precision fails, whatever it does.
  When the test images are too few to tell, every precision is inconclusive instead.

Every threshold is a fraction in [0, 1]; anything else (NaN, infinity, negative, above 1, text) is refused
in one line before any work (`parse_fraction`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from edgexfer.errors import EdgexferError
from edgexfer.evaluate.stats import (
    AGREEMENT_METHOD,
    CONFIDENCE,
    AgreementBound,
    BaselineEvidence,
    PairedDecision,
    baseline_evidence,
    baseline_name,
    decide_drop,
    decide_f1,
    fmt_p,
)

# float noise: a drop equal to the limit passes
_EPS = 1e-9
#: the key of a recall floor that applies to every class
ALL_CLASSES = "*"


def parse_fraction(option: str, value: Any) -> float:
    """``value`` (text or number) as a finite fraction in [0, 1], or one line naming the option (exit 2)."""
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)
    except (TypeError, ValueError):
        raise EdgexferError(f"{option} {value!r} is not a number",
                            "pass a fraction between 0 and 1, e.g. 0.01 for 1 point") from None
    if not math.isfinite(number) or not 0.0 <= number <= 1.0:
        raise EdgexferError(f"{option} {value!r} is not a fraction between 0 and 1",
                            "pass a fraction between 0 and 1, e.g. 0.01 for 1 point")
    return number


def parse_min_recall(values: Iterable[str]) -> tuple[tuple[str, float], ...]:
    """``--min-recall`` values: ``0.9`` (every class) or ``CLASS=0.95`` (one class), repeatable."""
    floors: dict[str, float] = {}
    for raw in values:
        text = str(raw).strip()
        name, sep, number = text.rpartition("=")
        key = name.strip() if sep else ALL_CLASSES
        if sep and not key:
            raise EdgexferError(f"--min-recall {text!r} names no class", "pass CLASS=VALUE or a VALUE for every class")
        floors[key] = parse_fraction(f"--min-recall {key}=" if sep else "--min-recall", number if sep else text)
    return tuple(floors.items())


@dataclass(frozen=True)
class Thresholds:
    """Relative drops against FP32 and absolute floors (None: no floor). Validated on creation."""

    max_accuracy_drop: float = 0.01
    max_f1_drop: float = 0.01
    max_recall_drop: float = 0.02
    min_accuracy: float | None = None
    min_f1: float | None = None
    #: (class, floor) pairs; class ``*`` sets the floor of every class not named
    min_recall: tuple[tuple[str, float], ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        for name in ("max_accuracy_drop", "max_f1_drop", "max_recall_drop", "min_accuracy", "min_f1"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_fraction(f"--{name.replace('_', '-')}", value))
        pairs = self.min_recall.items() if isinstance(self.min_recall, dict) else self.min_recall
        object.__setattr__(self, "min_recall", tuple(
            (str(k), parse_fraction(f"--min-recall {k}=" if k != ALL_CLASSES else "--min-recall", v)) for k, v in pairs))

    def recall_floor(self, class_name: str) -> float | None:
        floors = dict(self.min_recall)
        return floors.get(class_name, floors.get(ALL_CLASSES))

    def check_classes(self, classes: Sequence[str]) -> None:
        """Refuse a ``--min-recall CLASS=`` naming a class the model does not have (exit 2)."""
        unknown = [k for k, _ in self.min_recall if k != ALL_CLASSES and k not in classes]
        if unknown:
            raise EdgexferError(f"--min-recall names unknown class(es) {', '.join(unknown)}",
                                f"the model's classes are: {', '.join(classes)}")

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["min_recall"] = dict(self.min_recall)
        return record


@dataclass(frozen=True)
class Breach:
    """One broken threshold: ``metric`` is accuracy, f1, recall[<class>] or model.

    ``kind`` is ``drop`` (against FP32), ``floor`` (an absolute minimum) or ``model`` (the FP32 model itself
    is not usable). ``lost``/``gained`` count the images behind the figure that flipped against FP32 on the
    same images: FP32 right and this one wrong, and the other way round.
    """

    artifact: str
    precision: str
    runtime: str
    metric: str
    reference: float
    value: float
    drop: float
    limit: float
    #: images behind the drop (net): for recall, cases of that class no longer found
    images: int | None = None
    out_of: int | None = None
    kind: str = "drop"
    lost: int | None = None
    gained: int | None = None
    note: str = ""
    #: the 95% interval of the drop (paired decisions only)
    interval: tuple[float, float] | None = None

    def reason(self) -> str:
        if self.kind == "model":
            return f"the model itself is not usable: {self.note}"
        flips = (f", {self.lost} image(s) FP32 got right now wrong, {self.gained} the other way"
                 if self.lost is not None else "")
        if self.kind == "floor":
            return f"{self.metric} {self.value:.4f} is below the floor {self.limit:.4f}{flips}"
        count = f", {self.images} of {self.out_of} images" if self.images is not None else ""
        shown = (f"; its 95% interval {self.interval[0] * 100:.2f} to {self.interval[1] * 100:.2f} points lies "
                 "above the limit" if self.interval is not None else "")
        return (f"{self.metric} dropped {self.drop * 100:.2f} points "
                f"({self.reference:.4f} -> {self.value:.4f}{count}), limit {self.limit * 100:.2f}{shown}{flips}")


def judge_drops(reference: dict[str, Any], candidate: dict[str, Any], thresholds: Thresholds, *,
                flips: dict[str, tuple[int, int]], f1_interval: tuple[float, float] | None = None,
                agreement: dict[str, AgreementBound] | None = None,
                confidence: float = CONFIDENCE) -> list[PairedDecision]:
    """Each relative threshold (accuracy, macro F1, every class's recall) judged on the same images as FP32.

    ``reference``/``candidate`` are ``classification_metrics``; ``flips`` maps accuracy and recall[<class>]
    to (lost, gained) image counts against FP32 (``stats.flips_by_metric``); ``f1_interval`` is the paired
    bootstrap interval of the macro-F1 drop (``stats.f1_drop_interval``; None: F1 follows accuracy). A class
    with no test images has no recall decision. ``agreement`` (``stats.agreement_bounds``): upper bounds of
    the drops from agreement with FP32 on more images than the labelled ones; a decision the labelled images
    leave inconclusive passes when its bound is within the limit (agreement can only show a drop is small).
    """
    agreement = agreement or {}
    n = int(candidate.get("n") or 0)
    lost, gained = flips.get("accuracy", (0, 0))
    accuracy = by_agreement(decide_drop("accuracy", reference["accuracy"], candidate["accuracy"], lost, gained, n,
                                        thresholds.max_accuracy_drop, confidence=confidence),
                            agreement.get("accuracy"))
    interval = f1_interval if f1_interval is not None else accuracy.interval
    decisions = [accuracy, decide_f1(reference["f1"], candidate["f1"], interval, thresholds.max_f1_drop, accuracy)]
    for name, ref_class in reference["per_class"].items():
        cand_class = candidate["per_class"].get(name)
        support = int((cand_class or {}).get("support") or 0)
        if cand_class is None or support == 0:
            continue
        lost, gained = flips.get(f"recall[{name}]", (0, 0))
        decisions.append(by_agreement(
            decide_drop(f"recall[{name}]", ref_class["recall"], cand_class["recall"], lost, gained, support,
                        thresholds.max_recall_drop, population=f"images of class '{name}'", confidence=confidence),
            agreement.get(f"recall[{name}]")))
    return decisions


def by_agreement(decision: PairedDecision, bound: AgreementBound | None) -> PairedDecision:
    """An inconclusive decision passes when agreement with FP32 bounds its drop within the limit."""
    if decision.outcome != "inconclusive" or bound is None or bound.bound > decision.limit + 1e-12:
        return decision
    return replace(decision, outcome="pass", images_needed=None, method=f"{decision.method}; {AGREEMENT_METHOD}",
                   note=f"shown by agreement with FP32: {bound.text}")


def decision_breach(decision: PairedDecision, *, artifact: str = "", precision: str = "",
                    runtime: str = "") -> Breach:
    """A failed paired decision as a breach of the gate."""
    images = round(decision.drop * decision.n) if decision.metric != "f1" else None
    return Breach(artifact, precision, runtime, decision.metric, decision.reference, decision.value, decision.drop,
                  decision.limit, images, decision.n if images is not None else None, "drop", decision.lost,
                  decision.gained, interval=decision.interval)


def check_floors(candidate: dict[str, Any], thresholds: Thresholds, *, reference: dict[str, Any] | None = None,
                 artifact: str = "", precision: str = "", runtime: str = "",
                 flips: dict[str, tuple[int, int]] | None = None) -> list[Breach]:
    """The absolute floors ``candidate`` is below (FP32 included: a floor is not relative)."""
    flips = flips or {}
    reference = reference or candidate
    checks: list[tuple[str, float, float, float | None, int | None]] = [
        ("accuracy", reference["accuracy"], candidate["accuracy"], thresholds.min_accuracy, candidate.get("n")),
        ("f1", reference["f1"], candidate["f1"], thresholds.min_f1, None),
    ]
    for name, cand_class in candidate["per_class"].items():
        ref_class = reference["per_class"].get(name, cand_class)
        checks.append((f"recall[{name}]", ref_class["recall"], cand_class["recall"], thresholds.recall_floor(name),
                       cand_class.get("support")))
    breaches = []
    for metric, ref_value, value, floor, out_of in checks:
        if floor is not None and float(value) < floor - _EPS:
            lost, gained = flips.get(metric, (None, None))
            breaches.append(Breach(artifact, precision, runtime, metric, float(ref_value), float(value),
                                   float(ref_value) - float(value), floor, None, out_of, "floor", lost, gained))
    return breaches


#: model check verdicts: the model beats the baseline, is shown not to, or the images cannot tell
MODEL_VERDICTS = ("usable", "not_usable", "inconclusive")
#: sanity verdicts of a run that do not make its model unusable: the bench judges on its own images
_SANITY_NOT_AGAINST = (None, "ok", "too_few_images")


@dataclass(frozen=True)
class ModelCheck:
    """Is the FP32 model itself usable? It must beat always answering one class on the bench images (one-sided
    exact binomial test), and the run's sanity record (metrics.json ``sanity``, when the run has one) must
    not say it learned nothing. ``verdict``: usable, not_usable (shown no better, or the run says so) or
    inconclusive (too few images to tell: ``images_needed`` at this accuracy would)."""

    usable: bool
    accuracy: float
    baseline_accuracy: float
    majority_class: str
    sanity: dict[str, Any] | None
    reason: str
    verdict: str = "usable"
    baseline: str = ""
    p_value: float | None = None
    n: int = 0
    images_needed: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def describe_baseline(evidence: BaselineEvidence, name: str, n: int) -> str:
    """The model check's sentence for a baseline outcome ("" when the model beats it)."""
    if evidence.outcome == "no_better":
        return (f"FP32 accuracy {evidence.accuracy:.4f} is no better than the baseline {evidence.baseline:.4f} "
                f"({name}) on these {n} test images (p = {fmt_p(evidence.p_value)}; at best "
                f"{max(evidence.upper - evidence.baseline, 0.0) * 100:.1f} points above it)")
    if evidence.outcome == "too_few":
        needed = f"; about {evidence.images_needed} would show it at this accuracy" if evidence.images_needed else ""
        return (f"too few test images to show the model beats the majority-class baseline ({n} images, "
                f"p = {fmt_p(evidence.p_value)}): use a larger test split{needed}")
    return ""


def check_model(reference: dict[str, Any], sanity: dict[str, Any] | None = None) -> ModelCheck:
    """The built-in floor, from the FP32 reference metrics (``classification_metrics``) on the bench images."""
    support = {name: int(c.get("support", 0)) for name, c in reference["per_class"].items()}
    n = sum(support.values()) or int(reference.get("n") or 0)
    majority = max(support, key=lambda k: support[k]) if support else ""
    baseline = support.get(majority, 0) / n if n else 0.0
    accuracy = float(reference["accuracy"])
    name = baseline_name(support, majority)
    evidence = baseline_evidence(int(round(accuracy * n)), n, baseline)
    reasons, verdict = [], "usable"
    if evidence.outcome != "beats":
        reasons.append(describe_baseline(evidence, name, n))
        verdict = "not_usable" if evidence.outcome == "no_better" else "inconclusive"
    if isinstance(sanity, dict) and sanity.get("verdict") not in _SANITY_NOT_AGAINST:
        why = sanity.get("reason") or sanity.get("verdict")
        reasons.append(f"the run's sanity check says: {why}")
        verdict = "not_usable"
    return ModelCheck(verdict == "usable", accuracy, baseline, majority, sanity if isinstance(sanity, dict) else None,
                      "; ".join(reasons), verdict, name, evidence.p_value, n, evidence.images_needed)


def model_breach(check: ModelCheck, *, artifact: str, precision: str, runtime: str) -> Breach:
    return Breach(artifact, precision, runtime, "model", check.baseline_accuracy, check.accuracy,
                  check.baseline_accuracy - check.accuracy, check.baseline_accuracy, kind="model", note=check.reason)


def verdict_of(breaches: Sequence[Breach], undecided: Sequence[PairedDecision], model: ModelCheck | None = None) -> str:
    """pass, fail or inconclusive: any breach fails; else anything undecided (or a model check that cannot
    tell) is inconclusive; else pass."""
    if breaches or (model is not None and model.verdict == "not_usable"):
        return "fail"
    if undecided or (model is not None and model.verdict == "inconclusive"):
        return "inconclusive"
    return "pass"


def undecided_table(rows: Sequence[tuple[str, str, str, PairedDecision]]) -> str:
    """Plain-text table of the inconclusive decisions: (artifact, precision, runtime, decision) each; the
    interval of the drop straddles the limit, and the last column says how many images would decide."""
    header = ("artifact", "precision", "runtime", "metric", "drop", "95% interval", "limit", "lost", "gained",
              "would decide")
    body = [(a, p, r, d.metric, f"{d.drop * 100:.2f}", f"{d.interval[0] * 100:.2f} to {d.interval[1] * 100:.2f}",
             f"{d.limit * 100:.2f}", str(d.lost), str(d.gained), d.settle_text()) for a, p, r, d in rows]
    widths = [max(len(str(r[i])) for r in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *body]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def breach_table(breaches: list[Breach]) -> str:
    """A plain-text table of what broke: artifact, precision, runtime, metric, FP32, value, drop, limit, how many
    images the drop amounts to, and how many images flipped against FP32 each way (lost: FP32 right, this one
    wrong; gained: the other way). A one-image drop on a small test set says: measure on more data."""
    header = ("artifact", "precision", "runtime", "metric", "FP32", "value", "drop", "limit", "images", "lost", "gained")
    rows = []
    for b in breaches:
        metric = {"floor": f"{b.metric}>=floor", "model": "model-usable"}.get(b.kind, b.metric)
        rows.append((b.artifact, b.precision, b.runtime, metric, f"{b.reference:.4f}", f"{b.value:.4f}",
                     f"{b.drop:.4f}", f"{b.limit:.4f}", f"{b.images}/{b.out_of}" if b.images is not None else "-",
                     "-" if b.lost is None else str(b.lost), "-" if b.gained is None else str(b.gained)))
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    model = [b for b in breaches if b.kind == "model"]
    if model:
        lines.append(f"the model itself is not usable: {model[0].note}")
    return "\n".join(lines)

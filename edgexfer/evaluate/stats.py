"""How sure a bench verdict is: Wilson 95% intervals and McNemar's exact test against FP32 (statsmodels).

A test split of a few dozen images cannot tell a 1-point drop from noise. Each artifact gets a 95%
confidence interval for its accuracy and for each class's recall, and a paired test against FP32 on the
same images (McNemar's exact test on the discordant pairs: images one model gets right and the other
wrong). `resolution_warnings` says when one image moves a figure by more than its allowed drop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

CONFIDENCE = 0.95


def wilson_interval(successes: int, total: int, confidence: float = CONFIDENCE) -> tuple[float, float] | None:
    """Wilson score interval of a proportion (statsmodels ``proportion_confint``); None when ``total`` is 0."""
    if total <= 0:
        return None
    from statsmodels.stats.proportion import proportion_confint

    low, high = proportion_confint(int(successes), int(total), alpha=1.0 - confidence, method="wilson")
    return float(low), float(high)


@dataclass(frozen=True)
class PairedTest:
    """McNemar's exact test of a candidate against the reference on the same images."""

    n: int
    both_right: int
    lost: int  # reference right, candidate wrong
    gained: int  # reference wrong, candidate right
    both_wrong: int
    p_value: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar_exact(reference_right: np.ndarray, candidate_right: np.ndarray) -> PairedTest:
    """McNemar's exact (binomial) test on the discordant pairs (statsmodels ``mcnemar(exact=True)``)."""
    from statsmodels.stats.contingency_tables import mcnemar

    ref = np.asarray(reference_right, dtype=bool)
    cand = np.asarray(candidate_right, dtype=bool)
    both_right = int(np.sum(ref & cand))
    lost = int(np.sum(ref & ~cand))
    gained = int(np.sum(~ref & cand))
    both_wrong = int(np.sum(~ref & ~cand))
    table = [[both_right, lost], [gained, both_wrong]]
    p_value = 1.0 if lost + gained == 0 else float(mcnemar(table, exact=True).pvalue)
    return PairedTest(int(ref.size), both_right, lost, gained, both_wrong, p_value)


def confidence_intervals(labels: np.ndarray, predictions: np.ndarray, classes: Sequence[str]) -> dict[str, Any]:
    """95% Wilson intervals: ``{"method", "confidence", "accuracy": [lo, hi], "recall": {class: [lo, hi] | None}}``."""
    y = np.asarray(labels, dtype=np.int64)
    pred = np.asarray(predictions, dtype=np.int64)
    recall = {}
    for k, name in enumerate(classes):
        mask = y == k
        interval = wilson_interval(int(np.sum(pred[mask] == k)), int(mask.sum()))
        recall[name] = list(interval) if interval else None
    accuracy = wilson_interval(int(np.sum(pred == y)), int(y.size))
    return {"method": "wilson", "confidence": CONFIDENCE, "accuracy": list(accuracy) if accuracy else None,
            "recall": recall}


def flips_by_metric(labels: np.ndarray, reference_pred: np.ndarray, candidate_pred: np.ndarray,
                    classes: Sequence[str]) -> dict[str, tuple[int, int]]:
    """(lost, gained) images against the reference, overall (accuracy, f1) and within each class (recall)."""
    y = np.asarray(labels, dtype=np.int64)
    ref_right = np.asarray(reference_pred) == y
    cand_right = np.asarray(candidate_pred) == y
    overall = (int(np.sum(ref_right & ~cand_right)), int(np.sum(~ref_right & cand_right)))
    out = {"accuracy": overall, "f1": overall}
    for k, name in enumerate(classes):
        mask = y == k
        out[f"recall[{name}]"] = (int(np.sum(ref_right[mask] & ~cand_right[mask])),
                                  int(np.sum(~ref_right[mask] & cand_right[mask])))
    return out


def resolution_warnings(class_counts: dict[str, int], n: int, max_accuracy_drop: float,
                        max_recall_drop: float) -> list[str]:
    """Where the test split is too small for a threshold: one image moves the figure by more than it allows,
    so even a precision that flips no image cannot be shown within it (the paired interval of a zero drop
    on n images reaches about 3.84 / n)."""
    warnings = []
    if n and 1.0 / n > max_accuracy_drop:
        least = images_to_decide(0, 0, n, max_accuracy_drop)
        warnings.append(f"one image moves accuracy by {100.0 / n:.2f} points ({n} test images), more than the "
                        f"allowed drop of {max_accuracy_drop * 100:g} point(s): even with no flipped image it takes "
                        f"about {least} images to show a precision within it")
    small = {c: k for c, k in class_counts.items() if k and 1.0 / k > max_recall_drop}
    if small:
        listed = ", ".join(f"{c} ({k} images: {100.0 / k:.1f} points)" for c, k in small.items())
        least = images_to_decide(0, 0, min(small.values()), max_recall_drop)
        warnings.append(f"one image moves the recall of {listed} by more than the allowed drop of "
                        f"{max_recall_drop * 100:g} points: even with no flipped image it takes about {least} "
                        "images of a class to show a precision within it; bench on more test images (--data) "
                        "for a decided verdict")
    return warnings


# ------------------------------------------------------------------------------------------------------------------
# Paired non-inferiority: is the loss against FP32 on the same images within the allowed drop?
#
# A precision and FP32 classify the same images, so the evidence about a drop is in the discordant pairs:
# ``lost`` (FP32 right, this one wrong) and ``gained`` (the other way). The drop of a proportion (accuracy, or
# the recall of one class over that class's images) is exactly (lost - gained) / n. Its confidence interval
# is Tango's asymptotic score interval for the difference of paired proportions:
#   Tango T. (1998) Equivalence test and confidence interval for the difference in proportions for the
#   paired-sample design. Statistics in Medicine 17: 891-908;
# recommended by Fagerland, Lydersen & Laake (2014) Recommended tests and confidence intervals for paired
# binomial proportions, Statistics in Medicine 33: 2850-2875 (the implementations in R's PropCIs ``scoreci.mp``,
# contingencytables ``Tango_asymptotic_score_CI_paired_2x2`` and ratesci ``pairbinci(skew=FALSE, bcf=FALSE)``).
# The decision is the usual non-inferiority reading of a two-sided 95% interval (each side at 2.5%, ICH E9):
#   pass          the upper bound of the drop is within the limit (the loss is shown to be small enough);
#   fail          the lower bound is above the limit (the loss is shown to be too large);
#   inconclusive  otherwise: these images cannot tell, and ``images_needed`` says how many would.

OUTCOMES = ("pass", "fail", "inconclusive")
PAIRED_METHOD = "Tango (1998) asymptotic score interval for the paired difference, 95%"
#: power of the sample-size estimate for an inconclusive decision
POWER = 0.8
#: the most images a sample-size estimate names (beyond it: "more than")
MAX_IMAGES = 10_000_000


def _z(confidence: float) -> float:
    from statistics import NormalDist

    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def _constrained_p21(b: float, c: float, n: float, delta: float) -> float:
    """Tango's restricted maximum-likelihood estimate of the ``gained`` cell probability when the drop
    (p_lost - p_gained) is ``delta`` (the positive root of Tango's quadratic, his equation (6))."""
    a_ = 2.0 * n
    b_ = -b - c + (2.0 * n - b + c) * delta
    c_ = -c * delta * (1.0 - delta)
    return (math.sqrt(max(b_ * b_ - 4.0 * a_ * c_, 0.0)) - b_) / (2.0 * a_)


def _tango_score(b: float, c: float, n: float, delta: float) -> float:
    """Tango's score statistic for H0: drop = ``delta`` (decreasing in ``delta``)."""
    variance = n * (2.0 * _constrained_p21(b, c, n, delta) + delta * (1.0 - delta))
    if variance <= 0.0:
        return math.copysign(math.inf, b - c - n * delta) if b - c - n * delta else 0.0
    return (b - c - n * delta) / math.sqrt(variance)


def tango_interval(lost: float, gained: float, n: float, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Tango's score interval for the drop (lost - gained) / n of a proportion measured twice on the same
    ``n`` images (lost: right before, wrong now; gained: the other way). Counts may be fractional (the
    sample-size search scales them). ``n`` must be positive."""
    from scipy.optimize import brentq

    if n <= 0:
        raise ValueError("the paired interval needs at least one image")
    z = _z(confidence)
    estimate = (lost - gained) / n
    tol = 1e-10
    lower = -1.0 if estimate <= -1.0 else brentq(lambda d: _tango_score(lost, gained, n, d) - z, -1 + tol, 1 - tol,
                                                  xtol=1e-12)
    upper = 1.0 if estimate >= 1.0 else brentq(lambda d: _tango_score(lost, gained, n, d) + z, -1 + tol, 1 - tol,
                                                xtol=1e-12)
    return float(lower), float(upper)


def images_to_decide(lost: int, gained: int, n: int, limit: float, confidence: float = CONFIDENCE,
                     power: float = POWER) -> int | None:
    """How many images would settle a paired non-inferiority decision, if the rates seen here (lost/n,
    gained/n) are the true ones: the score-test sample size of Nam (1997, Biometrics 53: 1422-1430) with
    Tango's variance, for a two-sided ``confidence`` interval and the given ``power``. None when the observed
    drop equals the limit (no number of images separates them)."""
    if n <= 0:
        return None
    p12, p21 = lost / n, gained / n
    delta = p12 - p21
    gap = abs(limit - delta)
    if gap < 1e-12:
        return None
    # the restricted estimate of p21 at the limit, as n grows with these rates
    a_, b_ = 2.0, -p12 - p21 + (2.0 - p12 + p21) * limit
    c_ = -p21 * limit * (1.0 - limit)
    p21_0 = (math.sqrt(max(b_ * b_ - 4.0 * a_ * c_, 0.0)) - b_) / (2.0 * a_)
    var0 = max(2.0 * p21_0 + limit * (1.0 - limit), 0.0)
    var1 = max(p12 + p21 - delta * delta, 0.0)
    z_power = _z(2.0 * power - 1.0)
    needed = (_z(confidence) * math.sqrt(var0) + z_power * math.sqrt(var1)) ** 2 / gap ** 2
    return int(min(max(math.ceil(needed), n + 1), MAX_IMAGES))


@dataclass(frozen=True)
class PairedDecision:
    """One relative threshold judged on the same images as FP32: ``drop`` = reference - value = (lost -
    gained) / n, its 95% ``interval``, and the ``outcome`` (pass, fail, inconclusive). ``images_needed``: for an
    inconclusive outcome, about how many images (of ``population``: every test image, or one class's) would
    decide it at the discordance seen here."""

    metric: str
    reference: float
    value: float
    drop: float
    limit: float
    n: int
    lost: int
    gained: int
    interval: tuple[float, float]
    outcome: str
    method: str
    population: str = "test images"
    images_needed: int | None = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["interval"] = list(self.interval)
        return record

    def settle_text(self) -> str:
        """What would settle an inconclusive decision, e.g. "about 310 images of class 'pneumonia' (have 75)"."""
        if self.note and self.images_needed is None:
            return self.note
        if self.images_needed is None:
            return f"no number of {self.population}: the drop seen equals the limit"
        more = "more than " if self.images_needed >= MAX_IMAGES else "about "
        return f"{more}{self.images_needed} {self.population} (have {self.n})"

    def reason(self) -> str:
        lo, hi = self.interval
        head = (f"{self.metric} dropped {self.drop * 100:.2f} points ({self.reference:.4f} -> {self.value:.4f}; "
                f"95% interval of the drop {lo * 100:.2f} to {hi * 100:.2f} points, limit {self.limit * 100:.2f}; "
                f"{self.lost} image(s) FP32 got right now wrong, {self.gained} the other way, of {self.n})")
        if self.outcome == "inconclusive":
            return f"{head}: too few images to tell; {self.settle_text()} would decide"
        return head


def decide_drop(metric: str, reference: float, value: float, lost: int, gained: int, n: int, limit: float, *,
                population: str = "test images", confidence: float = CONFIDENCE) -> PairedDecision:
    """The paired non-inferiority decision of one proportion (accuracy, or a class's recall)."""
    if n <= 0:
        return PairedDecision(metric, reference, value, 0.0, limit, 0, 0, 0, (-1.0, 1.0), "inconclusive",
                              PAIRED_METHOD, population, None, f"no {population} to measure it on")
    lo, hi = tango_interval(lost, gained, n, confidence)
    drop = (lost - gained) / n
    if hi <= limit + 1e-12:
        outcome = "pass"
    elif lo > limit + 1e-12:
        outcome = "fail"
    else:
        outcome = "inconclusive"
    needed = images_to_decide(lost, gained, n, limit, confidence) if outcome == "inconclusive" else None
    return PairedDecision(metric, float(reference), float(value), drop, limit, int(n), int(lost), int(gained),
                          (lo, hi), outcome, PAIRED_METHOD, population, needed)


F1_METHOD = ("paired bootstrap of the macro-F1 drop (2000 resamples of the images, percentile 95% interval); "
             "it passes only with the accuracy decision, which bounds how many images may change class")
BOOTSTRAP_RESAMPLES = 2000


def _macro_f1_rows(y: np.ndarray, pred: np.ndarray, idx: np.ndarray, k: int) -> np.ndarray:
    """Macro F1 (over all ``k`` classes, 0 where undefined, as scikit-learn with zero_division=0) of each
    resample: ``idx`` is (resamples, n) indices into the images."""
    counts = np.zeros((idx.shape[0], k * k), dtype=np.int64)
    codes = y[idx] * k + pred[idx]
    for r in range(idx.shape[0]):
        counts[r] = np.bincount(codes[r], minlength=k * k)
    cm = counts.reshape(-1, k, k)
    tp = np.diagonal(cm, axis1=1, axis2=2).astype(np.float64)
    fp = cm.sum(axis=1) - tp
    fn = cm.sum(axis=2) - tp
    denominator = 2 * tp + fp + fn
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)
    return f1.mean(axis=1)


def f1_drop_interval(labels: np.ndarray, reference_pred: np.ndarray, candidate_pred: np.ndarray, n_classes: int,
                     confidence: float = CONFIDENCE, resamples: int = BOOTSTRAP_RESAMPLES,
                     seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the macro-F1 drop (reference - candidate), resampling images with both models'
    answers kept together (paired). Seeded: the same predictions give the same interval."""
    y = np.asarray(labels, dtype=np.int64)
    if y.size == 0:
        return (-1.0, 1.0)
    rng = np.random.default_rng(seed)
    ref, cand = np.asarray(reference_pred, np.int64), np.asarray(candidate_pred, np.int64)
    chunk = max(1, min(resamples, 2_000_000 // y.size))  # at most ~16 MB of indices at a time
    parts = []
    for start in range(0, resamples, chunk):
        idx = rng.integers(0, y.size, size=(min(chunk, resamples - start), y.size))
        parts.append(_macro_f1_rows(y, ref, idx, n_classes) - _macro_f1_rows(y, cand, idx, n_classes))
    drops = np.concatenate(parts)
    tail = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(drops, [tail, 1.0 - tail])
    return float(lo), float(hi)


def decide_f1(reference: float, value: float, interval: tuple[float, float], limit: float,
              accuracy: PairedDecision) -> PairedDecision:
    """Macro F1 has no paired-proportion form: its drop gets a paired bootstrap interval. It fails when that
    interval lies above the limit; it passes when the interval is within the limit AND the accuracy decision
    passes (the bootstrap only resamples flips it saw; the accuracy interval bounds the flips it did not);
    otherwise it is inconclusive and the accuracy's image count is what would settle it."""
    lo, hi = interval
    drop = float(reference) - float(value)
    if lo > limit + 1e-12:
        outcome = "fail"
    elif hi <= limit + 1e-12 and accuracy.outcome == "pass":
        outcome = "pass"
    else:
        outcome = "inconclusive"
    needed = accuracy.images_needed if outcome == "inconclusive" else None
    note = ""
    if outcome == "inconclusive" and accuracy.outcome == "pass":
        note = "the bootstrap interval of the F1 drop reaches past the limit on these images"
    return PairedDecision("f1", float(reference), float(value), drop, limit, accuracy.n, accuracy.lost,
                          accuracy.gained, (lo, hi), outcome, F1_METHOD, "test images", needed, note)


# ------------------------------------------------------------------------------------------------------------------
# Does a model beat always answering one class? (the run's sanity check and the bench's model check)

#: below this many points above the baseline (upper 95% bound) a model counts as no better than it
MIN_LIFT = 0.05
ALPHA = 0.05


@dataclass(frozen=True)
class BaselineEvidence:
    """``outcome``: "beats" (one-sided exact binomial test, p <= 0.05), "no_better" (accuracy not above the
    baseline, or its Wilson 95% upper bound less than ``MIN_LIFT`` above it: even the best case is no real
    gain) or "too_few" (neither can be shown on these images; ``images_needed`` at this accuracy would)."""

    outcome: str
    accuracy: float
    baseline: float
    n: int
    p_value: float
    upper: float
    images_needed: int | None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def baseline_evidence(correct: int, n: int, baseline: float, alpha: float = ALPHA) -> BaselineEvidence:
    from scipy.stats import binom, binomtest

    if n <= 0:
        return BaselineEvidence("too_few", 0.0, baseline, 0, 1.0, 1.0, None)
    p0 = min(max(baseline, 1e-9), 1 - 1e-9)
    accuracy = correct / n
    p = float(binomtest(int(correct), int(n), p0, alternative="greater").pvalue)
    interval = wilson_interval(correct, n)
    upper = interval[1] if interval else 1.0
    if p <= alpha:
        return BaselineEvidence("beats", accuracy, baseline, n, p, upper, None)
    if accuracy <= baseline + 1e-12 or upper < baseline + MIN_LIFT:
        return BaselineEvidence("no_better", accuracy, baseline, n, p, upper, None)
    sizes = np.arange(n + 1, 100_001)
    k = np.round(accuracy * sizes)
    pvalues = binom.sf(k - 1, sizes, p0)
    hits = np.nonzero(pvalues <= alpha)[0]
    needed = int(sizes[hits[0]]) if hits.size else None
    return BaselineEvidence("too_few", accuracy, baseline, n, p, upper, needed)


def fmt_p(p: float) -> str:
    """A p-value as text: two decimals (0.06), or two significant digits below 0.01."""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.2g}"


def baseline_name(counts: dict[str, int], chosen: str | None = None) -> str:
    """How to name the "always answer one class" baseline: the majority class, or, when classes tie for
    the most images, the fact that answering any of them scores the same."""
    if not counts:
        return "always answering one class"
    top = max(counts.values())
    tied = [c for c, k in counts.items() if k == top]
    if len(tied) == 1:
        return f"always answering the majority class '{chosen or tied[0]}'"
    if len(tied) == len(counts):
        return f"always answering any one class: the {len(counts)} classes are equally frequent"
    return f"always answering any one of the equally most frequent classes {', '.join(repr(c) for c in tied)}"


# ------------------------------------------------------------------------------------------------------------------
# Agreement with FP32 (no labels): how often a precision changes FP32's answer, overall and per class FP32 gave.
#
# Bounds the gate may use, needing no label (lost <= the images whose answer changed):
#   accuracy drop <= disagreement rate;
#   recall drop of class k <= P(FP32 says k and the precision does not) / P(class k)
#                           = (disagreement among images FP32 calls k) x (share FP32 calls k) / (share of class k),
# the last ratio estimated on the labelled images. With the Wilson 95% upper bound of the disagreement, a
# threshold the labelled images leave undecided passes when the bound is within it.

AGREEMENT_METHOD = ("disagreement with FP32 on every usable image (labelled test, validation, --unlabeled; "
                    "never train or calibration images), Wilson 95% upper bound; a bound on the drop")


@dataclass(frozen=True)
class AgreementBound:
    """An upper bound of a drop from agreement alone: ``bound`` (95%), and the sentence saying how."""

    metric: str
    bound: float
    text: str


def agreement_evidence(reference_pred: np.ndarray, candidate_pred: np.ndarray, sources: Sequence[str],
                       classes: Sequence[str]) -> dict[str, Any]:
    """Disagreement with FP32 over the pool: ``{"method", "n", "disagree", "rate", "interval", "by_source":
    {source: {"n", "disagree"}}, "per_class": {class FP32 gave: {"n", "disagree", "rate", "interval"}}}``."""
    ref = np.asarray(reference_pred, dtype=np.int64)
    cand = np.asarray(candidate_pred, dtype=np.int64)
    src = np.asarray(list(sources))
    differ = ref != cand
    n = int(ref.size)
    overall = wilson_interval(int(differ.sum()), n)
    by_source = {str(s): {"n": int((src == s).sum()), "disagree": int(differ[src == s].sum())}
                 for s in dict.fromkeys(src.tolist())}
    per_class: dict[str, Any] = {}
    for k, name in enumerate(classes):
        mask = ref == k
        total = int(mask.sum())
        interval = wilson_interval(int(differ[mask].sum()), total)
        per_class[name] = {"n": total, "disagree": int(differ[mask].sum()),
                           "rate": float(differ[mask].mean()) if total else None,
                           "interval": list(interval) if interval else None}
    return {"method": AGREEMENT_METHOD, "n": n, "disagree": int(differ.sum()),
            "rate": float(differ.mean()) if n else None, "interval": list(overall) if overall else None,
            "by_source": by_source, "per_class": per_class}


def agreement_bounds(evidence: dict[str, Any], labels: np.ndarray, reference_pred_labelled: np.ndarray,
                     classes: Sequence[str]) -> dict[str, AgreementBound]:
    """The bounds of the accuracy drop and of each class's recall drop that ``evidence`` gives (see above);
    the share FP32 calls each class against the share of the class comes from the labelled images."""
    out: dict[str, AgreementBound] = {}
    interval = evidence.get("interval")
    if interval:
        out["accuracy"] = AgreementBound(
            "accuracy", float(interval[1]),
            f"FP32's answer changed on {evidence['disagree']} of {evidence['n']} images "
            f"(95% upper bound {interval[1] * 100:.2f}%), and the accuracy drop is at most that")
    y = np.asarray(labels, dtype=np.int64)
    ref = np.asarray(reference_pred_labelled, dtype=np.int64)
    for k, name in enumerate(classes):
        record = evidence["per_class"].get(name) or {}
        true_k = int((y == k).sum())
        if not record.get("interval") or true_k == 0:
            continue
        ratio = int((ref == k).sum()) / true_k
        bound = float(record["interval"][1]) * ratio
        out[f"recall[{name}]"] = AgreementBound(
            f"recall[{name}]", bound,
            f"of {record['n']} images FP32 calls '{name}', {record['disagree']} changed (95% upper bound "
            f"{record['interval'][1] * 100:.2f}%), times {ratio:.2f} (FP32's '{name}' answers per '{name}' image): "
            f"the recall drop is at most {bound * 100:.2f} points")
    return out


# ------------------------------------------------------------------------------------------------------------------
# Probability calibration per precision: expected calibration error (Guo, Pleiss, Sun & Weinberger 2017, "On
# Calibration of Modern Neural Networks", ICML): the top-1 confidence in equal-width bins, ECE = sum over bins of
# (share of images) x |accuracy - mean confidence|. Quantization can leave the answers alone and still move the
# probabilities a clinical threshold reads.

CALIBRATION_BINS = 10
ECE_METHOD = ("expected calibration error of the top-1 probability, 10 equal-width bins (Guo et al. 2017), on "
              "the labelled test images")


def reliability(labels: np.ndarray, probabilities: np.ndarray, bins: int = CALIBRATION_BINS) -> dict[str, Any]:
    """``{"ece", "bins": [{"lo", "hi", "n", "confidence", "accuracy"}]}`` (empty bins have null figures)."""
    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probabilities, dtype=np.float64)
    confidence = p.max(axis=1) if p.size else np.zeros(0)
    right = (p.argmax(axis=1) == y) if p.size else np.zeros(0, bool)
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1], right=True), 0, bins - 1)
    out, ece = [], 0.0
    for b in range(bins):
        mask = which == b
        n = int(mask.sum())
        conf = float(confidence[mask].mean()) if n else None
        acc = float(right[mask].mean()) if n else None
        if n and conf is not None and acc is not None:
            ece += n / y.size * abs(acc - conf)
        out.append({"lo": float(edges[b]), "hi": float(edges[b + 1]), "n": n, "confidence": conf, "accuracy": acc})
    return {"ece": float(ece) if y.size else None, "bins": out}

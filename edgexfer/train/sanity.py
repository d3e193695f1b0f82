"""The sanity check every run ends with: did the model learn more than the majority class?

Recorded in metrics.json under ``sanity`` (docs/contracts.md): ``verdict`` is one of

- ``"ok"``;
- ``"no_better_than_baseline"``: the test images show the model no better than always answering the
  majority class: accuracy not above it, or even its Wilson 95% upper bound less than 5 points above it —
  a model that learned nothing;
- ``"too_few_images"``: accuracy is above the baseline but not significantly (one-sided exact binomial
  test, p > 0.05) and could still be well above it: too few test images to tell (``images_needed`` says how
  many would show it at this accuracy);
- ``"overfit"``: train accuracy exceeds validation accuracy by more than ``OVERFIT_GAP``.

export and bench read the verdict to refuse or flag such a model. TensorFlow-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgexfer.evaluate.stats import baseline_evidence, baseline_name, fmt_p

VERDICTS = ("ok", "no_better_than_baseline", "too_few_images", "overfit")
OVERFIT_GAP = 0.25
ALPHA = 0.05


@dataclass
class SanityCheck:
    verdict: str
    reason: str
    fix: str
    baseline_accuracy: float      # share of the train split's majority class among the test images
    majority_class: str
    test_accuracy: float
    val_accuracy: float | None
    train_accuracy: float | None  # at the best epoch, as measured while training
    p_value: float                # one-sided binomial test of test accuracy > baseline
    n_test: int
    baseline: str = ""            # how the baseline is named (classes tied for the most train images say so)
    images_needed: int | None = None  # too_few_images: test images that would show it at this accuracy

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def warning(self) -> str:
        return f"WARNING: {self.reason}. Likely fix: {self.fix}"


def check_run(y_test: Sequence[int], test_accuracy: float, train_labels: Sequence[int], classes: Sequence[str],
              *, val_accuracy: float | None, train_accuracy: float | None) -> SanityCheck:
    """Compare test/validation accuracy with the majority-class baseline and with train accuracy.

    The baseline is always answering the train split's most frequent class; when several classes tie for it,
    the one that scores best on the test images (the strictest), named as "any one of" them."""
    y = np.asarray(y_test, dtype=np.int64)
    n = int(y.size)
    train_counts = np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=len(classes))
    tied = [int(k) for k in np.flatnonzero(train_counts == train_counts.max())]
    test_share = {k: float(np.mean(y == k)) if n else 0.0 for k in tied}
    majority = max(tied, key=lambda k: test_share[k])
    baseline = test_share[majority]
    name = baseline_name({str(classes[k]): int(train_counts[k]) for k in range(len(classes))}, str(classes[majority]))
    evidence = baseline_evidence(int(round(test_accuracy * n)), n, baseline, ALPHA)
    p = evidence.p_value

    def make(verdict: str, reason: str, fix: str) -> SanityCheck:
        return SanityCheck(verdict, reason, fix, baseline_accuracy=baseline, majority_class=str(classes[majority]),
                           test_accuracy=float(test_accuracy), val_accuracy=val_accuracy,
                           train_accuracy=train_accuracy, p_value=p, n_test=n, baseline=name,
                           images_needed=evidence.images_needed)

    overfit = train_accuracy is not None and val_accuracy is not None and train_accuracy - val_accuracy > OVERFIT_GAP
    if evidence.outcome == "too_few":
        needed = f" (about {evidence.images_needed} at this accuracy)" if evidence.images_needed else ""
        reason = (f"too few test images to show the model beats the majority-class baseline ({n} images, "
                  f"p = {fmt_p(p)}): use a larger test split{needed}")
        fix = "give the split a larger test part (--split-fractions) or more images; the model may be fine"
        return make("too_few_images", reason, fix)
    if evidence.outcome == "no_better":
        if overfit:
            fix = ("the model fits the train split but not held-out images: with --weights none check that "
                   "BatchNorm statistics were re-estimated (precise_bn_batches > 0), else use pretrained "
                   "weights, more images or stronger augmentation")
        else:
            fix = ("train longer or at a higher learning rate, check that the labels match the images, "
                   "or start from pretrained weights")
        reason = (f"test accuracy {test_accuracy:.3f} is no better than the baseline {baseline:.3f} of {name} "
                  f"(p = {fmt_p(p)}, {n} test images)"
                  + (f"; train accuracy {train_accuracy:.3f}" if train_accuracy is not None else ""))
        return make("no_better_than_baseline", reason, fix)
    if overfit:
        reason = (f"train accuracy {train_accuracy:.3f} is far above validation accuracy {val_accuracy:.3f} "
                  f"(gap > {OVERFIT_GAP})")
        fix = "overfitting: more images, stronger augmentation, fewer epochs, more dropout or pretrained weights"
        return make("overfit", reason, fix)
    reason = f"test accuracy {test_accuracy:.3f} above the baseline {baseline:.3f} of {name} (p = {fmt_p(p)})"
    return make("ok", reason, "")

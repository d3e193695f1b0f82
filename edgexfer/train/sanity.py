"""The sanity check every run ends with: did the model learn more than the majority class?

Recorded in metrics.json under ``sanity`` (docs/contracts.md): ``verdict`` is one of

- ``"ok"``;
- ``"no_better_than_baseline"``: test accuracy is not significantly above the majority-class
  baseline (one-sided binomial test, p > 0.05) — a model that learned nothing;
- ``"overfit"``: train accuracy exceeds validation accuracy by more than ``OVERFIT_GAP``.

export and bench read the verdict to refuse or flag such a model. TensorFlow-free.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

VERDICTS = ("ok", "no_better_than_baseline", "overfit")
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

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def ok(self) -> bool:
        return self.verdict == "ok"

    def warning(self) -> str:
        return f"WARNING: {self.reason}. Likely fix: {self.fix}"


def check_run(y_test: Sequence[int], test_accuracy: float, train_labels: Sequence[int], classes: Sequence[str],
              *, val_accuracy: float | None, train_accuracy: float | None) -> SanityCheck:
    """Compare test/validation accuracy with the majority-class baseline and with train accuracy."""
    from scipy.stats import binomtest

    y = np.asarray(y_test, dtype=np.int64)
    n = int(y.size)
    majority = int(np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=len(classes)).argmax())
    baseline = float(np.mean(y == majority)) if n else 0.0
    correct = int(round(test_accuracy * n))
    p = float(binomtest(correct, n, min(max(baseline, 1e-9), 1 - 1e-9), alternative="greater").pvalue) if n else 1.0
    def make(verdict: str, reason: str, fix: str) -> SanityCheck:
        return SanityCheck(verdict, reason, fix, baseline_accuracy=baseline, majority_class=str(classes[majority]),
                           test_accuracy=float(test_accuracy), val_accuracy=val_accuracy,
                           train_accuracy=train_accuracy, p_value=p, n_test=n)

    if p > ALPHA:
        if train_accuracy is not None and val_accuracy is not None and train_accuracy - val_accuracy > OVERFIT_GAP:
            fix = ("the model fits the train split but not held-out images: with --weights none check that "
                   "BatchNorm statistics were re-estimated (precise_bn_batches > 0), else use pretrained "
                   "weights, more images or stronger augmentation")
        else:
            fix = ("train longer or at a higher learning rate, check that the labels match the images, "
                   "or start from pretrained weights")
        reason = (f"test accuracy {test_accuracy:.3f} is no better than always answering the majority class "
                  f"'{classes[majority]}' ({baseline:.3f}; p={p:.2f}, {n} test images)"
                  + (f"; train accuracy {train_accuracy:.3f}" if train_accuracy is not None else ""))
        return make("no_better_than_baseline", reason, fix)
    if train_accuracy is not None and val_accuracy is not None and train_accuracy - val_accuracy > OVERFIT_GAP:
        reason = (f"train accuracy {train_accuracy:.3f} is far above validation accuracy {val_accuracy:.3f} "
                  f"(gap > {OVERFIT_GAP})")
        fix = "overfitting: more images, stronger augmentation, fewer epochs, more dropout or pretrained weights"
        return make("overfit", reason, fix)
    reason = f"test accuracy {test_accuracy:.3f} above the majority-class baseline {baseline:.3f} (p={p:.2g})"
    return make("ok", reason, "")

"""How sure a bench verdict is: Wilson 95% intervals, McNemar's exact test and paired non-inferiority decisions
against FP32 (statsmodels, scipy).

A test split of a few dozen images cannot tell a 1-point drop from noise. Each artifact gets a 95%
confidence interval for its accuracy and for each class's recall, and a paired test against FP32 on the
same images (McNemar's exact test on the discordant pairs: images one model gets right and the other
wrong). `resolution_warnings` says when one image moves a figure by more than its allowed drop.

The parts, each its own module under this package (this package's names are the public surface):

* ``intervals``: Wilson intervals of a proportion, per artifact and per class (``wilson_interval``,
  ``confidence_intervals``);
* ``paired``: against FP32 on the same images: McNemar's exact test, the images lost and gained, and the
  paired non-inferiority decision of a proportion by Tango's score interval (``decide_drop``, ``PairedDecision``);
* ``sample_size``: how many images would decide (``images_to_decide``, ``resolution_warnings``);
* ``f1_bootstrap``: macro F1's drop by paired bootstrap and its decision (``decide_f1``);
* ``baseline``: does a model beat always answering one class (``baseline_evidence``);
* ``agreement``: disagreement with FP32 without labels and the drops it bounds (``agreement_evidence``);
* ``calibration``: the expected calibration error per precision (``reliability``).
"""

from __future__ import annotations

from edgexfer.evaluate.stats.agreement import (
    AGREEMENT_METHOD,
    AgreementBound,
    agreement_bounds,
    agreement_evidence,
)
from edgexfer.evaluate.stats.baseline import (
    ALPHA,
    MIN_LIFT,
    BaselineEvidence,
    baseline_evidence,
    baseline_name,
    fmt_p,
)
from edgexfer.evaluate.stats.calibration import CALIBRATION_BINS, ECE_METHOD, reliability
from edgexfer.evaluate.stats.f1_bootstrap import BOOTSTRAP_RESAMPLES, F1_METHOD, decide_f1, f1_drop_interval
from edgexfer.evaluate.stats.intervals import CONFIDENCE, confidence_intervals, wilson_interval
from edgexfer.evaluate.stats.paired import (
    OUTCOMES,
    PAIRED_METHOD,
    PairedDecision,
    PairedTest,
    decide_drop,
    flips_by_metric,
    mcnemar_exact,
    tango_interval,
)
from edgexfer.evaluate.stats.sample_size import MAX_IMAGES, POWER, images_to_decide, resolution_warnings

__all__ = [
    "AGREEMENT_METHOD", "ALPHA", "BOOTSTRAP_RESAMPLES", "CALIBRATION_BINS", "CONFIDENCE", "ECE_METHOD", "F1_METHOD",
    "MAX_IMAGES", "MIN_LIFT", "OUTCOMES", "PAIRED_METHOD", "POWER", "AgreementBound", "BaselineEvidence",
    "PairedDecision", "PairedTest", "agreement_bounds", "agreement_evidence", "baseline_evidence", "baseline_name",
    "confidence_intervals", "decide_drop", "decide_f1", "f1_drop_interval", "fmt_p", "flips_by_metric",
    "images_to_decide", "mcnemar_exact", "reliability", "resolution_warnings", "tango_interval", "wilson_interval",
]

"""How many images a decision needs: the sample size that would settle an inconclusive paired decision (Nam
1997 with Tango's variance), and the warnings that a test split is too small for a threshold at all."""

from __future__ import annotations

import math

from edgexfer.evaluate.stats.intervals import CONFIDENCE, z_value

#: power of the sample-size estimate for an inconclusive decision
POWER = 0.8
#: the most images a sample-size estimate names (beyond it: "more than")
MAX_IMAGES = 10_000_000


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
    z_power = z_value(2.0 * power - 1.0)
    needed = (z_value(confidence) * math.sqrt(var0) + z_power * math.sqrt(var1)) ** 2 / gap ** 2
    return int(min(max(math.ceil(needed), n + 1), MAX_IMAGES))


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

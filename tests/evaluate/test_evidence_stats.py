"""The statistics behind the three verdicts, checked against published figures: Tango's score interval for a
paired difference, the sample size that would decide an inconclusive drop, and the baseline check of a run."""

from __future__ import annotations

import pytest

from edgexfer.evaluate.stats import (
    baseline_evidence,
    baseline_name,
    decide_drop,
    images_to_decide,
    tango_interval,
)


def test_tango_interval_matches_the_published_worked_example():
    """Fagerland, Lydersen & Laake (2014, Stat Med 33: 2850) Table II, airway hyper-responsiveness before and
    after stem cell transplantation (Bentur et al. 2009): pairs (a, b, c, d) = (1, 1, 7, 12), N = 21. The Tango
    asymptotic score 95% interval of p1 - p2, as printed by R's ratesci::pairbinci(x = c(1, 1, 7, 12),
    contrast = "RD", method = "Score", skew = FALSE, bcf = FALSE): -0.517232 to -0.026003, estimate -0.285714.
    Our drop is lost - gained over n with lost = b (the first measurement right, the second wrong)."""
    lo, hi = tango_interval(lost=1, gained=7, n=21)
    assert (lo, hi) == (pytest.approx(-0.517232, abs=1e-6), pytest.approx(-0.026003, abs=1e-6))
    # the transposed table mirrors the interval
    assert tango_interval(7, 1, 21) == (pytest.approx(0.026003, abs=1e-6), pytest.approx(0.517232, abs=1e-6))


def test_zero_flips_on_few_images_cannot_show_a_small_limit():
    # no image changed: the drop is 0, but 45 images bound it only to about 7.9 points (z^2 / (n + z^2))
    lo, hi = tango_interval(0, 0, 45)
    assert lo == pytest.approx(-hi) and hi == pytest.approx(1.959964 ** 2 / (45 + 1.959964 ** 2), rel=1e-4)
    assert decide_drop("accuracy", 0.9, 0.9, 0, 0, 45, 0.01).outcome == "inconclusive"
    assert decide_drop("accuracy", 0.9, 0.9, 0, 0, 5000, 0.01).outcome == "pass"


def test_the_sample_size_of_an_undecided_drop_is_where_the_interval_would_decide_it():
    # with no flips the power term vanishes: the estimate is where Tango's upper bound reaches the limit
    for n, limit in ((45, 0.02), (36, 0.01), (12, 0.02)):
        needed = images_to_decide(0, 0, n, limit)
        assert tango_interval(0, 0, needed)[1] <= limit < tango_interval(0, 0, needed - 1)[1]
    # and at that many images, with the same (zero) discordance, the decision is a pass
    assert decide_drop("recall[a]", 0.9, 0.9, 0, 0, images_to_decide(0, 0, 15, 0.02), 0.02).outcome == "pass"
    # an observed drop right at the limit: no number of images separates them
    assert images_to_decide(2, 0, 100, 0.02) is None


def test_one_lost_image_of_fifteen_is_undecided_and_a_large_loss_fails():
    undecided = decide_drop("recall[pneumonia]", 0.8, 0.7333, 1, 0, 15, 0.02, population="images of class 'p'")
    assert undecided.outcome == "inconclusive" and undecided.images_needed > 15
    assert "too few images to tell" in undecided.reason() and "images of class 'p' (have 15)" in undecided.reason()
    failed = decide_drop("recall[pneumonia]", 0.95, 0.80, 15, 0, 100, 0.02)
    assert failed.outcome == "fail" and failed.interval[0] > 0.02


def test_baseline_evidence_three_ways():
    # 4 of 4 right against a 50% baseline: p = 0.0625, too few images to tell (5 would show it)
    few = baseline_evidence(4, 4, 0.5)
    assert few.outcome == "too_few" and few.p_value == pytest.approx(0.0625) and few.images_needed == 5
    # at the baseline on many images: shown no better
    assert baseline_evidence(50, 100, 0.5).outcome == "no_better"
    assert baseline_evidence(90, 100, 0.5).outcome == "beats"


def test_sanity_check_says_too_few_test_images_instead_of_blaming_training():
    from edgexfer.train.sanity import check_run

    result = check_run([0, 1, 0, 1], 1.0, [0, 1] * 20, ["normal", "pneumonia"], val_accuracy=1.0,
                       train_accuracy=1.0)
    assert result.verdict == "too_few_images"
    assert ("too few test images to show the model beats the majority-class baseline (4 images, p = 0.06): "
            "use a larger test split") in result.reason
    assert "train longer" not in result.fix
    # balanced train classes: the baseline is not named after whichever class sorts first
    assert "equally frequent" in result.baseline and "'normal'" not in result.baseline
    # a model at the baseline on enough images keeps the old verdict
    flat = check_run([0, 1] * 50, 0.5, [0, 1] * 20, ["normal", "pneumonia"], val_accuracy=0.5, train_accuracy=0.5)
    assert flat.verdict == "no_better_than_baseline" and "train longer" in flat.fix


def test_baseline_names():
    assert baseline_name({"a": 30, "b": 10}) == "always answering the majority class 'a'"
    assert "equally frequent" in baseline_name({"a": 10, "b": 10, "c": 10})
    assert "'a', 'b'" in baseline_name({"a": 10, "b": 10, "c": 3})

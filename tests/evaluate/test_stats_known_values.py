"""edgexfer.evaluate.stats against published values (not against its own formulas): Wilson intervals from
Newcombe (1998), "Two-sided confidence intervals for the single proportion", Statistics in Medicine 17,
table I (method 3, continuity-uncorrected score interval); McNemar's exact p from the binomial tail."""

from __future__ import annotations

from math import comb

import numpy as np
import pytest

from edgexfer.evaluate.stats import (
    confidence_intervals,
    flips_by_metric,
    mcnemar_exact,
    resolution_warnings,
    wilson_interval,
)

# Newcombe 1998, table I, method 3 (Wilson score, 95%): r/n -> (lower, upper)
NEWCOMBE = {(81, 263): (0.2553, 0.3662), (15, 148): (0.0624, 0.1605), (0, 20): (0.0, 0.1611), (1, 29): (0.0061, 0.1718)}


@pytest.mark.parametrize("counts,expected", NEWCOMBE.items(), ids=[f"{r}/{n}" for r, n in NEWCOMBE])
def test_wilson_interval_matches_newcombe(counts, expected):
    low, high = wilson_interval(*counts)
    assert (round(low, 4), round(high, 4)) == expected


def test_wilson_interval_edges_and_confidence():
    assert wilson_interval(0, 0) is None and wilson_interval(3, -1) is None
    assert round(wilson_interval(1, 1)[0], 4) == 0.2065  # one image is still an interval (z²/(1+z²))
    low, high = wilson_interval(20, 20)
    assert high == pytest.approx(1.0) and round(low, 4) == 0.8389  # the mirror of 0/20
    narrow, wide = wilson_interval(81, 263, confidence=0.90), wilson_interval(81, 263)
    assert wide[0] < narrow[0] < 81 / 263 < narrow[1] < wide[1]


def test_mcnemar_exact_is_the_two_sided_binomial_tail_of_the_discordant_pairs():
    # 30 images: 15 both right, 1 lost, 9 gained, 5 both wrong
    ref = np.array([1] * 15 + [1] * 1 + [0] * 9 + [0] * 5, dtype=bool)
    cand = np.array([1] * 15 + [0] * 1 + [1] * 9 + [0] * 5, dtype=bool)
    test = mcnemar_exact(ref, cand)
    assert (test.n, test.both_right, test.lost, test.gained, test.both_wrong) == (30, 15, 1, 9, 5)
    assert test.p_value == pytest.approx(2 * (comb(10, 0) + comb(10, 1)) / 2**10)  # 0.0215
    swapped = mcnemar_exact(cand, ref)
    assert (swapped.lost, swapped.gained) == (9, 1) and swapped.p_value == pytest.approx(test.p_value)
    assert mcnemar_exact(ref, ref).p_value == 1.0  # no discordant pair
    even = mcnemar_exact(np.array([1, 0, 1, 0], bool), np.array([0, 1, 0, 1], bool))
    assert (even.lost, even.gained) == (2, 2) and even.p_value == pytest.approx(1.0)
    assert test.as_dict()["p_value"] == test.p_value
    as_ints = mcnemar_exact(ref.astype(int), cand.astype(int))  # 0/1 flags count as booleans
    assert (as_ints.lost, as_ints.gained, as_ints.both_wrong) == (1, 9, 5)


def test_confidence_intervals_per_class_and_overall():
    labels = np.array([0] * 20 + [1] * 20)
    pred = np.array([0] * 20 + [1] * 20)
    pred[20:40] = 0  # class 1: 0 of 20 right
    pred[:20] = [0] * 20  # class 0: 20 of 20 right
    record = confidence_intervals(labels, pred, ["a", "b", "absent"])
    assert record["method"] == "wilson" and record["confidence"] == 0.95
    assert [round(v, 4) for v in record["recall"]["a"]] == [0.8389, 1.0]
    assert [round(v, 4) for v in record["recall"]["b"]] == [0.0, 0.1611]
    assert record["recall"]["absent"] is None  # no image of that class: no interval
    low, high = record["accuracy"]  # 20 of 40
    assert low < 0.5 < high and low == pytest.approx(1 - high)
    empty = confidence_intervals(np.array([], int), np.array([], int), ["a"])
    assert empty["accuracy"] is None and empty["recall"] == {"a": None}


def test_flips_are_counted_overall_and_within_each_class():
    labels = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    ref = np.array([0, 0, 1, 1, 1, 0, 2, 1, 2, 2])  # right: 0, 1, 3, 4, 6, 8, 9
    cand = np.array([0, 1, 0, 1, 0, 1, 2, 2, 2, 2])  # right: 0, 2, 3, 5, 6, 7, 8, 9
    flips = flips_by_metric(labels, ref, cand, ["x", "y", "z"])
    assert flips["accuracy"] == flips["f1"] == (2, 3)  # lost images 1, 4; gained 2, 5, 7
    assert flips["recall[x]"] == (1, 1) and flips["recall[y]"] == (1, 1) and flips["recall[z]"] == (0, 1)


def test_resolution_warnings_only_where_one_image_is_more_than_the_allowed_drop():
    assert resolution_warnings({"a": 100, "b": 100}, 200, 0.01, 0.01) == []
    assert resolution_warnings({"a": 100}, 100, 0.01, 0.01) == []  # one image is exactly the allowed drop
    [accuracy] = resolution_warnings({"a": 60, "b": 40}, 50, 0.01, 0.03)
    assert "by 2.00 points (50 test images)" in accuracy and "allowed drop of 1 point(s)" in accuracy
    [recall] = resolution_warnings({"a": 30, "b": 60, "c": 45, "empty": 0}, 1000, 0.01, 0.02)
    assert "recall of a (30 images: 3.3 points), c (45 images: 2.2 points) by more" in recall
    assert "b (" not in recall and "empty" not in recall
    assert "allowed drop of 2 points" in recall and "bench on more test images (--data)" in recall
    assert resolution_warnings({}, 0, 0.01, 0.02) == []

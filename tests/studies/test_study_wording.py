"""The study report says what was done: no "with transfer" when nothing was transferred."""

from __future__ import annotations

from pathlib import Path

from edgexfer.report.study_markdown import _limited_data_section


def _limited(weights: str) -> dict:
    transfer = weights != "none"
    points = [{"backbone": "tinycnn", "weights": w, "transfer": w != "none", "fraction": 1.0, "n_train": 100,
               "accuracy": 0.8, "f1": 0.79} for w in ([weights, "none"] if transfer else ["none"])]
    return {"fractions": [1.0], "transfer_weights": weights, "points": points}


def test_limited_data_wording_from_scratch_only():
    text = "\n".join(_limited_data_section(_limited("none"), None, Path(".")))
    assert "from scratch only (weights `none`" in text
    assert "with transfer" not in text


def test_limited_data_wording_with_transfer():
    text = "\n".join(_limited_data_section(_limited("imagenet"), None, Path(".")))
    assert "with transfer (weights `imagenet`) and from scratch (weights `none`)" in text

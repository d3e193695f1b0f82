"""The shared metrics agree with hand-computed values and with scikit-learn called directly."""

import numpy as np
import pytest
from sklearn.metrics import f1_score, roc_auc_score

from edgexfer.evaluate.metrics import agreement, classification_metrics

CLASSES = ["normal", "pneumonia", "nodule"]


def _probs(pred: list[int], k: int = 3, confidence: float = 0.8) -> np.ndarray:
    p = np.full((len(pred), k), (1 - confidence) / (k - 1))
    p[np.arange(len(pred)), pred] = confidence
    return p


def test_counts_and_per_class_by_hand():
    y = [0, 0, 0, 1, 1, 2, 2, 2]
    pred = [0, 0, 1, 1, 1, 2, 0, 2]
    m = classification_metrics(y, _probs(pred), CLASSES)
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 2, 0], [1, 0, 2]]
    # pneumonia: tp=2, fp=1, fn=0, tn=5
    pn = m["per_class"]["pneumonia"]
    assert pn["precision"] == pytest.approx(2 / 3)
    assert pn["recall"] == pytest.approx(1.0)
    assert pn["specificity"] == pytest.approx(5 / 6)
    assert pn["support"] == 2
    assert m["f1"] == pytest.approx(f1_score(y, pred, average="macro"))
    assert m["loss"] == pytest.approx(-np.mean(np.log(_probs(pred)[np.arange(8), y])))


def test_auc_binary_and_multiclass():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 50)
    p1 = np.clip(y * 0.6 + rng.random(50) * 0.5, 0, 1)
    probs = np.stack([1 - p1, p1], axis=1)
    m = classification_metrics(y, probs, ["neg", "pos"])
    assert m["auc"] == pytest.approx(roc_auc_score(y, p1))

    y3 = rng.integers(0, 3, 60)
    logits = rng.normal(size=(60, 3)) + np.eye(3)[y3] * 2
    p3 = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    m3 = classification_metrics(y3, p3, CLASSES)
    assert m3["auc"] == pytest.approx(roc_auc_score(y3, p3, multi_class="ovr", average="macro"))


def test_auc_undefined_when_a_class_is_absent():
    m = classification_metrics([0, 0, 1], _probs([0, 1, 1]), CLASSES)
    assert m["auc"] is None


def test_shape_mismatch_is_refused():
    with pytest.raises(ValueError, match="do not fit"):
        classification_metrics([0, 1], _probs([0, 1], k=2), CLASSES)


def test_agreement():
    ref = _probs([0, 1, 2, 2])
    cand = ref.copy()
    cand[3] = [0.1, 0.6, 0.3]
    a = agreement(ref, cand)
    assert a["agreement"] == pytest.approx(0.75)
    assert a["max_abs_diff"] == pytest.approx(0.5)

"""The run directory of a finished fine-tune (the tiny_run fixture) against docs/contracts.md §2."""

import csv
import json

import numpy as np
import pytest

from edgexfer.io import sha256_file

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def test_run_dir_has_every_contract_file(tiny_run):
    for name in ("model.keras", "labels.json", "split.json", "config.json", "history.csv", "metrics.json", "run.json",
                 "plots/accuracy.png", "plots/loss.png", "plots/confusion_matrix.png",
                 "plots/confusion_matrix_normalized.png", "plots/roc.png"):
        assert (tiny_run / name).is_file(), name
    run = json.loads((tiny_run / "run.json").read_text())
    assert run["schema"] == "edgexfer.run/1"
    assert run["backbone"] == "tinycnn" and run["image_size"] == [48, 48]
    assert run["classes"] == json.loads((tiny_run / "labels.json").read_text())
    assert run["model_sha256"] == sha256_file(tiny_run / "model.keras")
    assert run["split_sha256"] == sha256_file(tiny_run / "split.json")
    split = json.loads((tiny_run / "split.json").read_text())
    assert split["schema"] == "edgexfer.split/1" and set(split["splits"]) == {"train", "val", "test"}
    config = json.loads((tiny_run / "config.json").read_text())
    assert config["backbone"] == "tinycnn" and config["class_weights"] is True
    assert config["resolved"]["class_weights"] and "tensorflow" in config["versions"]


def test_history_holds_both_phases(tiny_run):
    with open(tiny_run / "history.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["phase"] for r in rows] == ["1", "1", "2"]
    assert [int(r["epoch_global"]) for r in rows] == [1, 2, 3]
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "learning_rate"} <= set(rows[0])


def test_model_takes_raw_pixels_and_gives_probabilities(tiny_run):
    import keras

    model = keras.saving.load_model(tiny_run / "model.keras")
    assert model.layers[0].name == "image"
    assert tuple(model.inputs[0].shape) == (None, 48, 48, 3)
    assert model.layers[-1].name == "probabilities"
    out = np.asarray(model(np.full((2, 48, 48, 3), 128.0, dtype=np.float32), training=False))
    assert out.dtype == np.float32 and out.shape == (2, 3)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-5)


def test_metrics_json_agrees_with_scikit_learn(tiny_run):
    """Reload model.keras, predict the saved test split, compute the metrics with scikit-learn directly."""
    import keras
    from sklearn import metrics as skm

    from edgexfer.data.splits import Split

    saved = json.loads((tiny_run / "metrics.json").read_text())
    split = Split.load(tiny_run / "split.json")
    x, y = split.load_arrays("test", (48, 48))
    model = keras.saving.load_model(tiny_run / "model.keras")
    p = np.asarray(model.predict(np.asarray(x, dtype=np.float32), verbose=0), dtype=np.float64)
    pred = p.argmax(axis=1)
    assert saved["n"] == len(y)
    assert saved["accuracy"] == pytest.approx(skm.accuracy_score(y, pred))
    assert saved["f1"] == pytest.approx(skm.f1_score(y, pred, average="macro", zero_division=0))
    assert saved["precision_macro"] == pytest.approx(skm.precision_score(y, pred, average="macro", zero_division=0))
    assert saved["recall_macro"] == pytest.approx(skm.recall_score(y, pred, average="macro", zero_division=0))
    assert saved["confusion_matrix"] == skm.confusion_matrix(y, pred, labels=[0, 1, 2]).tolist()
    assert saved["loss"] == pytest.approx(skm.log_loss(y, p, labels=[0, 1, 2]), abs=1e-4)
    assert saved["auc"] == pytest.approx(skm.roc_auc_score(y, p / p.sum(1, keepdims=True), multi_class="ovr"), abs=1e-4)
    classes = json.loads((tiny_run / "labels.json").read_text())
    assert list(saved["per_class"]) == classes
    assert [saved["per_class"][c]["support"] for c in classes] == np.bincount(y, minlength=3).tolist()

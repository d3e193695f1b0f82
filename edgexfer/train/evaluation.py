"""After training: precise BatchNorm on the trained model, the SAVED model's test metrics and the sanity check
(does the model beat the majority class?), read from the epoch whose weights were kept."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import edgexfer.data.pipeline as pipeline  # make_dataset looked up when called (tests watch it)
from edgexfer.config import FinetuneConfig
from edgexfer.evaluate.metrics import classification_metrics
from edgexfer.train.batchnorm import (
    BatchNormRecord,
    keep_better_statistics,
    moving_statistics,
    precise_batchnorm,
)
from edgexfer.train.sanity import check_run


def recalibrate_batchnorm(model, split, image_size, config: FinetuneConfig, trained_bn, say):
    if not trained_bn or config.precise_bn_batches == 0:
        return BatchNormRecord("none" if not trained_bn else "off", [])
    # shuffled (batches mixing the classes, as in training), never augmented
    ds = pipeline.make_dataset(split, "train", image_size, config.batch_size, shuffle=True, seed=config.seed + 1, cache=False)
    val = pipeline.make_dataset(split, "val", image_size, config.batch_size, shuffle=False, cache=False)
    before = _accuracy(model, val)
    training_statistics = moving_statistics(model, trained_bn)
    record = precise_batchnorm(model, ds, trained_bn, config.precise_bn_batches)
    keep_better_statistics(record, training_statistics, before, _accuracy(model, val))
    say(f"BatchNorm statistics re-estimated for {len(record.layers)} layer(s) over {record.images} train images: "
        f"val accuracy {before:.3f} before, {record.val_accuracy_after:.3f} after"
        + ("" if record.kept else "; lower, so the saved model keeps the statistics from training"))
    return record


def _accuracy(model, dataset) -> float:
    import numpy as np

    right = total = 0
    for x, y in dataset:
        p = np.asarray(model(x, training=False))
        right += int((p.argmax(axis=1) == np.asarray(y)).sum())
        total += int(np.asarray(y).size)
    return right / max(total, 1)


def saved_row(history, monitor: str) -> dict[str, Any] | None:
    """The history row of the epoch whose weights were saved: the best ``monitor`` over every stage."""
    import math

    rows = [r for r in history if isinstance(r.get(monitor), (int, float)) and math.isfinite(r[monitor])]
    return (max if "acc" in monitor else min)(rows, key=lambda r: r[monitor]) if rows else None


def sanity_check(metrics, y_true, split, val_accuracy, history, monitor: str):

    best = saved_row(history, monitor)
    train_accuracy = best.get("accuracy") if best else None  # the epoch whose weights were kept
    return check_run(y_true, metrics["accuracy"], [s.label for s in split.samples("train")], split.classes,
                     val_accuracy=val_accuracy, train_accuracy=train_accuracy)


def evaluate_saved_model(keras, model_path: Path, split, image_size, batch_size: int):
    """Test-split metrics of the SAVED model, so metrics.json describes exactly model.keras."""
    import numpy as np


    model = keras.saving.load_model(model_path)
    ds = pipeline.make_dataset(split, "test", image_size, batch_size, shuffle=False, cache=False)
    probs, labels = [], []
    for x, y in ds:
        probs.append(np.asarray(model(x, training=False), dtype=np.float32))
        labels.append(np.asarray(y))
    y_true = np.concatenate(labels)
    probabilities = np.concatenate(probs)
    val_accuracy = _accuracy(model, pipeline.make_dataset(split, "val", image_size, batch_size, shuffle=False, cache=False))
    return classification_metrics(y_true, probabilities, split.classes), y_true, probabilities, val_accuracy

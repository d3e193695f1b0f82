"""Precise BatchNorm: re-estimate the moving statistics of the BatchNorm layers that trained.

Keras keeps BatchNorm moving statistics as exponential averages (momentum 0.999 in MobileNetV2/V3,
0.99 in ResNet/EfficientNet/DenseNet/Inception): after a few hundred steps from scratch they still
describe the random initial weights, and the saved model scores at chance in inference mode while
it is right with batch statistics. After training, :func:`precise_batchnorm` replaces them by the
cumulative average, over up to ``max_batches`` batches of the train split without augmentation, of
the batch means and variances the final weights produce (Wu & Johnson, "Rethinking 'Batch' in
BatchNorm", 2021). BatchNorm layers that did not train (a pretrained base in inference mode) are
left as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class BatchNormRecord:
    """What was done to the BatchNorm statistics (run.json ``batchnorm``, metrics.json ``batchnorm``)."""

    method: str                       # "precise" (re-estimated), "none" (no BatchNorm trained), "off" (disabled)
    layers: list[str] = field(default_factory=list)  # re-estimated layers
    frozen_layers: int = 0            # BatchNorm layers left alone (pretrained, inference mode)
    batches: int = 0
    images: int = 0
    val_accuracy_before: float | None = None
    val_accuracy_after: float | None = None
    #: False when the re-estimated statistics scored lower on the validation split and the training ones were kept
    kept: bool = True

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["layers"] = len(self.layers)
        return out


def _batchnorm_layers(model) -> list[Any]:
    import keras

    return [layer for layer in model._flatten_layers(include_self=False, recursive=True)
            if isinstance(layer, keras.layers.BatchNormalization)]


def moving_statistics(model: Any, layer_names: Sequence[str]) -> list[tuple[Any, Any, Any]]:
    """(layer, moving mean, moving variance) of ``layer_names``, copied: :func:`restore_moving_statistics` puts
    them back."""
    import numpy as np

    wanted = set(layer_names)
    return [(layer, np.array(layer.moving_mean), np.array(layer.moving_variance))
            for layer in _batchnorm_layers(model) if layer.name in wanted]


def restore_moving_statistics(saved: Sequence[tuple[Any, Any, Any]]) -> None:
    for layer, mean, variance in saved:
        layer.moving_mean.assign(mean)
        layer.moving_variance.assign(variance)


def keep_better_statistics(record: BatchNormRecord, training_statistics: Sequence[tuple[Any, Any, Any]],
                           before: float, after: float) -> None:
    """Record the validation accuracy before and after re-estimation; where it is lower after, put the statistics
    from training back (``record.kept`` False): the saved model is the better of the two, and the record says
    which it is."""
    record.val_accuracy_before, record.val_accuracy_after = before, after
    if record.method == "precise" and after < before:
        restore_moving_statistics(training_statistics)
        record.kept = False


def precise_batchnorm(model: Any, dataset: Any, layer_names: Sequence[str], max_batches: int) -> BatchNormRecord:
    """Re-estimate the moving mean/variance of ``layer_names`` over ``dataset`` (images, labels batches).

    Batch k updates the statistics with momentum (k-1)/k, so after n batches they are the plain mean
    of the n batch statistics. Other BatchNorm layers run in inference mode meanwhile and keep theirs.
    Dropout is off during the pass. The model's trainability is restored afterwards. Runs eagerly: the
    momentum and the dropout rate are read at each call.
    """
    all_bn = _batchnorm_layers(model)
    wanted = set(layer_names)
    chosen = [layer for layer in all_bn if layer.name in wanted]
    record = BatchNormRecord("precise" if chosen else "none", [layer.name for layer in chosen],
                             frozen_layers=len(all_bn) - len(chosen))
    if not chosen or max_batches <= 0:
        if max_batches <= 0 and chosen:
            record.method = "off"
        return record
    import keras

    # dropout off: inference sees no dropout, so the statistics must not include its noise (EfficientNet's
    # stochastic depth sits between its BatchNorm layers)
    dropouts = [(layer, layer.rate) for layer in model._flatten_layers(include_self=False, recursive=True)
                if isinstance(layer, keras.layers.Dropout)]
    saved = [(layer, layer.trainable, layer.momentum) for layer in all_bn]
    try:
        for layer, _rate in dropouts:
            layer.rate = 0.0
        for layer in all_bn:
            layer.trainable = layer.name in wanted  # a non-trainable BatchNorm runs in inference mode
        for layer in chosen:
            layer.moving_mean.assign(layer.moving_mean * 0)
            layer.moving_variance.assign(layer.moving_variance * 0)
        for k, (images, _labels) in enumerate(dataset.take(max_batches), start=1):
            for layer in chosen:
                layer.momentum = (k - 1) / k
            model(images, training=True)
            record.batches = k
            record.images += int(images.shape[0])
    finally:
        for layer, trainable, momentum in saved:
            layer.trainable = trainable
            layer.momentum = momentum
        for layer, rate in dropouts:
            layer.rate = rate
    return record

"""The training schedule and the one code path that trains a stage: used by ``finetune`` and by tuning.

- :func:`plan_stages`: the phases and stages of a run (epochs, learning rate, where the trainable
  part of the backbone starts);
- :func:`set_trainable`: trainability of the whole classifier for one stage, set from scratch for
  every layer (Keras 3: ``base.trainable = True`` on a base that is already trainable does not switch
  back on the sublayers frozen by the previous stage, so each layer is set explicitly);
- :func:`fit_stage`: compile with the run's optimizer and fit one stage;
- :func:`training_datasets`, :func:`build_classifier`, :func:`make_optimizer`,
  :func:`training_callbacks`: what both ``finetune`` and a KerasTuner trial train with.

TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import edgexfer.data.pipeline as pipeline  # make_dataset looked up when called (tests watch it)
from edgexfer.backbones import build_model, get_base
from edgexfer.config import FinetuneConfig
from edgexfer.data.pipeline import AugmentConfig, steps_per_epoch
from edgexfer.errors import EdgexferError


@dataclass
class Stage:
    """One ``fit``: ``unfreeze`` None trains the head on a frozen backbone, "all" trains every layer,
    a layer-name prefix trains everything above the last layer of that prefix."""

    key: str
    phase: int
    epochs: int
    learning_rate: float
    unfreeze: str | None
    label: str
    trainable_params: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def resolved_fine_tune_epochs(config: FinetuneConfig, pretrained: bool) -> int:
    """``fine_tune_epochs`` with its default resolved: 10 with pretrained weights, 0 from scratch
    (without a pretrained base there is nothing to unfreeze: one phase trains every layer)."""
    if config.fine_tune_epochs is not None:
        return int(config.fine_tune_epochs)
    return 10 if pretrained else 0


def plan_stages(spec: Any, config: FinetuneConfig, freeze_base: bool, fine_tune_epochs: int) -> list[Stage]:
    """The stages to train, in order; raise before anything is written when there is nothing to train."""
    stages: list[Stage] = []
    if config.epochs > 0:
        stages.append(Stage("phase1", 1, config.epochs, config.learning_rate, None if freeze_base else "all",
                            "head on a frozen backbone" if freeze_base else "all layers"))
    if fine_tune_epochs > 0:
        if freeze_base:
            n = max(1, min(config.unfreeze_stages, len(spec.unfreeze_points), fine_tune_epochs))
            points: list[str] = list(spec.unfreeze_points[:n])
        else:
            n, points = 1, ["all"]
        per_stage = [fine_tune_epochs // n + (1 if i < fine_tune_epochs % n else 0) for i in range(n)]
        for k, (point, epochs) in enumerate(zip(points, per_stage, strict=True), start=1):
            stages.append(Stage(f"phase2_stage{k}", 2, epochs,
                                config.fine_tune_learning_rate * config.stage_lr_factor ** (k - 1), point,
                                "all layers, lower rate" if point == "all" else f"layers above '{point}*'"))
    if not stages:
        raise EdgexferError("no epoch to train (--epochs 0, and --fine-tune-epochs 0 or no pretrained weights)",
                            "pass --epochs 1 or more")
    return stages


def tuning_stages(spec: Any, config: FinetuneConfig, freeze_base: bool, max_epochs: int, depth: int) -> list[Stage]:
    """A tuning trial's schedule: the fine-tune's :func:`plan_stages` in ``max_epochs`` epochs.

    With a frozen base: half the epochs (rounded up) on the frozen base, the rest over ``depth``
    unfreeze stages (0: the head only). From scratch: every epoch trains every layer.
    """
    if not freeze_base or depth <= 0 or max_epochs < 2:
        fields = {"epochs": max_epochs, "fine_tune_epochs": 0}
    else:
        first = math.ceil(max_epochs / 2)
        fields = {"epochs": first, "fine_tune_epochs": max_epochs - first,
                  "unfreeze_stages": min(depth, max_epochs - first)}
    trial = FinetuneConfig(**{**config.to_dict(), **fields})
    return plan_stages(spec, trial, freeze_base, fields["fine_tune_epochs"])


def plan_trainability(model: Any, stages: Sequence[Stage], bn_inference: bool) -> list[str]:
    """Fill each stage's trainable parameter count; return the BatchNorm layers that train in any stage."""
    names: list[str] = []
    for stage in stages:
        stage.trainable_params = set_trainable(model, stage.unfreeze, bn_inference)
        names += [n for n in trained_batchnorm(model, bn_inference) if n not in names]
    return names


def _all_layers(model) -> list[Any]:
    return list(model._flatten_layers(include_self=False, recursive=True))


def set_trainable(model: Any, unfreeze: str | None, bn_inference: bool) -> int:
    """Set every layer's trainability for a stage (never relative to the previous stage).

    The head is always trainable. ``unfreeze`` None freezes the whole backbone, "all" trains all of
    it, a prefix trains the layers after the last one whose name starts with it. With
    ``bn_inference`` (a pretrained base) the backbone's BatchNorm layers stay frozen, so they keep
    their pretrained statistics and run in inference mode. Returns the trainable parameter count.
    """
    import keras


    base = get_base(model)
    model.trainable = True
    for layer in _all_layers(model):
        layer.trainable = True
    layers = list(base.layers)
    if unfreeze is None:
        cut = len(layers) - 1
    elif unfreeze == "all":
        cut = -1
    else:
        matches = [i for i, layer in enumerate(layers) if layer.name.startswith(unfreeze)]
        if not matches:
            raise EdgexferError(f"the backbone has no layer named '{unfreeze}*'", "check the backbone's unfreeze points")
        cut = max(matches)
    for i, layer in enumerate(layers):
        frozen = i <= cut or (bn_inference and isinstance(layer, keras.layers.BatchNormalization))
        layer.trainable = not frozen
    if unfreeze is None:
        base.trainable = False
    return count_trainable(model)


def count_trainable(model: Any) -> int:
    return int(sum(math.prod(v.shape) for v in model.trainable_weights))


def trained_batchnorm(model: Any, bn_inference: bool) -> list[str]:
    """Names of the BatchNorm layers that update their moving statistics in the current trainability:
    trainable ones outside a backbone called in inference mode."""
    import keras


    base_layers = {id(layer) for layer in _all_layers(get_base(model))}
    names = []
    for layer in _all_layers(model):
        if not isinstance(layer, keras.layers.BatchNormalization) or not layer.trainable:
            continue
        if bn_inference and id(layer) in base_layers:
            continue
        names.append(layer.name)
    return names


def fit_batchnorm_momentum(model: Any, layer_names: Sequence[str], steps_per_epoch: int) -> dict[str, float]:
    """Lower the momentum of the BatchNorm layers that train to ``1 - 1/steps_per_epoch`` where that is
    below theirs, so the moving statistics follow the weights within about one epoch (Keras'
    MobileNetV2/V3 use 0.999: a thousand steps to settle) and validation during training, early
    stopping and the best-epoch choice see the model as it is. Returns the original momenta,
    for :func:`restore_batchnorm_momentum` before saving."""
    import keras

    target = max(0.5, 1.0 - 1.0 / max(int(steps_per_epoch), 1))
    wanted = set(layer_names)
    original: dict[str, float] = {}
    for layer in _all_layers(model):
        if isinstance(layer, keras.layers.BatchNormalization) and layer.name in wanted and layer.momentum > target:
            original[layer.name] = float(layer.momentum)
            layer.momentum = target
    return original


def restore_batchnorm_momentum(model: Any, original: dict[str, float]) -> None:
    for layer in _all_layers(model):
        if layer.name in original:
            layer.momentum = original[layer.name]


def build_classifier(spec: Any, num_classes: int, image_size: tuple[int, int], config: FinetuneConfig, weights: str,
                     bn_inference: bool) -> Any:
    return build_model(spec, num_classes, image_size, head=config.head, weights=weights, dropout=config.dropout,
                       bn_inference=bn_inference)


def augment_config(config: FinetuneConfig):
    """The run's augmentation (an AugmentConfig), or None."""

    if config.augment is True:
        return AugmentConfig()
    if config.augment is False:
        return None
    return AugmentConfig.from_dict(config.augment)


@dataclass
class TrainData:
    """The train split by epoch range: ``data(first, end)`` is epochs first..end-1 (global epoch numbers), each
    shuffled and augmented from (seed, epoch) alone, so a resumed run sees what an uninterrupted one saw."""

    split: Any
    image_size: tuple[int, int]
    batch_size: int
    augment: Any
    seed: int
    cache: Any
    drop_remainder: bool = False  # multi-worker training: no last partial batch (a replica's batch may not be empty)

    @property
    def steps(self) -> int:
        return steps_per_epoch(len(self.split.samples("train")), self.batch_size, self.drop_remainder)

    def __call__(self, first: int, end: int) -> Any:
        return pipeline.make_dataset(self.split, "train", self.image_size, self.batch_size, augment=self.augment,
                            seed=self.seed, cache=self.cache, epochs=(first, end), drop_remainder=self.drop_remainder)


def training_datasets(split: Any, image_size: tuple[int, int], config: FinetuneConfig, batch_size: int | None = None):
    """(train, val): train a :class:`TrainData` shuffled by the run's seed and augmented as configured."""

    batch = batch_size or config.batch_size
    train = TrainData(split, image_size, batch, augment_config(config), config.seed, config.cache)
    val = pipeline.make_dataset(split, "val", image_size, batch, shuffle=False, cache=config.cache)
    return train, val


def make_optimizer(config: FinetuneConfig, learning_rate: float) -> Any:
    import keras

    if config.optimizer == "adam":
        return keras.optimizers.Adam(learning_rate)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(learning_rate, weight_decay=config.weight_decay)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(learning_rate, momentum=0.9, nesterov=True)
    return keras.optimizers.RMSprop(learning_rate)


def training_callbacks(config: FinetuneConfig) -> list[Any]:
    """Callbacks that change what is trained (early stopping), shared by finetune and tuning."""
    import keras

    if not config.early_stopping_patience:
        return []
    return [keras.callbacks.EarlyStopping(monitor=config.monitor, patience=config.early_stopping_patience)]


def fit_stage(model: Any, stage: Stage, config: FinetuneConfig, train: Any, val: Any, *, bn_inference: bool,
              class_weight: dict[int, float] | None, callbacks: Sequence[Any] = (), verbose: int | str = 0,
              first_epoch: int = 0, end_epoch: int | None = None, strategy: Any = None,
              shared_callbacks: Sequence[Any] | None = None, epoch_offset: int = 0) -> Any:
    """Set trainability, compile with the run's optimizer at the stage's rate, and fit the stage.

    Returns the Keras History. ``first_epoch``/``end_epoch`` fit part of the stage (Hyperband rounds,
    a resumed run). ``shared_callbacks``: the :func:`training_callbacks` to use (made here when None).
    ``train``: a :class:`TrainData`; ``epoch_offset``: the run's epochs before this stage (its data order).
    """
    import contextlib

    scope = strategy.scope() if strategy is not None else contextlib.nullcontext()
    with scope:
        stage.trainable_params = set_trainable(model, stage.unfreeze, bn_inference)
        model.compile(optimizer=make_optimizer(config, stage.learning_rate), loss="sparse_categorical_crossentropy",
                      metrics=["accuracy"], jit_compile=config.jit_compile)
    shared = list(training_callbacks(config) if shared_callbacks is None else shared_callbacks)
    end = stage.epochs if end_epoch is None else end_epoch
    data = train(epoch_offset + first_epoch, epoch_offset + end)
    return model.fit(data, steps_per_epoch=train.steps, validation_data=val, epochs=end, initial_epoch=first_epoch,
                     class_weight=class_weight, shuffle=False, callbacks=shared + list(callbacks), verbose=verbose)

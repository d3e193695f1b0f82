"""Hyperparameter tuning of one backbone with KerasTuner (the ``tune`` extra), on the study's split.

Searched: the head's learning rate, the fine-tuning learning rate, dropout, how deep to unfreeze
(0 = head only, k = up to the backbone's k-th unfreeze point) and the batch size. A backbone
trained from scratch (``weights none``) is not frozen, so only the first, third and fifth apply. The objective
is measured on the validation split only; the test split is never seen while tuning.

A trial trains the way the fine-tune stage does, in small (``phase_segments``): half its epochs on
the frozen base, the rest unfreezing stage by stage down to its depth, each stage at a lower
learning rate. Under Hyperband a trial continued in a later round resumes from its checkpoint
and carries on in the segment its epoch number belongs to.

``--max-trials`` caps the number of trials for both tuners (Hyperband's brackets stop early when
the cap is reached). KerasTuner's distributed mode (a chief oracle and workers, configured by
environment variables) is described in docs/tuning.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgexfer._lazy import require
from edgexfer.errors import EdgexferError

BATCH_SIZES = (8, 16, 32, 64)



def finetune_options(values: dict[str, Any]) -> dict[str, Any]:
    """FinetuneConfig options from a trial's hyperparameters.

    ``unfreeze_depth`` d > 0 becomes ``unfreeze_stages`` d (phase 2 reaches the d-th unfreeze
    point); d = 0 means no phase 2 (``fine_tune_epochs`` 0).
    """
    out: dict[str, Any] = {k: values[k] for k in ("learning_rate", "fine_tune_learning_rate", "dropout", "batch_size")
                           if k in values}
    if "unfreeze_depth" in values:
        if int(values["unfreeze_depth"]) > 0:
            out["unfreeze_stages"] = int(values["unfreeze_depth"])
        else:
            out["fine_tune_epochs"] = 0
    return out


def phase_segments(max_epochs: int, depth: int, learning_rate: float, fine_tune_learning_rate: float,
                   stage_lr_factor: float) -> list[tuple[int, int, int, float]]:
    """(first epoch, end epoch, unfreeze stage, learning rate) of a trial of ``max_epochs`` epochs.

    The fine-tune stage's schedule in small: half the epochs (rounded up) on the frozen base, the
    rest shared among unfreeze stages 1..depth, stage k at ``fine_tune_learning_rate *
    stage_lr_factor ** (k - 1)``. With depth 0 every epoch trains the head.
    """
    if depth <= 0 or max_epochs < 2:
        return [(0, max_epochs, 0, learning_rate)]
    frozen_end = math.ceil(max_epochs / 2)
    segments = [(0, frozen_end, 0, learning_rate)]
    remaining = max_epochs - frozen_end
    stages = min(depth, remaining)  # never a stage without an epoch
    bounds = [frozen_end + round(remaining * k / stages) for k in range(stages + 1)]
    for k in range(1, stages + 1):
        # with fewer epochs than stages the last segment goes straight to the requested depth
        stage = depth if k == stages else k
        segments.append((bounds[k - 1], bounds[k], stage, fine_tune_learning_rate * stage_lr_factor ** (k - 1)))
    return segments


def is_tuning_worker() -> bool:
    """True in a KerasTuner worker process (distributed mode, not the chief)."""
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "chief")


def set_unfreeze_depth(model: Any, spec: Any, depth: int) -> None:
    """Train the backbone above its ``depth``-th unfreeze point (0: freeze all of it; -1: train all).

    Same rule as the fine-tune stage (see BackboneSpec): freeze every layer up to and including
    the last one whose name starts with the point's prefix. BatchNorm layers of a pretrained base
    run in inference mode whatever their flag, because build_model calls the base with
    ``training=False`` (``bn_inference``).
    """
    from edgexfer.backbones import get_base

    base = get_base(model)
    if depth == 0:
        base.trainable = False
        return
    base.trainable = True
    if depth < 0:
        return
    prefix = spec.unfreeze_points[min(depth, len(spec.unfreeze_points)) - 1]
    cut = max((i for i, layer in enumerate(base.layers) if layer.name.startswith(prefix)), default=-1)
    for i, layer in enumerate(base.layers):
        layer.trainable = i > cut


def _without_tensorboard(tuner_class: type) -> type:
    """``tuner_class`` that does not import TensorBoard when no TensorBoard callback is given.

    KerasTuner (1.4) imports ``tensorboard.plugins.hparams`` before every trial on the TensorFlow
    backend, even with no TensorBoard callback; TensorFlow no longer ships TensorBoard, and a
    missing import fails every trial. With a TensorBoard callback the original behaviour stays.
    """

    class Tuner(tuner_class):  # type: ignore[misc, valid-type]
        def _configure_tensorboard_dir(self, callbacks, trial, execution=0):
            if any(type(c).__name__ == "TensorBoard" for c in callbacks):
                super()._configure_tensorboard_dir(callbacks, trial, execution)

    Tuner.__name__ = tuner_class.__name__
    return Tuner


def _compile(model: Any, learning_rate: float) -> None:
    import keras

    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])


def tune_backbone(*, name: str, split_path: str | Path, finetune_fields: dict[str, Any], options: Any,
                  project_dir: str | Path, log: Callable[[str], None] = print, overwrite: bool = False) -> dict[str, Any]:
    """Search hyperparameters of backbone ``name``; return the trials and the best configuration.

    ``finetune_fields`` are the study's fine-tune options (image_size, weights, head, seed…); the
    best values come back as ``best["options"]``, named as FinetuneConfig fields.
    """
    kt = require("keras_tuner", "--tune")
    keras = require("keras", "tuning")
    from edgexfer.backbones import build_model, get_backbone, resolve_weights
    from edgexfer.data.pipeline import make_dataset
    from edgexfer.data.splits import Split, class_weights

    spec = get_backbone(name)
    split = Split.load(split_path)
    image_size = spec.check_image_size(finetune_fields.get("image_size"))
    weights = resolve_weights(spec, finetune_fields.get("weights"))
    head = finetune_fields.get("head", "gap")
    seed = int(finetune_fields.get("seed", 0))
    stage_lr_factor = float(finetune_fields.get("stage_lr_factor", 0.5))
    # as in the fine-tune stage: a base trained from scratch is not frozen in phase 1, so there is
    # no unfreezing to tune
    pretrained = weights != "none"
    freeze_base = finetune_fields.get("freeze_base")
    freeze_base = pretrained if freeze_base is None else bool(freeze_base)
    cw = class_weights(split) if finetune_fields.get("class_weights", True) else None
    n_classes = len(split.classes)
    n_train = len(split.samples("train"))
    batch_choices = [b for b in BATCH_SIZES if b <= max(n_train, BATCH_SIZES[0])]
    max_epochs = int(options.epochs)
    direction = "min" if "loss" in options.objective else "max"
    datasets: dict[int, tuple[Any, Any]] = {}

    def data(batch_size: int):
        if batch_size not in datasets:  # one cached pipeline per batch size, shared by the trials
            datasets[batch_size] = (
                make_dataset(split, "train", image_size, batch_size, shuffle=True, seed=seed),
                make_dataset(split, "val", image_size, batch_size, shuffle=False),
            )
        return datasets[batch_size]

    class BackboneHyperModel(kt.HyperModel):  # type: ignore[name-defined]  # kt is imported lazily
        def build(self, hp):
            hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
            dropout = hp.Float("dropout", 0.0, 0.5, step=0.1)
            if freeze_base:
                hp.Float("fine_tune_learning_rate", 1e-6, 1e-3, sampling="log")
                hp.Int("unfreeze_depth", 0, len(spec.unfreeze_points))
            hp.Choice("batch_size", batch_choices)
            keras.utils.set_random_seed(seed)
            model = build_model(spec, n_classes, image_size, head=head, weights=weights, dropout=dropout,
                                bn_inference=finetune_fields.get("bn_inference"))
            _compile(model, hp.get("learning_rate"))
            return model

        def fit(self, hp, model, *args, epochs=max_epochs, initial_epoch=0, callbacks=None, **kwargs):
            train, val = data(hp.get("batch_size"))
            if freeze_base:
                segments = phase_segments(max_epochs, hp.get("unfreeze_depth"), hp.get("learning_rate"),
                                          hp.get("fine_tune_learning_rate"), stage_lr_factor)
            else:
                segments = [(0, max_epochs, -1, hp.get("learning_rate"))]
            logs: dict[str, list[float]] = {}
            for first, end, stage, rate in segments:
                first, end = max(first, initial_epoch), min(end, epochs)
                if first >= end:
                    continue  # a Hyperband round continuing a trial starts past this segment
                set_unfreeze_depth(model, spec, stage)
                _compile(model, rate)
                h = model.fit(train, validation_data=val, epochs=end, initial_epoch=first,
                              callbacks=callbacks or [], class_weight=cw, verbose=0)
                for k, v in h.history.items():
                    logs.setdefault(k, []).extend(v)
            values = [v for v in logs.get(options.objective, []) if math.isfinite(v)]
            if not values:
                raise EdgexferError(f"a tuning trial of {name} reported no finite {options.objective}",
                                    "lower the learning rates or check the data")
            return {options.objective: float(max(values) if direction == "max" else min(values))}

    objective = kt.Objective(options.objective, direction=direction)
    common = {"objective": objective, "seed": seed, "directory": str(Path(project_dir).parent),
              "project_name": Path(project_dir).name, "overwrite": overwrite,
              "executions_per_trial": options.executions_per_trial}
    if options.tuner == "hyperband":
        # brackets repeat until the trial cap: one Hyperband iteration alone can be a single trial at few epochs
        tuner = _without_tensorboard(kt.Hyperband)(BackboneHyperModel(), max_epochs=max_epochs, factor=3,
                                                   hyperband_iterations=int(options.max_trials), **common)
        tuner.oracle.max_trials = int(options.max_trials)  # the base Oracle stops creating trials at this cap
    elif options.tuner == "bayesian":
        tuner = _without_tensorboard(kt.BayesianOptimization)(BackboneHyperModel(), max_trials=int(options.max_trials),
                                                              **common)
    else:
        raise EdgexferError(f"unknown tuner '{options.tuner}'", "use hyperband or bayesian")
    tuner.search(epochs=max_epochs, verbose=0)
    if is_tuning_worker():
        return {"worker": os.environ.get("KERASTUNER_TUNER_ID")}

    trials = []
    for trial in tuner.oracle.trials.values():
        values = dict(trial.hyperparameters.values)
        epochs_run = values.pop("tuner/epochs", max_epochs)
        for key in [k for k in values if k.startswith("tuner/")]:
            values.pop(key)
        score = trial.score
        trials.append({"trial_id": trial.trial_id, "status": str(getattr(trial.status, "value", trial.status)),
                       "score": float(score) if score is not None else None, "epochs": epochs_run,
                       "hyperparameters": values})
    best_trials = [t for t in tuner.oracle.get_best_trials(1) if t.score is not None]
    if not best_trials:
        failed = [t for t in tuner.oracle.trials.values() if getattr(t, "message", None)]
        why = " ".join(str(failed[0].message).split())[-300:] if failed else "no trial reported a score"
        raise EdgexferError(f"no tuning trial of {name} finished ({why})", "fix the cause above, then run the command again")
    best = best_trials[0]
    best_values = {k: v for k, v in best.hyperparameters.values.items() if not k.startswith("tuner/")}
    record = {
        "backbone": name, "tuner": options.tuner, "objective": options.objective, "direction": direction,
        "max_trials": int(options.max_trials), "epochs": max_epochs, "trials": trials,
        "best": {"trial_id": best.trial_id, "score": best.score, "hyperparameters": best_values,
                 "options": finetune_options(best_values)},
    }
    log(f"{name}: best trial {best.trial_id}, {options.objective} {best.score:.4f}: "
        + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in best_values.items()))
    return record

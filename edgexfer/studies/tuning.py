"""Hyperparameter tuning of one backbone with KerasTuner (the ``tune`` extra), on the study's split.

Searched: the head's learning rate, the fine-tuning learning rate, dropout, how deep to unfreeze
(0 = head only, k = up to the backbone's k-th unfreeze point) and the batch size. A backbone
trained from scratch (``weights none``) is not frozen, so only the first, third and fifth apply. The objective
is measured on the validation split only; the test split is never seen while tuning.

A trial builds and trains through the fine-tune's own code (``edgexfer.train.stages``): the same
classifier builder, optimizer (``optimizer``), augmentation, class weights, BatchNorm handling
(trainability set per layer, pretrained BatchNorm in inference mode, momentum fitted to the
steps, precise BatchNorm at the end) and phase schedule, in small: half the epochs (rounded up) on
the frozen base, the rest over the unfreeze stages down to the trial's depth (``tuning_stages``).
Its score is the objective on the validation split after the precise-BatchNorm pass, so it
describes the model the fine-tune would save. Under Hyperband a trial continued in a later round
resumes from its checkpoint and carries on in the stage its epoch number belongs to.

``--max-trials`` caps the number of trials for both tuners (Hyperband's brackets stop early when
the cap is reached). KerasTuner's distributed mode (a chief oracle and workers, configured by
environment variables) is described in docs/tuning.md.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import edgexfer.data.pipeline as pipeline  # make_dataset looked up when called (tests watch it)
from edgexfer._lazy import require
from edgexfer.backbones import get_backbone, resolve_weights
from edgexfer.config import FinetuneConfig
from edgexfer.data.splits import Split, class_weights
from edgexfer.errors import EdgexferError
from edgexfer.train.batchnorm import precise_batchnorm
from edgexfer.train.stages import (
    build_classifier,
    fit_batchnorm_momentum,
    fit_stage,
    plan_trainability,
    restore_batchnorm_momentum,
    training_datasets,
    tuning_stages,
)

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


def is_tuning_worker() -> bool:
    """True in a KerasTuner worker process (distributed mode, not the chief)."""
    return "KERASTUNER_ORACLE_IP" in os.environ and "chief" not in os.environ.get("KERASTUNER_TUNER_ID", "chief")


@dataclass(frozen=True)
class TuningRole:
    """This process's part in KerasTuner's distributed mode: "single" (no distribution), "chief" or "worker"."""

    role: str
    tuner_id: str | None = None
    address: str | None = None

    def describe(self) -> str:
        if self.role == "chief":
            return f"tuning: chief oracle serving at {self.address}; the workers train the trials"
        if self.role == "worker":
            return f"tuning: worker {self.tuner_id} training trials for the chief at {self.address}"
        return "tuning: in this process"


def tuning_role(environ: Any = None) -> TuningRole:
    """The KERASTUNER_* variables read and checked (KerasTuner itself fails late with a traceback)."""
    env = os.environ if environ is None else environ
    ip = env.get("KERASTUNER_ORACLE_IP")
    if ip is None:
        return TuningRole("single")
    fix = ("set KERASTUNER_TUNER_ID (chief, or a unique worker name), KERASTUNER_ORACLE_IP and "
           "KERASTUNER_ORACLE_PORT in every process (docs/tuning.md)")
    port = env.get("KERASTUNER_ORACLE_PORT", "")
    if not ip.strip():
        raise EdgexferError("KERASTUNER_ORACLE_IP is empty", fix)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise EdgexferError(f"KERASTUNER_ORACLE_PORT {port!r} is not a port number (1-65535)", fix)
    tuner_id = env.get("KERASTUNER_TUNER_ID", "")
    if not tuner_id.strip():
        raise EdgexferError("KERASTUNER_ORACLE_IP is set but KERASTUNER_TUNER_ID is not", fix)
    return TuningRole("chief" if "chief" in tuner_id else "worker", tuner_id, f"{ip}:{port}")


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


def trial_config(base: FinetuneConfig, values: dict[str, Any]) -> FinetuneConfig:
    """The FinetuneConfig a trial trains with: the study's options with the trial's hyperparameters."""
    return replace(base, **finetune_options(values))


def base_config(name: str, split_path: str | Path, finetune_fields: dict[str, Any], project_dir: str | Path
                ) -> FinetuneConfig:
    """The study's fine-tune options as a FinetuneConfig on the study's split (``out``: the tuning folder)."""
    known = set(FinetuneConfig.option_names())
    fields = {k: v for k, v in finetune_fields.items() if k in known}
    fields.update(backbone=name, split=str(split_path), out=str(project_dir), verbose=0)
    fields.setdefault("data", str(Path(split_path).parent))
    return FinetuneConfig(**fields)


def train_trial(model: Any, spec: Any, config: FinetuneConfig, split: Any, *, max_epochs: int, depth: int,
                freeze_base: bool, bn_inference: bool, datasets: Any, callbacks: Sequence[Any] = (),
                initial_epoch: int = 0, epochs: int | None = None) -> dict[str, float]:
    """Train one trial through the fine-tune's stage code; return its validation loss and accuracy."""

    image_size = tuple(model.input_shape[1:3])
    epochs = max_epochs if epochs is None else epochs
    stages = tuning_stages(spec, config, freeze_base, max_epochs, depth)
    trained_bn = plan_trainability(model, stages, bn_inference)
    n_train = len(split.samples("train"))
    momenta = fit_batchnorm_momentum(model, trained_bn, -(-n_train // config.batch_size))
    train, val = datasets(config)
    class_weight = _class_weight(split) if config.class_weights else None
    offset = 0
    for stage in stages:
        first, end = max(initial_epoch, offset), min(epochs, offset + stage.epochs)
        if first < end:  # a Hyperband round continuing a trial starts past the stages it already trained
            fit_stage(model, stage, config, train, val, bn_inference=bn_inference, class_weight=class_weight,
                      callbacks=callbacks, verbose=0, first_epoch=first, end_epoch=end)
        offset += stage.epochs
    restore_batchnorm_momentum(model, momenta)
    bn_ds = pipeline.make_dataset(split, "train", image_size, config.batch_size, shuffle=True, seed=config.seed + 1, cache=False)
    precise_batchnorm(model, bn_ds, trained_bn, config.precise_bn_batches)
    loss, accuracy = model.evaluate(val, verbose=0)
    return {"val_loss": float(loss), "val_accuracy": float(accuracy)}


def _class_weight(split: Any) -> dict[int, float]:
    return {int(k): float(v) for k, v in class_weights(split).items()}


def tune_backbone(*, name: str, split_path: str | Path, finetune_fields: dict[str, Any], options: Any,
                  project_dir: str | Path, log: Callable[[str], None] = print, overwrite: bool = False) -> dict[str, Any]:
    """Search hyperparameters of backbone ``name``; return the trials and the best configuration.

    ``finetune_fields`` are the study's fine-tune options (image_size, weights, head, seed…); the
    best values come back as ``best["options"]``, named as FinetuneConfig fields.
    """
    role = tuning_role()  # a bad KERASTUNER_* setting: refused before anything is written
    kt = require("keras_tuner", "--tune")
    keras = require("keras", "tuning")

    spec = get_backbone(name)
    split = Split.load(split_path)
    base = base_config(name, split_path, finetune_fields, project_dir)
    image_size = spec.check_image_size(base.image_size)
    weights = resolve_weights(spec, base.weights)
    seed = base.seed
    # as in the fine-tune stage: a base trained from scratch is not frozen, so there is no unfreezing to tune
    pretrained = weights != "none"
    freeze_base = pretrained if base.freeze_base is None else base.freeze_base
    bn_inference = pretrained if base.bn_inference is None else base.bn_inference
    n_classes = len(split.classes)
    n_train = len(split.samples("train"))
    batch_choices = [b for b in BATCH_SIZES if b <= max(n_train, BATCH_SIZES[0])]
    max_epochs = int(options.epochs)
    direction = "min" if "loss" in options.objective else "max"
    cached: dict[int, tuple[Any, Any]] = {}
    trained: list[str] = []  # trials this process trained (none on a distributed chief: it only serves the oracle)

    def datasets(config: FinetuneConfig):
        if config.batch_size not in cached:  # one pipeline per batch size, shared by the trials
            cached[config.batch_size] = training_datasets(split, image_size, config)
        return cached[config.batch_size]

    class BackboneHyperModel(kt.HyperModel):  # type: ignore[name-defined]  # kt is imported lazily
        def build(self, hp):
            hp.Float("learning_rate", 1e-4, 1e-2, sampling="log")
            hp.Float("dropout", 0.0, 0.5, step=0.1)
            if freeze_base:
                hp.Float("fine_tune_learning_rate", 1e-6, 1e-3, sampling="log")
                hp.Int("unfreeze_depth", 0, len(spec.unfreeze_points))
            hp.Choice("batch_size", batch_choices)
            keras.utils.set_random_seed(seed)
            return build_classifier(spec, n_classes, image_size, trial_config(base, hp.values), weights, bn_inference)

        def fit(self, hp, model, *args, epochs=max_epochs, initial_epoch=0, callbacks=None, **kwargs):
            trained.append(str(hp.values))
            config = trial_config(base, hp.values)
            depth = int(hp.get("unfreeze_depth")) if freeze_base else 0
            logs = train_trial(model, spec, config, split, max_epochs=max_epochs, depth=depth,
                               freeze_base=freeze_base, bn_inference=bn_inference, datasets=datasets,
                               callbacks=callbacks or [], initial_epoch=initial_epoch, epochs=epochs)
            value = logs.get(options.objective)
            if value is None or not math.isfinite(value):
                raise EdgexferError(f"a tuning trial of {name} reported no finite {options.objective}",
                                    "lower the learning rates or check the data")
            return {options.objective: value}

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
    if role.role != "single":
        log(f"{name}: {role.describe()}")
    tuner.search(epochs=max_epochs, verbose=0)
    if role.role == "worker":
        log(f"{name}: worker {role.tuner_id} trained {len(trained)} trial(s); the chief's search is over")
        return {"worker": role.tuner_id, "trials_trained": len(trained)}

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

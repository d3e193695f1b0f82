"""The training loop: the strategy (``--distribute``) and mixed precision, the stages of the schedule run in
order (each resumable from its last epoch, skipped when finished) and the console lines that frame them
(the plan, where each stage's epochs fall, each phase's summary)."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import edgexfer.data.pipeline as pipeline  # make_dataset looked up when called (tests watch it)
from edgexfer._lazy import require
from edgexfer.config import FinetuneConfig
from edgexfer.errors import EdgexferError
from edgexfer.train.callbacks import (
    BEST_WEIGHTS,
    RESUME_FILE,
    RunState,
    load_weights,
    make_progress_callback,
    make_resume_callback,
    read_resume_point,
)
from edgexfer.train.distribute import (
    check_batches,
    is_worker_failure,
    keras_multiworker_fixes,
    make_distribution,
    worker_failure,
)
from edgexfer.train.stages import _all_layers, fit_stage, training_callbacks, training_datasets


def load_tensorflow():
    tf = require("tensorflow", "fine-tuning")
    keras = require("keras", "fine-tuning")
    return tf, keras


def make_run_distribution(distribute: str, cluster):
    """The strategy of ``--distribute`` (edgexfer.train.distribute), made before any other TensorFlow work."""

    tf, _keras = load_tensorflow()
    return make_distribution(tf, distribute, cluster)


def train_distributed(model, distribution, split, image_size, config, stages, out: Path, callbacks, say, resolved,
                       run_folder: Path) -> list[dict[str, Any]]:
    """:func:`_train` under the run's strategy; with multiworker, a process of the cluster that dies ends
    this one with one line (the collective times out or is aborted) and the same command resumes."""
    if distribution.kind != "multiworker":
        return _train(model, distribution.strategy, split, image_size, config, stages, out, callbacks, say, resolved)

    check_batches(config.batch_size, len(split.samples("train")), distribution.replicas)
    tf, _keras = load_tensorflow()
    try:
        with keras_multiworker_fixes(model):
            # each epoch's last partial batch is left out: split over the replicas it can leave one of them an
            # empty batch, on which Keras' BatchNormalization fails
            return _train(model, distribution.strategy, split, image_size, config, stages, out, callbacks, say,
                          resolved, drop_remainder=True)
    except Exception as exc:
        if is_worker_failure(tf, exc):
            raise worker_failure(exc, distribution.cluster, run_folder) from None
        raise


def mixed_precision_usable(tf, requested: bool, say) -> bool:
    if not requested:
        return False
    if not tf.config.list_physical_devices("GPU"):
        say("mixed precision asked for, but no GPU is visible: training in float32")
        return False
    return True



def _train(model, strategy, split, image_size, config: FinetuneConfig, stages, out: Path, extra_callbacks, say,
           resolved, drop_remainder: bool = False) -> list[dict[str, Any]]:
    import keras


    checkpoints = out / "checkpoints"
    checkpoints.mkdir(parents=True, exist_ok=True)
    state = RunState(checkpoints, config.monitor)
    order = [s.key for s in stages]
    train_ds, val_ds = training_datasets(split, image_size, config)
    train_ds.drop_remainder = drop_remainder
    if drop_remainder:  # validation in batches of one image per replica (at most replicas - 1 images left out)

        val_ds = pipeline.make_dataset(split, "val", image_size, strategy.num_replicas_in_sync, shuffle=False,
                              cache=config.cache, drop_remainder=True)
    class_weight = {int(k): v for k, v in resolved["class_weights"].items()} if resolved["class_weights"] else None
    verbose = _verbose(config.verbose)
    logging_callbacks = []
    if config.tensorboard:
        logging_callbacks.append(keras.callbacks.TensorBoard(str(out / "tensorboard")))

    # resume = uninterrupted: the stage in progress continues from its last finished epoch (weights,
    # optimizer, random generators, early-stopping count); each epoch's data order and augmentation
    # depend on (seed, epoch) alone (TrainData)
    point = read_resume_point(checkpoints / RESUME_FILE)  # used by the first fit of this process only

    phase_started: dict[int, float] = {}
    for i, stage in enumerate(stages):
        last_of_phase = i + 1 == len(stages) or stages[i + 1].phase != stage.phase
        if stage.key in state.completed:
            if last_of_phase:
                phase_summary(say, stage.phase, stages, state, None)
            continue
        if state.completed and (checkpoints / BEST_WEIGHTS).is_file():
            load_weights(model, checkpoints / BEST_WEIGHTS)  # each stage starts from the best model so far
        phase_started.setdefault(stage.phase, time.perf_counter())
        first = point["epochs_done"] if point is not None and point["stage"] == stage.key else 0
        name = f"phase {stage.phase}" + (f" stage {stage.key.rsplit('stage', 1)[1]}" if stage.phase == 2 else "")
        offset = state.epochs_before(stage.key, order)
        # the plan above described the stage: here only where its epochs fall, as Keras counts them per stage
        say(f"{name} starts: its epoch 1/{stage.epochs} is epoch {offset + 1} overall"
            + (f"; resuming at epoch {first + 1}" if first else ""))
        shared = training_callbacks(config)
        run_callbacks = [make_resume_callback(point, stage, state, shared), make_progress_callback(state, stage, order)]
        try:
            if first < stage.epochs and not _stopped_early(state, stage, config, first):
                point = None  # the resume callback restores it in this fit
                fit_stage(model, stage, config, train_ds, val_ds, bn_inference=resolved["bn_inference"],
                          class_weight=class_weight, callbacks=run_callbacks + logging_callbacks + list(extra_callbacks),
                          verbose=verbose, strategy=strategy, first_epoch=first, shared_callbacks=shared,
                          epoch_offset=state.epochs_before(stage.key, order))
        except KeyboardInterrupt:
            say(f"interrupted; run the same command again to resume from {out}")
            raise
        state.completed.append(stage.key)
        state.save()
        if last_of_phase:
            phase_summary(say, stage.phase, stages, state, time.perf_counter() - phase_started[stage.phase])
    if not (checkpoints / BEST_WEIGHTS).is_file():
        raise EdgexferError(f"no epoch produced a finite {config.monitor}", "lower the learning rate or check the data")
    load_weights(model, checkpoints / BEST_WEIGHTS)
    (checkpoints / RESUME_FILE).unlink(missing_ok=True)
    return state.history


def _stopped_early(state, stage, config: FinetuneConfig, done: int) -> bool:
    """True when early stopping had ended this stage at its last recorded epoch (killed just after)."""
    patience = config.early_stopping_patience
    if not patience or not done:
        return False
    rows = [r[config.monitor] for r in state.history if r["stage"] == stage.key and r["epoch"] <= done]
    if len(rows) != done:
        return False
    better = (lambda a, b: a > b) if "acc" in config.monitor else (lambda a, b: a < b)
    best, wait = None, 0
    for value in rows:
        if best is None or better(value, best):
            best, wait = value, 0
        else:
            wait += 1
    return wait >= patience


def _verbose(verbose: int | str) -> int:
    """Keras progress: a bar on a terminal, one line per epoch in a log file or pipe."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 2
    return int(verbose)


def phase_summary(say, phase: int, stages, state, seconds: float | None) -> None:
    keys = {s.key for s in stages if s.phase == phase}
    rows = [r for r in state.history if r["stage"] in keys]
    if not rows:
        return
    mon = state.monitor
    pick = max if state.mode == "max" else min
    best = pick(rows, key=lambda r: r.get(mon, float("nan")))
    first = next(s for s in stages if s.phase == phase)
    if phase == 1:
        label = "head, frozen backbone" if first.unfreeze is None else "all layers"
    else:
        label = f"gradual unfreezing, {len(keys)} stage(s)" if first.unfreeze != "all" else "all layers, lower rate"
    took = f" in {seconds:.0f} s" if seconds is not None else " (done before)"
    stage = f" stage {str(best['stage']).rsplit('stage', 1)[1]}" if phase == 2 else ""
    say(f"phase {phase} ({label}): {len(rows)} epoch(s){took}; best {mon} {best.get(mon, float('nan')):.4f} "
        f"(val_accuracy {best.get('val_accuracy', float('nan')):.3f}) at phase {phase}{stage} epoch {best['epoch']} "
        f"(epoch {best['epoch_global']} overall)")


def momentum_of(model, momenta: dict[str, float]) -> float:
    return float(next(layer.momentum for layer in _all_layers(model) if layer.name in momenta))


def print_plan(say, stages) -> None:
    total = sum(s.epochs for s in stages)
    say(f"plan: {len({s.phase for s in stages})} phase(s), {total} epoch(s) at most (early stopping may end a stage sooner)")
    for s in stages:
        name = f"phase {s.phase}" + (f" stage {s.key.rsplit('stage', 1)[1]}" if s.phase == 2 else "")
        say(f"  {name}: {s.label}, {s.epochs} epoch(s) at learning rate {s.learning_rate:.2g}, "
            f"{s.trainable_params:,} trainable parameters")

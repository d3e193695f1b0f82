"""Fine-tuning: phase 1 trains the head on a frozen backbone, phase 2 unfreezes it gradually.

``finetune(config)`` writes the run directory of docs/contracts.md section 2. The same call on the
same directory resumes an interrupted run (finished stages are skipped, the stage in progress
continues from its last epoch through Keras ``BackupAndRestore``); a finished run is returned as is.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import edgexfer.contracts.run as run_contract
import edgexfer.data.pipeline as pipeline  # make_dataset looked up when called (tests watch it)
import edgexfer.report.plots as plots
from edgexfer._folders import refuse_links_inside, refuse_overlap
from edgexfer._lazy import is_available, missing_module_error, require
from edgexfer.backbones import BackboneSpec, build_base, get_backbone, resolve_weights
from edgexfer.config import RESUME_FREE, FinetuneConfig
from edgexfer.data.scan import scan_source
from edgexfer.data.sources import discover
from edgexfer.data.splits import Split, class_weights, make_split
from edgexfer.data.synthetic import generate_demo
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.metrics import classification_metrics
from edgexfer.io import fix_modes, lock_folder, make_temp_dir, read_json, sha256_file, write_json, write_text
from edgexfer.limits import check_batch_fits
from edgexfer.train.batchnorm import (
    BatchNormRecord,
    keep_better_statistics,
    moving_statistics,
    precise_batchnorm,
)
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
    read_tf_config,
    worker_failure,
)
from edgexfer.train.sanity import check_run
from edgexfer.train.stages import (
    Stage,
    _all_layers,
    augment_config,
    build_classifier,
    fit_batchnorm_momentum,
    fit_stage,
    plan_stages,
    plan_trainability,
    resolved_fine_tune_epochs,
    restore_batchnorm_momentum,
    training_callbacks,
    training_datasets,
)
from edgexfer.versions import library_versions

CONFIG_SCHEMA = "edgexfer.finetune-config/1"
MODEL_FILE = run_contract.MODEL_FILE
# what may sit in a run directory before config.json does: the demo data made for it
_PRE_RUN_ENTRIES = {"data"}


@dataclass
class RunResult:
    """A finished run: its directory, test metrics, run.json record and history rows."""

    run_dir: Path
    metrics: dict[str, Any]
    run: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    resumed: bool = False

    @property
    def model_path(self) -> Path:
        return self.run_dir / MODEL_FILE


def load_run(run_dir: str | os.PathLike[str]) -> RunResult:
    """Read a finished run directory (run.json present) without TensorFlow, through the run contract
    (``edgexfer.contracts.run``: run.json checked, metrics.json of any version, history.csv parsed)."""
    record = run_contract.load_run(run_dir, require_files=False)
    metrics = run_contract.read_metrics(record.path).to_dict()
    return RunResult(record.path, metrics, record.record, run_contract.read_history(record.path))


# ------------------------------------------------------------------------------------ the run


@dataclass(frozen=True)
class RunPlan:
    """What ``finetune`` decided before training, checked: the options, the backbone at its image size and
    weights, what trains, the stage schedule, and the options record run.json keeps."""

    config: FinetuneConfig
    spec: BackboneSpec
    image_size: tuple[int, int]
    weights: str
    freeze_base: bool
    bn_inference: bool
    stages: list[Stage]
    options: dict[str, Any]


def finetune(
    config: FinetuneConfig,
    *,
    callbacks: Sequence[Any] = (),
    log: Callable[[str], None] | None = print,
) -> RunResult:
    """Train, evaluate on the test split, and write the run directory ``config.out``.

    ``callbacks``: extra Keras callbacks for every ``fit``. ``log``: where the one-line messages go
    (None: silent); Keras progress follows ``config.verbose``. Every option is checked before
    anything is written, and the folder is locked (``edgexfer.io.lock_folder``) for the whole run:
    a second process on the same ``out`` fails at once.
    """
    say = log or (lambda _msg: None)
    config.validate()

    spec = get_backbone(config.backbone)
    image_size = spec.check_image_size(config.image_size)
    check_batch_fits(config.batch_size, *image_size)  # the backbone's native size, when --image-size is not given
    weights = resolve_weights(spec, config.weights)
    if config.data != "demo" and not Path(config.data).exists():
        raise EdgexferError(f"data path {config.data} does not exist", "pass a data folder, CSV, .npz file, or demo")
    if config.split and not Path(config.split).is_file():
        raise EdgexferError(f"split file {config.split} does not exist", "pass the split.json of a run or study")
    pretrained = weights != "none"
    freeze_base = config.freeze_base if config.freeze_base is not None else pretrained
    bn_inference = config.bn_inference if config.bn_inference is not None else pretrained
    fine_tune_epochs = resolved_fine_tune_epochs(config, pretrained)
    cluster = read_tf_config() if config.distribute == "multiworker" else None  # a bad TF_CONFIG: refused now
    stages = plan_stages(spec, config, freeze_base, fine_tune_epochs)  # raises when there is nothing to train
    if config.augment is not None:
        augment_config(config)  # refuse bad augmentation options now
    if config.tensorboard:
        if not is_available("tensorboard"):
            raise missing_module_error("tensorboard", ImportError("tensorboard"), "--tensorboard")
    out = Path(config.out).expanduser().resolve()
    if out.exists() and not out.is_dir():
        raise EdgexferError(f"--out {out} is a file", "pass a folder for the run")
    # a run folder inside its data folder would become training data (its plots read as images of a class)
    refuse_overlap(config.out, {"data": None if config.data == "demo" else config.data, "split file": config.split})
    refuse_links_inside(out)
    options = _options_record(config, weights, image_size, fine_tune_epochs)
    distribution = None
    if cluster is not None:
        if _check_run_dir(out, options):  # finished: nothing to train, no need to wait for the other processes
            say(f"{out} already holds this finished run; nothing to do (delete it to train again)")
            return load_run(out)
        # before any other TensorFlow work (MultiWorkerMirroredStrategy wants it first); waits here until every
        # process of TF_CONFIG has started
        distribution = _distribution(config.distribute, cluster)
        say(distribution.describe())

        check_batches(config.batch_size, None, distribution.replicas)
    if weights != "none":
        # fail before touching any data: a weights file that does not fit, an ImageNet download that fails
        build_base(spec, image_size, weights)
    plan = RunPlan(config, spec, image_size, weights, freeze_base, bn_inference, stages, options)
    if distribution is not None and not distribution.writes_run:  # a multi-worker worker: the chief writes the run
        return _run_worker(plan, distribution, out, callbacks, say)
    lock = lock_folder(out, "edgexfer finetune")  # held until the run is written (or fails)
    try:
        if _check_run_dir(out, options):
            result = load_run(out)
            say(f"{out} already holds this finished run; nothing to do (delete it to train again)")
            return result
        result = _run(plan, out, callbacks, say, distribution)
        fix_modes(out)
        return result
    finally:
        lock.release()


def _run_worker(plan: RunPlan, distribution, out: Path, callbacks, say) -> RunResult:
    """A multi-worker worker other than the chief: it reads the chief's run folder (never locks or writes
    it), trains in step with the chief in a temporary folder seeded with the chief's files (a resumed
    run continues from the chief's checkpoints), and removes that folder."""
    import shutil

    if _check_run_dir(out, plan.options):
        say(f"{out} already holds this finished run; nothing to do (delete it to train again)")
        return load_run(out)
    work = make_temp_dir("edgexfer-worker-")
    try:
        if (out / "config.json").is_file():  # a run to resume: start from the chief's state
            for name in ("config.json", "split.json", "labels.json", "skipped.txt"):
                if (out / name).is_file():
                    shutil.copy2(out / name, work / name)
            if (out / "checkpoints").is_dir():
                shutil.copytree(out / "checkpoints", work / "checkpoints")
        result = _run(plan, work, callbacks, say, distribution)
        say(f"{distribution.cluster.name if distribution.cluster else 'worker'}: done; the chief writes the run to {out}")
        return RunResult(out, result.metrics, {}, result.history, resumed=result.resumed)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(plan: RunPlan, out: Path, callbacks, say, distribution) -> RunResult:
    config, spec, image_size, weights = plan.config, plan.spec, plan.image_size, plan.weights
    freeze_base, bn_inference, stages, options = plan.freeze_base, plan.bn_inference, plan.stages, plan.options
    split, skipped = _prepare_data(config, out, say)
    classes = split.classes

    tf, keras = _tensorflow()
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        # without it, seeded augmentation in parallel tf.data maps and threaded kernels make two runs of
        # the same command differ (measured here: test accuracy 0.74 and 0.53 from one seed)
        tf.config.experimental.enable_op_determinism()
    if distribution is None:
        distribution = _distribution(config.distribute, None)
        say(distribution.describe())
    strategy, replicas = distribution.strategy, distribution.replicas
    mixed = _mixed_precision_usable(tf, config.mixed_precision, say)
    previous_policy = keras.mixed_precision.global_policy()
    if mixed:
        keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        with strategy.scope():
            model = build_classifier(spec, len(classes), image_size, config, weights, bn_inference)
        resolved = {
            "backbone": spec.name, "image_size": list(image_size), "weights": weights, "classes": classes,
            "freeze_base": freeze_base, "bn_inference": bn_inference, "mixed_precision": mixed,
            "replicas": replicas, "preprocessing": spec.preprocessing,
            "class_weights": _class_weights(split) if config.class_weights else None,
            "augment": augment.to_dict() if (augment := augment_config(config)) is not None else None,
        }
        resumed = (out / "config.json").is_file()
        if not resumed:
            _write_start(out, options, resolved, split, classes, skipped)
        else:
            say(f"resuming the run in {out}")

        trained_bn = plan_trainability(model, stages, bn_inference)
        _print_plan(say, stages)
        steps = -(-len(split.samples("train")) // config.batch_size)
        momenta = fit_batchnorm_momentum(model, trained_bn, steps)
        if momenta:
            say(f"BatchNorm momentum {_momentum_of(model, momenta):.3g} (from {max(momenta.values()):.3g}) for the "
                f"{len(momenta)} layer(s) that train, so validation sees statistics of the current weights")
        training_momentum = _momentum_of(model, momenta) if momenta else None
        history = _train_distributed(model, distribution, split, image_size, config, stages, out, callbacks, say,
                                     resolved, Path(options["out"]))
        restore_batchnorm_momentum(model, momenta)

        if mixed:  # model.keras is always float32: export and bench expect it
            keras.mixed_precision.set_global_policy(previous_policy)
            float_model = build_classifier(spec, len(classes), image_size, config, "none", bn_inference)
            float_model.set_weights(model.get_weights())
            model = float_model
        bn_record = _recalibrate_batchnorm(model, split, image_size, config, trained_bn, say)
        _save_model(model, out / MODEL_FILE)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    metrics, y_true, probabilities, val_accuracy = _evaluate(keras, out / MODEL_FILE, split, image_size,
                                                             config.batch_size)
    sanity = _sanity(metrics, y_true, split, val_accuracy, history, config.monitor)
    metrics["val_accuracy"] = val_accuracy
    metrics["batchnorm"] = {**bn_record.to_dict(), "training_momentum": training_momentum}
    metrics["sanity"] = sanity.to_dict()
    run_contract.write_metrics(out, run_contract.RunMetrics.from_dict(metrics))
    run_contract.write_history(out, history)
    _plots(out, history, y_true, probabilities, classes, stages, config.monitor)
    record = run_contract.RunRecord(
        path=out,
        backbone=spec.name,
        image_size=(int(image_size[0]), int(image_size[1])),
        classes=list(classes),
        head=config.head,
        weights=weights,
        preprocessing=spec.preprocessing,
        model_file=MODEL_FILE,
        model_sha256=sha256_file(out / MODEL_FILE),
        split_sha256=sha256_file(out / "split.json"),
        sanity=sanity.verdict,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        extra={"plan": [s.to_dict() for s in stages], "batchnorm": metrics["batchnorm"], "versions": _versions()},
    )
    record.write()  # last: marks the run finished
    run = record.record
    say(f"test: accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['f1']:.3f}, "
        f"AUC {_fmt(metrics['auc'])} on {metrics['n']} images; run written to {out}")
    if not sanity.ok:
        say(sanity.warning())
    return RunResult(out, metrics, run, history, resumed=resumed)


def _momentum_of(model, momenta: dict[str, float]) -> float:
    return float(next(layer.momentum for layer in _all_layers(model) if layer.name in momenta))


def _print_plan(say, stages) -> None:
    total = sum(s.epochs for s in stages)
    say(f"plan: {len({s.phase for s in stages})} phase(s), {total} epoch(s) at most (early stopping may end a stage sooner)")
    for s in stages:
        name = f"phase {s.phase}" + (f" stage {s.key.rsplit('stage', 1)[1]}" if s.phase == 2 else "")
        say(f"  {name}: {s.label}, {s.epochs} epoch(s) at learning rate {s.learning_rate:.2g}, "
            f"{s.trainable_params:,} trainable parameters")


def _recalibrate_batchnorm(model, split, image_size, config: FinetuneConfig, trained_bn, say):
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


def _saved_row(history, monitor: str) -> dict[str, Any] | None:
    """The history row of the epoch whose weights were saved: the best ``monitor`` over every stage."""
    import math

    rows = [r for r in history if isinstance(r.get(monitor), (int, float)) and math.isfinite(r[monitor])]
    return (max if "acc" in monitor else min)(rows, key=lambda r: r[monitor]) if rows else None


def _sanity(metrics, y_true, split, val_accuracy, history, monitor: str):

    best = _saved_row(history, monitor)
    train_accuracy = best.get("accuracy") if best else None  # the epoch whose weights were kept
    return check_run(y_true, metrics["accuracy"], [s.label for s in split.samples("train")], split.classes,
                     val_accuracy=val_accuracy, train_accuracy=train_accuracy)


# ------------------------------------------------------------------------------- run directory


def _options_record(config: FinetuneConfig, weights: str, image_size: tuple[int, int],
                    fine_tune_epochs: int) -> dict[str, Any]:
    """The options as recorded in config.json: defaults that depend on the backbone resolved."""
    options = config.to_dict()
    options["weights"] = weights
    options["fine_tune_epochs"] = fine_tune_epochs
    if options["image_size"] is None and image_size[0] == image_size[1]:
        options["image_size"] = image_size[0]
    if options["data"] != "demo":
        options["data"] = str(Path(options["data"]).expanduser().resolve())
    options["out"] = str(Path(options["out"]).expanduser().resolve())
    if options.get("split"):
        options["split"] = str(Path(options["split"]).expanduser().resolve())
    return options


def _check_run_dir(out: Path, options: dict[str, Any]) -> bool:
    """True when ``out`` holds this finished run; raise when it holds something else."""
    if not out.exists():
        return False
    config_file = out / "config.json"
    if config_file.is_file():
        previous = read_json(config_file, "run config")
        differing = [k for k, v in options.items() if k not in RESUME_FREE and previous.get(k) != v]
        if differing:
            details = ", ".join(f"{k}: {previous.get(k)!r} there, {options[k]!r} now" for k in differing[:3])
            raise EdgexferError(f"{out} holds a different run ({details})",
                                "choose another --out, or delete that folder to start over")
        return (out / "run.json").is_file()
    foreign = sorted(p.name for p in out.iterdir() if p.name not in _PRE_RUN_ENTRIES)
    if foreign:
        raise EdgexferError(f"{out} is not empty and holds no edgexfer run ({', '.join(foreign[:3])} …)",
                            "choose an empty or new --out folder")
    return False


def _prepare_data(config: FinetuneConfig, out: Path, say):
    split_file = out / "split.json"
    if split_file.is_file() and (out / "config.json").is_file():
        return Split.load(split_file), _read_skipped(out / "skipped.txt")
    if config.split:  # a given split (a study's): the same images in each part, read from config.data
        split = Split.load(config.split, data_root=None if config.data == "demo" else config.data)
        say(f"data: split {config.split}; " + ", ".join(f"{len(split.samples(n))} {n}" for n in split.names))
        return split, []
    if config.data == "demo":
        data_dir = generate_demo(out / "data" / "demo", per_class=config.demo_per_class, size=config.demo_size,
                                 seed=config.seed)
        say(f"synthetic demo data: {config.demo_per_class} images per class at {config.demo_size} px in {data_dir}")
    else:
        data_dir = Path(config.data).expanduser()
    source = discover(data_dir)
    scan = scan_source(source)
    if scan.skipped:
        say(f"skipping {len(scan.skipped)} unreadable file(s); listed in skipped.txt")
    split = make_split(scan.source, fractions=config.split_fractions, seed=config.seed)
    counts = {name: len(split.samples(name)) for name in split.names}
    say(f"data: {len(split.classes)} classes ({', '.join(split.classes)}); "
        + ", ".join(f"{n} {name}" for name, n in counts.items()))
    return split, scan.skipped


def _read_skipped(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        return []
    return [tuple(line.split("\t", 1)) for line in path.read_text().splitlines() if line]  # type: ignore[misc]


def _write_start(out: Path, options, resolved, split, classes, skipped) -> None:
    out.mkdir(parents=True, exist_ok=True)
    split.save(out / "split.json")
    write_json(out / "labels.json", classes)
    if skipped:
        write_text(out / "skipped.txt", "".join(f"{ref}\t{reason}\n" for ref, reason in skipped))
    # config.json claims the folder for this run: written once the model built and the data is ready
    write_json(out / "config.json", {**options, "schema": CONFIG_SCHEMA, "resolved": resolved, "versions": _versions()})


def _save_model(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial.keras")  # Keras wants the .keras suffix
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _plots(out: Path, history, y_true, probabilities, classes, stages, monitor: str) -> None:
    saved = _saved_row(history, monitor)
    plots.training_curves(history, out / "plots", monitor=monitor,
                          stage_labels={s.key: f"{plots.stage_name(s.key)}: {s.label}" for s in stages},
                          saved_epoch=int(saved["epoch_global"]) if saved else None)
    plots.classification_plots(y_true, probabilities, classes, out / "plots",
                               title=f"test split, {len(y_true)} images, saved model")


# ------------------------------------------------------------------------------------ training


def _tensorflow():
    tf = require("tensorflow", "fine-tuning")
    keras = require("keras", "fine-tuning")
    return tf, keras


def _distribution(distribute: str, cluster):
    """The strategy of ``--distribute`` (edgexfer.train.distribute), made before any other TensorFlow work."""

    tf, _keras = _tensorflow()
    return make_distribution(tf, distribute, cluster)


def _train_distributed(model, distribution, split, image_size, config, stages, out: Path, callbacks, say, resolved,
                       run_folder: Path) -> list[dict[str, Any]]:
    """:func:`_train` under the run's strategy; with multiworker, a process of the cluster that dies ends
    this one with one line (the collective times out or is aborted) and the same command resumes."""
    if distribution.kind != "multiworker":
        return _train(model, distribution.strategy, split, image_size, config, stages, out, callbacks, say, resolved)

    check_batches(config.batch_size, len(split.samples("train")), distribution.replicas)
    tf, _keras = _tensorflow()
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


def _mixed_precision_usable(tf, requested: bool, say) -> bool:
    if not requested:
        return False
    if not tf.config.list_physical_devices("GPU"):
        say("mixed precision asked for, but no GPU is visible: training in float32")
        return False
    return True


def _class_weights(split) -> dict[str, float]:
    return {str(k): v for k, v in class_weights(split).items()}


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
                _phase_summary(say, stage.phase, stages, state, None)
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
            _phase_summary(say, stage.phase, stages, state, time.perf_counter() - phase_started[stage.phase])
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


def _phase_summary(say, phase: int, stages, state, seconds: float | None) -> None:
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


# ---------------------------------------------------------------------------------- evaluation


def _evaluate(keras, model_path: Path, split, image_size, batch_size: int):
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


def _versions() -> dict[str, Any]:
    return library_versions()


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


"""Fine-tuning: phase 1 trains the head on a frozen backbone, phase 2 unfreezes it gradually.

``finetune(config)`` writes the run directory of docs/contracts.md section 2. The same call on the
same directory resumes an interrupted run (finished stages are skipped, the stage in progress
continues from its last epoch through Keras ``BackupAndRestore``); a finished run is returned as is.

This module decides and orders (options checked, the plan, the lock, the run's steps); the steps live beside
it: ``loop`` (the strategy and the stages run in order), ``evaluation`` (precise BatchNorm, test metrics of
the saved model, sanity) and ``rundir`` (what is written to the run folder).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import edgexfer.contracts.run as run_contract
from edgexfer._folders import refuse_links_inside, refuse_overlap
from edgexfer._lazy import is_available, missing_module_error
from edgexfer.backbones import BackboneSpec, build_base, get_backbone, resolve_weights
from edgexfer.config import FinetuneConfig
from edgexfer.data.splits import class_weights
from edgexfer.errors import EdgexferError
from edgexfer.io import fix_modes, lock_folder, make_temp_dir, sha256_file
from edgexfer.limits import check_batch_fits
from edgexfer.train.distribute import check_batches, read_tf_config
from edgexfer.train.evaluation import evaluate_saved_model, recalibrate_batchnorm, sanity_check
from edgexfer.train.loop import (
    load_tensorflow,
    make_run_distribution,
    mixed_precision_usable,
    momentum_of,
    print_plan,
    train_distributed,
)
from edgexfer.train.rundir import (
    MODEL_FILE,
    check_run_dir,
    options_record,
    prepare_data,
    run_versions,
    save_model,
    write_plots,
    write_start,
)
from edgexfer.train.stages import (
    Stage,
    augment_config,
    build_classifier,
    fit_batchnorm_momentum,
    plan_stages,
    plan_trainability,
    resolved_fine_tune_epochs,
    restore_batchnorm_momentum,
)


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
    options = options_record(config, weights, image_size, fine_tune_epochs)
    distribution = None
    if cluster is not None:
        if check_run_dir(out, options):  # finished: nothing to train, no need to wait for the other processes
            say(f"{out} already holds this finished run; nothing to do (delete it to train again)")
            return load_run(out)
        # before any other TensorFlow work (MultiWorkerMirroredStrategy wants it first); waits here until every
        # process of TF_CONFIG has started
        distribution = make_run_distribution(config.distribute, cluster)
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
        if check_run_dir(out, options):
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

    if check_run_dir(out, plan.options):
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
    split, skipped = prepare_data(config, out, say)
    classes = split.classes

    tf, keras = load_tensorflow()
    keras.utils.set_random_seed(config.seed)
    if config.deterministic:
        # without it, seeded augmentation in parallel tf.data maps and threaded kernels make two runs of
        # the same command differ (measured here: test accuracy 0.74 and 0.53 from one seed)
        tf.config.experimental.enable_op_determinism()
    if distribution is None:
        distribution = make_run_distribution(config.distribute, None)
        say(distribution.describe())
    strategy, replicas = distribution.strategy, distribution.replicas
    mixed = mixed_precision_usable(tf, config.mixed_precision, say)
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
            write_start(out, options, resolved, split, classes, skipped)
        else:
            say(f"resuming the run in {out}")

        trained_bn = plan_trainability(model, stages, bn_inference)
        print_plan(say, stages)
        steps = -(-len(split.samples("train")) // config.batch_size)
        momenta = fit_batchnorm_momentum(model, trained_bn, steps)
        if momenta:
            say(f"BatchNorm momentum {momentum_of(model, momenta):.3g} (from {max(momenta.values()):.3g}) for the "
                f"{len(momenta)} layer(s) that train, so validation sees statistics of the current weights")
        training_momentum = momentum_of(model, momenta) if momenta else None
        history = train_distributed(model, distribution, split, image_size, config, stages, out, callbacks, say,
                                     resolved, Path(options["out"]))
        restore_batchnorm_momentum(model, momenta)

        if mixed:  # model.keras is always float32: export and bench expect it
            keras.mixed_precision.set_global_policy(previous_policy)
            float_model = build_classifier(spec, len(classes), image_size, config, "none", bn_inference)
            float_model.set_weights(model.get_weights())
            model = float_model
        bn_record = recalibrate_batchnorm(model, split, image_size, config, trained_bn, say)
        save_model(model, out / MODEL_FILE)
    finally:
        keras.mixed_precision.set_global_policy(previous_policy)

    metrics, y_true, probabilities, val_accuracy = evaluate_saved_model(keras, out / MODEL_FILE, split, image_size,
                                                             config.batch_size)
    sanity = sanity_check(metrics, y_true, split, val_accuracy, history, config.monitor)
    metrics["val_accuracy"] = val_accuracy
    metrics["batchnorm"] = {**bn_record.to_dict(), "training_momentum": training_momentum}
    metrics["sanity"] = sanity.to_dict()
    run_contract.write_metrics(out, run_contract.RunMetrics.from_dict(metrics))
    run_contract.write_history(out, history)
    write_plots(out, history, y_true, probabilities, classes, stages, config.monitor)
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
        extra={"plan": [s.to_dict() for s in stages], "batchnorm": metrics["batchnorm"], "versions": run_versions()},
    )
    record.write()  # last: marks the run finished
    run = record.record
    say(f"test: accuracy {metrics['accuracy']:.3f}, macro F1 {metrics['f1']:.3f}, "
        f"AUC {_fmt(metrics['auc'])} on {metrics['n']} images; run written to {out}")
    if not sanity.ok:
        say(sanity.warning())
    return RunResult(out, metrics, run, history, resumed=resumed)



def _class_weights(split) -> dict[str, float]:
    return {str(k): v for k, v in class_weights(split).items()}


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"

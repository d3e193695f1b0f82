"""`edgexfer finetune`: transfer-learn a backbone on a data set and write a run directory."""

from __future__ import annotations

import click


@click.command()
@click.option("--data", help="Data folder (class folders or train/val/test), CSV of path,label, .npz, or 'demo' "
              "[required unless in --config].")
@click.option("--backbone", help="Backbone name (see `edgexfer backbones`) [required unless in --config].")
@click.option("--out", help="Run directory to write; the same command resumes an interrupted run. One process "
              "at a time: a second one on the same folder exits at once [required unless in --config].")
@click.option("--image-size", type=int, help="Input side in pixels [default: the backbone's native size].")
@click.option("--epochs", type=int, help="Phase 1 epochs: the head on a frozen backbone, or every layer with "
              "--weights none [default: 10].")
@click.option("--fine-tune-epochs", type=int, help="Phase 2 epochs, over all unfreezing stages [default: 10 with "
              "pretrained weights; 0 with --weights none, where phase 1 already trains every layer].")
@click.option("--unfreeze-stages", type=int, help="Phase 2 stages, each unfreezing one block more [default: 2].")
@click.option("--batch-size", type=int, help="Batch size [default: 32].")
@click.option("--learning-rate", type=float, help="Phase 1 learning rate [default: 1e-3].")
@click.option("--fine-tune-learning-rate", type=float, help="Phase 2 first-stage learning rate [default: 1e-4].")
@click.option("--optimizer", type=click.Choice(["adam", "adamw", "sgd", "rmsprop"]), help="Optimizer [default: adam].")
@click.option("--weights", help="imagenet, none, or a Keras weights file of the backbone [default: imagenet where available].")
@click.option("--head", type=click.Choice(["gap", "attention"]), help="Classification head [default: gap].")
@click.option("--patience", "early_stopping_patience", type=int, help="Early-stopping patience in epochs, 0 off [default: 5].")
@click.option("--seed", type=int, help="Seed of the split, the initialization and the shuffling [default: 0].")
@click.option("--class-weights/--no-class-weights", default=None, help="Balance classes by weights [default: on].")
@click.option("--augment/--no-augment", default=None, help="Augment the train split [default: on].")
@click.option("--mixed-precision", is_flag=True, default=None, help="mixed_float16 training on a GPU.")
@click.option("--deterministic/--no-deterministic", default=None,
              help="Reproducible training: the same seed gives the same model on the same machine; "
                   "turn off for speed on GPUs [default: on].")
@click.option("--distribute", type=click.Choice(["auto", "mirrored", "none", "multiworker"]),
              help="mirrored: MirroredStrategy over this machine's GPUs (one device trains as none); auto: mirrored "
                   "when several GPUs are visible; multiworker: MultiWorkerMirroredStrategy over the processes of "
                   "TF_CONFIG, the chief writes the run (docs/distributed.md). What it does here is printed first "
                   "[default: auto].")
@click.option("--demo-per-class", type=int, help="With --data demo: images per class [default: 100].")
@click.option("--demo-size", type=int, help="With --data demo: image side in pixels [default: 128].")
@click.option("--config", "config_file", type=click.Path(dir_okay=False),
              help="JSON or TOML file of options (names as above, with - or _); command-line options win.")
@click.option("--tensorboard", is_flag=True, default=None, help="Write TensorBoard logs to RUN_DIR/tensorboard.")
@click.option("--precise-bn-batches", type=int,
              help="Train-split batches that re-estimate the statistics of the BatchNorm layers that trained, "
                   "after training; 0 turns it off [default: 200].")
@click.option("--quiet", is_flag=True, help="No progress output (default: a bar on a terminal, one line per epoch "
              "otherwise).")
def finetune(config_file: str | None, quiet: bool, **options) -> None:
    """Fine-tune a backbone: head on a frozen base, then gradual unfreezing; evaluate on the test split.

    With pretrained weights: phase 1 trains the head on the frozen backbone, phase 2 unfreezes it
    in --unfreeze-stages stages. With --weights none: one phase trains every layer for --epochs
    (a phase 2 only when --fine-tune-epochs asks for one). The plan (phases, epochs, learning
    rates, trainable parameters) is printed before training. BatchNorm layers that trained get
    their statistics re-estimated over the train split; metrics.json records a sanity verdict
    against the majority-class baseline.

    Writes RUN_DIR/model.keras, labels.json, split.json, config.json, history.csv, metrics.json, plots/.
    """
    from edgexfer.config import finetune_config_from
    from edgexfer.train import finetune as run_finetune
    from edgexfer.train.summary import metrics_table

    if quiet:
        options["verbose"] = 0
    result = run_finetune(finetune_config_from(config_file, options), log=click.echo)
    click.echo(metrics_table(result.metrics, result.run.get("classes") or list(result.metrics["per_class"])))

"""`edgexfer compare`: several backbones fine-tuned, exported and benchmarked on one split; one report."""

from __future__ import annotations

import click

from edgexfer.cli._choices import RUNTIMES_HELP, runtimes_list
from edgexfer.cli._options import batch_sizes
from edgexfer.cli.bench import _fraction as fraction_option
from edgexfer.export.config import CALIBRATION_METHODS, QUANTIZERS, TARGETS  # no TensorFlow behind it


def _budget(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    """A latency budget is a finite positive number of milliseconds (click's FloatRange lets nan and inf by)."""
    import math

    if value is not None and not (math.isfinite(value) and value > 0):
        from edgexfer.errors import EdgexferError

        raise EdgexferError(f"--latency-budget-ms {value} is not a positive number of milliseconds", "e.g. 10")
    return value


def _names(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    return [v.strip() for v in value.split(",") if v.strip()]


@click.command("compare")
@click.option("--data", required=True, help="Data (class folders, pre-split folders, .csv or .npz), or 'demo' "
                                             "for the synthetic chest X-ray set.")
@click.option("--backbones", required=True, callback=_names,
              help="Comma-separated backbones, e.g. vgg16,resnet50,efficientnetb0 (see `edgexfer backbones`).")
@click.option("--out", required=True, type=click.Path(file_okay=False, path_type=str),
              help="Study directory; running the same command again resumes it.")
@click.option("--latency-budget-ms", type=float, default=None, callback=_budget,
              help="Recommend the most accurate model whose batch-1 p50 latency is within this budget.")
# fine-tuning
@click.option("--image-size", type=click.IntRange(min=8), default=None,
              help="Input size for every backbone (default: each backbone's native size).")
@click.option("--epochs", type=click.IntRange(min=0), default=None, help="Epochs with the base frozen.")
@click.option("--fine-tune-epochs", type=click.IntRange(min=0), default=None, help="Epochs of gradual unfreezing.")
@click.option("--batch-size", type=click.IntRange(min=1), default=None, help="Training batch size.")
@click.option("--weights", default=None, help="imagenet, none, or a weights file (the transfer arm of "
                                              "--data-fractions).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the split and of training.")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Fine-tune options for every backbone from a JSON or TOML file (as for edgexfer finetune: head, "
                   "optimizer, augment, learning rates…); options given here override it.")
@click.option("--demo-per-class", type=click.IntRange(min=3), default=100, show_default=True,
              help="With --data demo: images per class.")
@click.option("--demo-size", type=click.IntRange(min=16), default=128, show_default=True,
              help="With --data demo: image side in pixels.")
# export
@click.option("--target", type=click.Choice(TARGETS), default=None,
              help="INT8 profile (default: cpu, or tensorrt with --engine).")
@click.option("--engine", is_flag=True, help="Also build TensorRT engines (needs TensorRT and a GPU).")
@click.option("--calibration-size", type=click.IntRange(min=1), default=None, help="INT8 calibration images.")
@click.option("--calibration-method", type=click.Choice(CALIBRATION_METHODS), default=None,
              help="INT8 calibration method (default: auto, see `edgexfer export --help`).")
@click.option("--quantizer", type=click.Choice(QUANTIZERS), default=None,
              help="INT8 quantizer: edgexfer, nncf or auto (default: auto, see `edgexfer export --help`).")
# bench
@click.option("--runtimes", default=None, callback=runtimes_list, help=RUNTIMES_HELP)
@click.option("--batch-sizes", default=None, callback=batch_sizes, help="Bench batch sizes (1 is always timed).")
@click.option("--warmup", type=click.IntRange(min=0), default=None, help="Untimed bench calls first.")
@click.option("--iterations", type=click.IntRange(min=1), default=None, help="Timed bench calls per batch size.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="ONNX Runtime intra-op threads.")
@click.option("--max-accuracy-drop", default="0.01", show_default=True, callback=fraction_option,
              help="Gate: accuracy drop vs FP32.")
@click.option("--max-f1-drop", default="0.01", show_default=True, callback=fraction_option,
              help="Gate: macro F1 drop vs FP32.")
@click.option("--max-recall-drop", default="0.02", show_default=True, callback=fraction_option,
              help="Gate: recall drop of any class vs FP32.")
# tuning
@click.option("--tune", is_flag=True, help="Tune each backbone with KerasTuner first (needs the tune extra).")
@click.option("--tuner", type=click.Choice(["hyperband", "bayesian"]), default="hyperband", show_default=True)
@click.option("--max-trials", type=click.IntRange(min=1), default=10, show_default=True,
              help="Trial budget per backbone.")
@click.option("--tune-epochs", type=click.IntRange(min=1), default=4, show_default=True,
              help="Most epochs one trial trains.")
# limited data
@click.option("--data-fractions", default=None,
              help="Learning curves: train on these fractions of the train split, e.g. 0.1,0.25,0.5,1.0, "
                   "with --weights and with none.")
# who runs the jobs (one per backbone, one per learning-curve point)
@click.option("--executor", type=click.Choice(["local", "ray"]), default="local", show_default=True,
              help="local: one job after another in this process. ray: each job a Ray task (needs the distributed "
                   "extra), on a local Ray instance or the cluster at --ray-address.")
@click.option("--ray-address", default=None,
              help="With --executor ray: a running Ray cluster, auto or HOST:PORT (default: start a local instance). "
                   "--out must then be an absolute path every node mounts.")
@click.option("--cpus-per-job", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="With --executor ray: CPUs each job asks Ray for.")
@click.option("--gpus-per-job", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="With --executor ray: GPUs each job asks Ray for (e.g. 1; fractions share a GPU).")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def compare(data, backbones, out, latency_budget_ms, image_size, epochs, fine_tune_epochs, batch_size, weights, seed,
            config_file, demo_per_class, demo_size, target, engine, calibration_size, calibration_method, quantizer, runtimes, batch_sizes,
            warmup, iterations, threads, max_accuracy_drop, max_f1_drop, max_recall_drop, tune, tuner, max_trials,
            tune_epochs, data_fractions, executor, ray_address, cpus_per_job, gpus_per_job, quiet) -> None:
    """Fine-tune, export (FP32, FP16, INT8) and bench each backbone on the same split, then write
    results.json, report.md and a self-contained report.html to OUT, with a recommendation under
    --latency-budget-ms. Finished backbones are kept when the command is run again.

    Exit code (as bench's): 0 when the recommendation rests on an artifact that passed its gate, 1 when
    no artifact passed and the gates failed, 3 when no artifact passed and some gate was inconclusive (too
    few test images to decide), 2 on bad input."""
    from edgexfer.evaluate.gate import Thresholds
    from edgexfer.export.pipeline import check_export_dependencies
    from edgexfer.studies.compare import CompareConfig, TuneOptions, run_compare
    from edgexfer.studies.executors import ExecutorConfig
    from edgexfer.studies.limited_data import parse_fractions

    check_export_dependencies()  # every backbone is fine-tuned and exported: refuse before the study folder exists

    def given(**options):
        return {k: v for k, v in options.items() if v is not None}

    finetune = {}
    if config_file:
        from edgexfer.config import load_config_file

        # the study decides data, backbone, output folder, split and seed
        finetune = {str(k).replace("-", "_"): v for k, v in load_config_file(config_file).items()
                    if str(k).replace("-", "_") not in ("data", "backbone", "out", "split", "seed", "schema",
                                                        "versions", "resolved")}
    finetune.update(given(image_size=image_size, epochs=epochs, fine_tune_epochs=fine_tune_epochs,
                          batch_size=batch_size, weights=weights))
    if quiet:
        finetune["verbose"] = 0
    export = given(target=target, calibration_size=calibration_size, calibration_method=calibration_method,
                   quantizer=quantizer)
    if engine:
        export["engine"] = True
    export["progress"] = not quiet
    bench = given(runtimes=runtimes, warmup=warmup, iterations=iterations, threads=threads)
    if batch_sizes is not None:
        bench["batch_sizes"] = tuple(sorted({1, *batch_sizes}))
    bench["thresholds"] = Thresholds(max_accuracy_drop, max_f1_drop, max_recall_drop)
    bench["progress"] = not quiet
    config = CompareConfig(
        data=data, backbones=backbones, out=out, finetune=finetune, export=export, bench=bench,
        latency_budget_ms=latency_budget_ms,
        tune=TuneOptions(tuner=tuner, max_trials=max_trials, epochs=tune_epochs) if tune else None,
        data_fractions=parse_fractions(data_fractions) if data_fractions else None,
        seed=seed, demo_per_class=demo_per_class, demo_size=demo_size,
        executor=ExecutorConfig(kind=executor, ray_address=ray_address, cpus_per_job=cpus_per_job,
                                gpus_per_job=gpus_per_job),
        log=lambda line: click.echo(line, err=True),
    )
    outcome = run_compare(config)
    if "worker" in outcome.results:
        click.echo(f"KerasTuner worker {outcome.results['worker']}: trials done; the chief writes the study")
        return
    rec = outcome.results["recommendation"]
    if rec["status"] == "ok":
        click.echo(f"recommended: {rec['backbone']} {rec['artifact']} on {rec['runtime']} — accuracy "
                   f"{rec['accuracy']:.3f}, batch-1 p50 {rec['latency_p50_ms']:.3g} ms")
    else:
        click.echo(f"no model qualifies: {rec['reason']}")
    click.echo(f"report: {outcome.report['markdown']}")
    click.echo(f"html:   {outcome.report['html']}")
    from edgexfer.errors import GateFailed, GateInconclusive

    # the exit code says what the recommendation rests on, with bench's codes: 0 an artifact that passed its
    # gate, 1 only failed gates, 3 gates the test images could not decide
    if rec.get("gate") == "fail":
        raise GateFailed("no artifact of the study passed its accuracy gate", f"see {outcome.report['markdown']}")
    if rec.get("gate") == "inconclusive":
        raise GateInconclusive(f"the study's recommendation rests on undecided accuracy gates: {rec['reason']}",
                               f"compare on more images; see {outcome.report['markdown']}")

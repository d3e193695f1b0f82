"""`edgexfer bench`: does the fast model still make the same diagnoses, and how fast is it here?"""

from __future__ import annotations

import click

from edgexfer.cli._choices import RUNTIMES_HELP, runtimes_list
from edgexfer.cli._options import batch_sizes


def _fraction(ctx: click.Context, param: click.Parameter, value: str | None) -> float | None:
    """A threshold as a finite fraction in [0, 1]; anything else is one line, exit 2, before any work."""
    if value is None:
        return None
    from edgexfer.evaluate.gate import parse_fraction

    return parse_fraction(f"--{param.name.replace('_', '-')}", value)


def _min_recall(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> tuple[tuple[str, float], ...]:
    from edgexfer.evaluate.gate import parse_min_recall

    return parse_min_recall(value)


@click.command("bench")
@click.argument("export_dir", type=click.Path(path_type=str))
@click.option("--out", "out", type=click.Path(path_type=str), default=None,
              help="Bench directory (default: benchmarks/<export name> beside the export's parent folder, "
                   "where predict and package find it).")
@click.option("--data", type=click.Path(path_type=str), default=None,
              help="Labelled data set (class folders, .csv or .npz) instead of the run's test split; "
                   "class names must match the model's.")
@click.option("--unlabeled", type=click.Path(path_type=str), default=None,
              help="A folder of images without labels (searched recursively; e.g. the images a site already has): "
                   "they add to each precision's agreement with FP32, which can show a drop small enough when the "
                   "labelled test images are too few. Calibration images are left out.")
@click.option("--positive-class", default=None,
              help="Clinical operating point: this class against the rest (a binary task uses its second class "
                   "without it). The threshold on its probability is chosen on the run's validation split; every "
                   "precision's sensitivity and specificity at it are reported and gated.")
@click.option("--target-sensitivity", default=None, callback=_fraction,
              help="Choose the threshold for this sensitivity on the validation split (e.g. 0.95); default: "
                   "Youden's J (sensitivity + specificity - 1 at its largest).")
@click.option("--runtimes", multiple=True, callback=runtimes_list, help=RUNTIMES_HELP)
@click.option("--batch-sizes", default="1,8,32", show_default=True, callback=batch_sizes,
              help="Batch sizes to time.")
@click.option("--warmup", default=10, show_default=True, type=click.IntRange(min=0), help="Untimed calls first.")
@click.option("--iterations", default=50, show_default=True, type=click.IntRange(min=1),
              help="Timed calls per batch size.")
@click.option("--threads", default=None, type=click.IntRange(min=1),
              help="ONNX Runtime intra-op threads and OpenVINO INFERENCE_NUM_THREADS (default: ONNX Runtime's "
                   "choice; OpenVINO: the usable cores).")
@click.option("--max-accuracy-drop", default="0.01", show_default=True, callback=_fraction,
              help="Largest accuracy drop against FP32 (fraction: 0.01 = 1 point).")
@click.option("--max-f1-drop", default="0.01", show_default=True, callback=_fraction, help="Largest macro F1 drop.")
@click.option("--max-recall-drop", default="0.02", show_default=True, callback=_fraction,
              help="Largest recall drop of ANY class.")
@click.option("--min-accuracy", default=None, callback=_fraction,
              help="Absolute floor: every artifact's accuracy must reach it (fraction), FP32 included.")
@click.option("--min-f1", default=None, callback=_fraction, help="Absolute floor of macro F1 (fraction).")
@click.option("--min-recall", multiple=True, callback=_min_recall, metavar="[CLASS=]VALUE",
              help="Absolute recall (sensitivity) floor: VALUE for every class, or CLASS=VALUE for one "
                   "(repeatable), e.g. --min-recall pneumonia=0.95.")
@click.option("--json", "as_json", is_flag=True, help="Print results.json to stdout.")
@click.option("--quiet", is_flag=True, help="No progress bars.")
def bench(export_dir, out, data, unlabeled, positive_class, target_sensitivity, runtimes, batch_sizes, warmup, iterations, threads, max_accuracy_drop,
          max_f1_drop, max_recall_drop, min_accuracy, min_f1, min_recall, as_json, quiet) -> None:
    """Accuracy, F1, AUC and per-class recall of every artifact of EXPORT_DIR on every usable runtime,
    gated against the FP32 ONNX model, and latency per batch size.

    Each threshold is a paired decision on the same images as FP32 (Tango's score interval of the drop;
    macro F1 by paired bootstrap): pass when the interval is within the limit, fail when it lies above it,
    inconclusive when these images cannot tell. Agreement with FP32 needs no labels: it is measured on every
    usable image (test, the run's validation split, --unlabeled; never train or calibration images) and can
    show a drop within its limit when the labelled images cannot. Every artifact also gets 95% Wilson intervals and McNemar's
    exact test. The gate also fails when the FP32 model itself is shown no better than always answering one
    class. Writes results.json, report.md and plots/ to the bench directory. Exit code 0 pass, 1 fail
    (the table of what broke is printed), 3 inconclusive (the table of what is undecided and how many
    images would decide it), 2 on bad input.
    """
    import json

    from edgexfer.evaluate.bench import BenchConfig, BenchVerdictError, run_bench
    from edgexfer.evaluate.gate import Thresholds
    from edgexfer.io import strict_json
    from edgexfer.report.summary import closing_lines

    config = BenchConfig(
        export_dir=export_dir, out=out, data=data, unlabeled=unlabeled, positive_class=positive_class,
        target_sensitivity=target_sensitivity, runtimes=runtimes, batch_sizes=batch_sizes, warmup=warmup,
        iterations=iterations, threads=threads,
        thresholds=Thresholds(max_accuracy_drop, max_f1_drop, max_recall_drop, min_accuracy, min_f1, min_recall),
        progress=not quiet, log=lambda line: click.echo(line, err=True),
    )
    try:
        outcome = run_bench(config)
    except BenchVerdictError as failure:
        if as_json:
            click.echo(json.dumps(strict_json(failure.outcome.results), indent=2, allow_nan=False))
        click.echo(failure.table, err=True)
        click.echo(closing_lines(failure.outcome.results, failure.outcome.out_dir), err=as_json)
        raise
    if as_json:
        click.echo(json.dumps(strict_json(outcome.results), indent=2, allow_nan=False))
    click.echo(closing_lines(outcome.results, outcome.out_dir), err=as_json)

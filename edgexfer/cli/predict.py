"""`edgexfer predict`: classify new images with a verified artifact of an export (no TensorFlow)."""

from __future__ import annotations

import click


@click.command("predict")
@click.argument("export_dir", type=click.Path(path_type=str))
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=str))
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8", "bf16"]), default="auto", show_default=True,
              help="Artifact to run; auto: the fastest one that passed the bench gate (FP32 without bench results); "
                   "bf16: the FP32 file in BF16 on ov-cpu (CPUs with native BF16).")
@click.option("--runtime", type=click.Choice(["auto", "ort-cpu", "ort-cuda", "ort-trt", "trt", "ov-cpu"]), default="auto",
              show_default=True, help="Runtime; auto: the fastest usable one.")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True, help="Images per call.")
@click.option("--out", type=click.Path(dir_okay=False, path_type=str), default=None,
              help="Write the predictions to FILE.csv or FILE.json (default: CSV on stdout).")
@click.option("--bench", "bench_dir", type=click.Path(path_type=str), default=None,
              help="Bench folder (or results.json) whose gate verdicts decide, each for the bytes it judged "
                   "(default: benchmarks/<export name> beside the export's parent, or <export>/../bench).")
@click.option("--allow-failed", is_flag=True, help="Run an artifact even though its accuracy gate failed.")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="ONNX Runtime intra-op threads (OpenVINO: INFERENCE_NUM_THREADS).")
@click.option("--quiet", is_flag=True, help="No progress bar and no notes on stderr (skipped files are still listed).")
def predict(export_dir, inputs, precision, runtime, batch_size, out, bench_dir, allow_failed, threads, quiet) -> None:
    """Classify INPUTS (image files, folders searched recursively, or CSV lists of paths) with the model in
    EXPORT_DIR, reading every image exactly as training and bench did.

    Rows: path, predicted_class, probability, p_<class>... Unreadable files are listed on stderr and skipped;
    the exit code is 0 when every readable file got a prediction, 2 on bad input (nothing written then).
    """
    import sys

    from edgexfer.predict import predict_inputs

    def log(line: str) -> None:
        if not quiet or line.startswith("skipped "):
            click.echo(line, err=True)

    result = predict_inputs(export_dir, inputs, precision=precision, runtime=runtime, batch_size=batch_size,
                            out=out, bench=bench_dir, allow_failed=allow_failed, threads=threads,
                            progress=not quiet and sys.stderr.isatty(), log=log)
    if out is None:
        click.echo(result.to_csv(), nl=False)
    elif not quiet:
        click.echo(f"{len(result.predictions)} prediction(s) written to {out}"
                   + (f"; {len(result.skipped)} file(s) skipped" if result.skipped else ""), err=True)

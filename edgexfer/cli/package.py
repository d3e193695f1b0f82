"""`edgexfer package`: a serving layout (Triton Inference Server model repository) from an export."""

from __future__ import annotations

import click


@click.command("package")
@click.argument("export_dir", type=click.Path(path_type=str))
@click.option("--out", required=True, type=click.Path(path_type=str),
              help="Model repository folder; the model goes to OUT/<name>/ (other models there are kept).")
@click.option("--format", "layout", type=click.Choice(["triton"]), default="triton", show_default=True,
              help="Serving layout.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "fp16", "int8", "bf16"]), default="auto", show_default=True,
              help="Artifact; auto: the fastest one that passed the bench gate (FP32 without bench results).")
@click.option("--runtime", type=click.Choice(["auto", "ort-cpu", "ort-cuda", "ort-trt", "trt", "ov-cpu"]), default="auto",
              show_default=True, help="Runtime the server should match: ONNX Runtime (CPU/CUDA/TensorRT accelerator), "
                                      "a TensorRT engine (model.plan) or OpenVINO on the CPU (openvino backend).")
@click.option("--name", default=None, help="Model name (default: the export's name; for an export folder named exported, the folder above it).")
@click.option("--max-batch-size", type=click.IntRange(min=1), default=32, show_default=True,
              help="Largest batch the server forms (capped by an engine's profile).")
@click.option("--max-queue-delay-us", type=click.IntRange(min=0), default=100, show_default=True,
              help="Dynamic batching: how long a request may wait for others.")
@click.option("--instance-kind", type=click.Choice(["auto", "gpu", "cpu"]), default="auto", show_default=True,
              help="Where Triton runs the model (auto: GPU when the server has one).")
@click.option("--bench", "bench_dir", type=click.Path(path_type=str), default=None,
              help="Bench folder (or results.json) whose gate verdicts decide, each for the bytes it judged "
                   "(default: benchmarks/<export name> beside the export's parent, or <export>/../bench).")
@click.option("--allow-failed", is_flag=True, help="Package an artifact even though its accuracy gate failed.")
@click.option("--overwrite", is_flag=True, help="Replace OUT/<name>/ when it exists.")
def package(export_dir, out, layout, precision, runtime, name, max_batch_size, max_queue_delay_us, instance_kind,
            bench_dir, allow_failed, overwrite) -> None:
    """Write a Triton Inference Server model repository for one verified artifact of EXPORT_DIR:
    OUT/<name>/config.pbtxt, OUT/<name>/labels.txt and OUT/<name>/1/model.onnx (or model.plan)."""
    from edgexfer.serving.triton import write_triton_repository

    model = write_triton_repository(export_dir, out, precision=precision, runtime=runtime, name=name,
                                    max_batch_size=max_batch_size, max_queue_delay_us=max_queue_delay_us,
                                    instance_kind=instance_kind, bench=bench_dir, allow_failed=allow_failed,
                                    overwrite=overwrite)
    click.echo(f"{model.folder}: {model.artifact} ({model.platform}) — {model.reason}")
    click.echo(f"serve it: {model.serve_command()}")

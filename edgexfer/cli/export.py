"""`edgexfer export RUN_DIR`: ONNX FP32 (+ FP16, INT8, TensorRT engines) and manifest.json."""

from __future__ import annotations

from pathlib import Path

import click

# the known values live in edgexfer.export.config (importing it loads no TensorFlow)
from edgexfer.export.config import CALIBRATION_METHODS, QUANTIZERS, TARGETS


@click.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", "out", type=click.Path(path_type=Path), default=None,
              help="Export folder (default: exported/<run name>).")
@click.option("--fp16", is_flag=True, help="Also write an FP16 ONNX (float32 input/output kept).")
@click.option("--int8", is_flag=True, help="Also write an INT8 Q/DQ ONNX calibrated on a calibration set.")
@click.option("--engine", is_flag=True,
              help="Also build TensorRT engines from the ONNX (needs TensorRT and an NVIDIA GPU; without them the "
                   "ONNX are written and the command exits 2).")
@click.option("--target", type=click.Choice(TARGETS), default=None,
              help="INT8 profile: tensorrt (int8 symmetric) or cpu (uint8 activations). Default: tensorrt with "
                   "--engine, else cpu.")
@click.option("--calibration", type=click.Path(path_type=Path), default=None,
              help="Calibration set (.npz/.json) to reuse, or a folder to find/build it in (default: calibration/).")
@click.option("--calibration-size", type=int, default=500, show_default=True, help="Images in a new calibration set.")
@click.option("--calibration-seed", type=int, default=0, show_default=True, help="Seed of a new calibration set.")
@click.option("--calibration-method", type=click.Choice(CALIBRATION_METHODS), default="auto", show_default=True,
              help="How INT8 activation ranges are calibrated. auto: entropy, and when that INT8 agrees with FP32 "
                   "below --int8-min-agreement, percentile and minmax too; the best is kept.")
@click.option("--quantizer", type=click.Choice(QUANTIZERS), default="auto", show_default=True,
              help="Who writes the INT8 file: edgexfer (ours), nncf (NNCF, pip install 'edgexfer[openvino]'; target "
                   "cpu only) or auto: both where NNCF is installed and the target is cpu, judged on the same images; "
                   "the one agreeing with FP32 on more images is kept (ours on ties).")
@click.option("--int8-min-agreement", type=float, default=0.98, show_default=True,
              help="INT8 top-1 agreement with FP32 that must be met with evidence (the whole 95% interval, on "
                   "validation images and train images not in the calibration set); until then the other calibration "
                   "methods are tried (auto) and sensitive nodes stay in float.")
@click.option("--kernel-choice/--no-kernel-choice", "kernel_choice", default=False, show_default=True,
              help="With --target cpu: time ONNX Runtime's two int8 convolution kernels on this CPU and keep the "
                   "faster per convolution (same values). Off by default: it rests on timing, so two exports of the "
                   "same run may then differ in bytes.")
@click.option("--max-batch", type=int, default=32, show_default=True, help="Largest batch of the engines' profile.")
@click.option("--opset", type=int, default=17, show_default=True, help="ONNX opset.")
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=None,
              help="Where the run's images are now, when they moved since training.")
@click.option("--positive-class", default=None,
              help="Clinical operating point: this class against the rest. The threshold on its probability is "
                   "chosen on every validation image with FP32's probabilities and written into manifest.json; "
                   "bench judges it, predict and package apply it.")
@click.option("--target-sensitivity", type=float, default=None,
              help="Choose that threshold for this sensitivity on the validation split (e.g. 0.95); default: "
                   "Youden's J. Alone: a binary task's second class is the positive one.")
@click.option("--quiet", is_flag=True, help="No progress bars or step messages.")
def export(run_dir: Path, out: Path | None, fp16: bool, int8: bool, engine: bool, target: str | None,
           calibration: Path | None, calibration_size: int, calibration_seed: int, calibration_method: str,
           quantizer: str, int8_min_agreement: float, kernel_choice: bool, max_batch: int, opset: int, data_root: Path | None,
           positive_class: str | None, target_sensitivity: float | None, quiet: bool) -> None:
    """Export the fine-tuned run RUN_DIR to ONNX FP32 (and FP16, INT8, TensorRT engines), checked against Keras."""
    from edgexfer.export import ExportConfig, export_run
    from edgexfer.export.pipeline import check_export_dependencies, summary_lines

    check_export_dependencies()  # the light install has no Keras/TensorFlow: say so before anything

    config = ExportConfig(run_dir=run_dir, out=out, fp16=fp16, int8=int8, engine=engine, target=target,
                          calibration=calibration, calibration_size=calibration_size, calibration_seed=calibration_seed,
                          calibration_method=calibration_method, quantizer=quantizer,
                          int8_min_agreement=int8_min_agreement,
                          int8_kernel_choice=kernel_choice,
                          max_batch=max_batch, opset=opset, data_root=data_root, progress=not quiet,
                          positive_class=positive_class, target_sensitivity=target_sensitivity)
    from edgexfer.export.tensorrt import EngineUnavailable

    try:
        manifest = export_run(config)
    except EngineUnavailable as exc:  # the ONNX were written: list them, then the one-line error
        for line in summary_lines(exc.manifest or {"artifacts": []}, config.export_dir):
            click.echo(line)
        raise
    for line in summary_lines(manifest, config.export_dir):
        click.echo(line)

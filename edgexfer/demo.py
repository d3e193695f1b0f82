"""The end-to-end demo: synthetic chest X-rays → fine-tune → export FP32/FP16/INT8 → bench.

One library call per stage, the same calls the CLI commands make, so the demo is also a worked
example for notebook users. Everything lands under one folder:
``data/`` (the synthetic set), ``run/`` (fine-tune), ``calibration/``, ``exported/``, ``bench/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgexfer._lazy import is_available
from edgexfer.backbones.registry import get_backbone
from edgexfer.config import FinetuneConfig
from edgexfer.data.synthetic import generate_demo
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.bench import BenchConfig, BenchVerdictError, run_bench
from edgexfer.evaluate.exported import load_export
from edgexfer.explain import explain_misclassified
from edgexfer.export import export_run
from edgexfer.export.config import ExportConfig
from edgexfer.export.pipeline import summary_lines
from edgexfer.predict import BenchEvidence, choose_artifact
from edgexfer.report.summary import closing_lines
from edgexfer.train import finetune


@dataclass
class DemoConfig:
    out: Path = Path("runs/demo")
    backbone: str = "tinycnn"
    weights: str = "none"
    image_size: int | None = 64
    per_class: int = 500
    # a large test part: the gate allows a 2-point recall drop per class, and even a precision that flips
    # nothing needs about 190 images of a class to show it (the paired interval of a zero drop); 125 test
    # and 75 validation images per class (agreement with FP32 needs no label) come close to deciding it
    split_fractions: tuple[float, float, float] = (0.6, 0.15, 0.25)
    data_size: int = 128
    epochs: int = 12
    fine_tune_epochs: int = 4
    batch_size: int = 16
    seed: int = 0
    target: str = "cpu"
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    iterations: int = 30


@dataclass
class DemoResult:
    run_dir: Path
    export_dir: Path
    bench_dir: Path
    test_metrics: dict[str, Any]
    bench: Any


# modules the demo needs beyond the light install: the train extra (fine-tune and export)
DEMO_MODULES = ("tensorflow", "keras", "tf2onnx", "onnxconverter_common", "sympy", "onnxruntime")


def check_demo(config: DemoConfig) -> None:
    """Everything the demo needs, checked before its first file is written: the modules of the train
    extra (found, not imported), the backbone, and every stage's options."""

    missing = [m for m in DEMO_MODULES if not is_available(m)]
    if missing:
        raise EdgexferError(
            f"the demo fine-tunes and exports a model and needs the Python module(s) {', '.join(missing)}, "
            "which this install lacks (the light install only benches)",
            "install the train extra: pip install -e '.[train]' in a clone of the repository "
            "(or pip install 'edgexfer[train]'), or run make demo")
    get_backbone(config.backbone)
    if config.per_class < 10:
        raise EdgexferError(f"--per-class {config.per_class} is too few to split into train, validation and test",
                            "pass 10 or more (the default 500 makes the gate meaningful)")
    out = Path(os.path.expanduser(config.out))
    FinetuneConfig(data=str(out / "data"), backbone=config.backbone, out=str(out / "run"), image_size=config.image_size,
                   weights=config.weights, epochs=config.epochs, fine_tune_epochs=config.fine_tune_epochs,
                   batch_size=config.batch_size, seed=config.seed, split_fractions=list(config.split_fractions))
    ExportConfig(run_dir=out / "run", out=out / "exported", fp16=True, int8=True, target=config.target,
                 calibration=out / "calibration", calibration_seed=config.seed).validate()
    BenchConfig(export_dir=out / "exported", out=out / "bench", batch_sizes=config.batch_sizes,
                iterations=config.iterations)


def _size_note(config: DemoConfig) -> str:
    """Where the model's input size differs from the generated images': said, so 128 px above is not a surprise."""
    if config.image_size is None:
        return f"; the images are resized to {config.backbone}'s input size"
    if config.image_size != config.data_size:
        return (f"; the {config.data_size} px images are resized to {config.image_size} px, the model's input "
                "(faster on a CPU)")
    return ""


def run_demo(config: DemoConfig, log: Callable[[str], None] = print) -> DemoResult:
    """Run every stage; end with the summary table and the verdict; raise GateFailed (exit 1) when a
    precision breaks the accuracy gate, GateInconclusive (exit 3) when the test images cannot decide it. Nothing is written before :func:`check_demo` passed."""
    check_demo(config)

    out = Path(os.path.expanduser(config.out))
    log(f"[1/4] synthetic chest X-rays: {config.per_class} per class at {config.data_size} px → {out / 'data'}")
    data_dir = generate_demo(out / "data", per_class=config.per_class, size=config.data_size, seed=config.seed)

    log(f"[2/4] fine-tune {config.backbone} (weights {config.weights}) → {out / 'run'}"
        + _size_note(config))
    run = finetune(FinetuneConfig(
        data=str(data_dir), backbone=config.backbone, out=str(out / "run"), image_size=config.image_size,
        weights=config.weights, epochs=config.epochs, fine_tune_epochs=config.fine_tune_epochs,
        batch_size=config.batch_size, seed=config.seed, split_fractions=list(config.split_fractions),
    ), log=log)

    log(f"[3/4] export FP32, FP16 and INT8 ({config.target} profile) → {out / 'exported'}")
    manifest = export_run(ExportConfig(
        run_dir=run.run_dir, out=out / "exported", fp16=True, int8=True, target=config.target,
        calibration=out / "calibration", calibration_seed=config.seed,
    ))
    for line in summary_lines(manifest, out / "exported"):
        log(line)

    log(f"[4/4] bench every artifact on the test split → {out / 'bench'}")
    try:
        outcome = run_bench(BenchConfig(
            export_dir=out / "exported", out=out / "bench", batch_sizes=config.batch_sizes,
            iterations=config.iterations,
        ))
    except BenchVerdictError as failure:
        _explain_mistakes(run.run_dir, out / "bench", log)
        log(closing_lines(failure.outcome.results, failure.outcome.out_dir))
        log(serving_line(out / "exported", out / "bench"))
        raise
    _explain_mistakes(run.run_dir, out / "bench", log)
    log(closing_lines(outcome.results, outcome.out_dir))
    log(serving_line(out / "exported", out / "bench"))
    return DemoResult(run.run_dir, out / "exported", out / "bench", run.metrics, outcome)


def serving_line(export_dir: Path, bench_dir: Path) -> str:
    """What `predict` and `package` would serve from this export, chosen as they choose: the verdicts of
    ``bench_dir`` count only for the bytes they judged (sha256), so the line names the file's sha256."""
    try:
        export = load_export(export_dir)
        choice = choose_artifact(export, "auto", "auto", evidence=BenchEvidence.load(bench_dir))
    except EdgexferError as exc:
        return f"serve: nothing from {export_dir}: {exc.line()}"
    a = choice.artifact
    return (f"serve: edgexfer predict {export_dir} IMAGES runs {a.name} ({a.path.name}, sha256 "
            f"{str(a.sha256)[:12]}…) on {choice.runtime.name}: {choice.why()}")


def _explain_mistakes(run_dir: Path, bench_dir: Path, log: Callable[[str], None]) -> None:
    """Grad-CAM overlays of a few misclassified test images, shown in the bench report (edgexfer.explain)."""

    done = explain_misclassified(run_dir, bench_dir, limit=6)
    log(f"Grad-CAM of {len(done)} misclassified test image(s) → {bench_dir / 'gradcam'} (shown in the report)")

"""The Python API: one function per stage, each taking its config object or that config's fields.

    from edgexfer import finetune, export_run, bench, compare
    run = finetune(data="demo", backbone="tinycnn", out="runs/demo", image_size=64)
    export_run(run_dir=run.run_dir, fp16=True, int8=True)

Each function is a thin front of the library entry point (``edgexfer.train.finetune``,
``edgexfer.export.export_run``, ``edgexfer.evaluate.bench.run_bench``,
``edgexfer.studies.compare.run_compare``), looked up through its module when it is called (so a test can
replace it). Importing this module imports every stage's module but not TensorFlow: the stages import it
when they run. ``edgexfer.export`` is the export package; its function here is ``export_run``. Unknown
keyword arguments are refused in one line (exit 2 from the CLI), as a config file's unknown keys are.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import edgexfer.evaluate.bench as bench_stage
import edgexfer.export.pipeline as export_stage
import edgexfer.studies.compare as compare_stage
import edgexfer.train as train
from edgexfer.config import FinetuneConfig
from edgexfer.evaluate.bench import BenchConfig, BenchOutcome
from edgexfer.export.config import ExportConfig
from edgexfer.options import make_config
from edgexfer.studies.compare import CompareConfig, StudyOutcome, TuneOptions
from edgexfer.train.trainer import RunResult, load_run


def finetune(config: FinetuneConfig | None = None, /, *, callbacks: Sequence[Any] = (),
             log: Callable[[str], None] | None = print, **options: Any) -> RunResult:
    """Fine-tune a backbone and write its run directory; returns the finished run.

    ``finetune(FinetuneConfig(...))`` or ``finetune(data=..., backbone=..., out=..., ...)``; keyword
    arguments given beside a config replace its fields. See ``FinetuneConfig`` for every option.
    ``callbacks``: extra Keras callbacks for every ``fit``; ``log``: where the one-line messages go
    (None: silent).
    """
    cfg = make_config(FinetuneConfig, config, options, "finetune")
    result: RunResult = train.finetune(cfg, callbacks=callbacks, log=log)
    return result


def export_run(config: ExportConfig | None = None, /, **options: Any) -> Any:
    """Export a finished run to ONNX FP32 (+ FP16, INT8, TensorRT engines); returns the manifest written.

    ``export_run(ExportConfig(...))`` or ``export_run(run_dir=..., fp16=True, int8=True, ...)``.
    """
    cfg = make_config(ExportConfig, config, options, "export")
    return export_stage.export_run(cfg)


def bench(config: BenchConfig | None = None, /, **options: Any) -> BenchOutcome:
    """Bench every artifact of an export on the test split: metrics, accuracy gate, latency, report.

    ``bench(BenchConfig(...))`` or ``bench(export_dir=..., out=..., ...)``. Raises ``GateFailed``
    when a precision breaks the gate, ``GateInconclusive`` when the images cannot decide it (the results and
    report are written first).
    """
    cfg = make_config(BenchConfig, config, options, "bench")
    outcome: BenchOutcome = bench_stage.run_bench(cfg)
    return outcome


def compare(config: CompareConfig | None = None, /, **options: Any) -> StudyOutcome:
    """Fine-tune, export and bench several backbones on one split; writes the study's results and report.

    ``compare(CompareConfig(...))`` or ``compare(data=..., backbones=[...], out=..., ...)``.
    """
    cfg = make_config(CompareConfig, config, options, "compare")
    outcome: StudyOutcome = compare_stage.run_compare(cfg)
    return outcome



__all__ = ["BenchConfig", "CompareConfig", "ExportConfig", "FinetuneConfig", "RunResult", "TuneOptions", "bench",
           "compare", "export_run", "finetune", "load_run", "make_config"]

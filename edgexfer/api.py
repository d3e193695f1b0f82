"""The Python API: one function per stage, each taking its config object or that config's fields.

    from edgexfer import finetune, export, bench, compare
    run = finetune(data="demo", backbone="tinycnn", out="runs/demo", image_size=64)
    export(run_dir=run.run_dir, fp16=True, int8=True)

Each function is a thin front of the library entry point (``edgexfer.train.finetune``,
``edgexfer.export.export_run``, ``edgexfer.evaluate.bench.run_bench``,
``edgexfer.studies.compare.run_compare``), looked up when it is called: importing this module
imports neither TensorFlow nor any stage. Unknown keyword arguments are refused in one line (exit 2
from the CLI), as a config file's unknown keys are.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Any, TypeVar

from edgexfer.contracts import check_known_keys
from edgexfer.errors import EdgexferError

if TYPE_CHECKING:
    from edgexfer.config import FinetuneConfig
    from edgexfer.evaluate.bench import BenchConfig, BenchOutcome
    from edgexfer.export.config import ExportConfig
    from edgexfer.studies.compare import CompareConfig, StudyOutcome
    from edgexfer.train.trainer import RunResult

#: public name -> (module, attribute): the config classes and results the API hands out
EXPORTS: dict[str, tuple[str, str]] = {
    "FinetuneConfig": ("edgexfer.config", "FinetuneConfig"),
    "ExportConfig": ("edgexfer.export.config", "ExportConfig"),
    "BenchConfig": ("edgexfer.evaluate.bench", "BenchConfig"),
    "CompareConfig": ("edgexfer.studies.compare", "CompareConfig"),
    "TuneOptions": ("edgexfer.studies.compare", "TuneOptions"),
    "RunResult": ("edgexfer.train.trainer", "RunResult"),
    "load_run": ("edgexfer.train.trainer", "load_run"),
}

C = TypeVar("C")


def resolve(name: str) -> Any:
    """The object behind the public name ``name`` of EXPORTS, imported now."""
    module, attribute = EXPORTS[name]
    return getattr(importlib.import_module(module), attribute)


def _entry(module: str, function: str) -> Any:
    return getattr(importlib.import_module(module), function)


def make_config(config_class: type[C], config: C | None, options: dict[str, Any], stage: str) -> C:
    """``config`` with ``options`` replaced, or a new ``config_class(**options)``; one-line errors for an
    unknown option, a missing required one, or a config of the wrong class."""
    if config is not None and not isinstance(config, config_class):
        raise EdgexferError(f"{stage} takes a {config_class.__name__}, got {type(config).__name__}",
                            f"pass {config_class.__name__}(...) or its fields as keyword arguments")

    fields = {f.name: f for f in dataclasses.fields(config_class)}  # type: ignore[arg-type]
    check_known_keys(config_class, options, stage)
    if config is not None:
        return dataclasses.replace(config, **options) if options else config  # type: ignore[type-var]
    required = [n for n, f in fields.items() if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and n not in options]
    if required:
        raise EdgexferError(f"{stage} needs {', '.join(required)}",
                            f"pass them as keyword arguments or in a {config_class.__name__}")
    return config_class(**options)


def finetune(config: FinetuneConfig | None = None, /, *, callbacks: Sequence[Any] = (),
             log: Callable[[str], None] | None = print, **options: Any) -> RunResult:
    """Fine-tune a backbone and write its run directory; returns the finished run.

    ``finetune(FinetuneConfig(...))`` or ``finetune(data=..., backbone=..., out=..., ...)``; keyword
    arguments given beside a config replace its fields. See ``FinetuneConfig`` for every option.
    ``callbacks``: extra Keras callbacks for every ``fit``; ``log``: where the one-line messages go
    (None: silent).
    """
    cfg = make_config(resolve("FinetuneConfig"), config, options, "finetune")
    result: RunResult = _entry("edgexfer.train", "finetune")(cfg, callbacks=callbacks, log=log)
    return result


def export(config: ExportConfig | None = None, /, **options: Any) -> Any:
    """Export a finished run to ONNX FP32 (+ FP16, INT8, TensorRT engines); returns the manifest written.

    ``export(ExportConfig(...))`` or ``export(run_dir=..., fp16=True, int8=True, ...)``.
    """
    cfg = make_config(resolve("ExportConfig"), config, options, "export")
    return _entry("edgexfer.export", "export_run")(cfg)


def bench(config: BenchConfig | None = None, /, **options: Any) -> BenchOutcome:
    """Bench every artifact of an export on the test split: metrics, accuracy gate, latency, report.

    ``bench(BenchConfig(...))`` or ``bench(export_dir=..., out=..., ...)``. Raises ``GateFailed``
    when a precision breaks the gate, ``GateInconclusive`` when the images cannot decide it (the results and
    report are written first).
    """
    cfg = make_config(resolve("BenchConfig"), config, options, "bench")
    outcome: BenchOutcome = _entry("edgexfer.evaluate.bench", "run_bench")(cfg)
    return outcome


def compare(config: CompareConfig | None = None, /, **options: Any) -> StudyOutcome:
    """Fine-tune, export and bench several backbones on one split; writes the study's results and report.

    ``compare(CompareConfig(...))`` or ``compare(data=..., backbones=[...], out=..., ...)``.
    """
    cfg = make_config(resolve("CompareConfig"), config, options, "compare")
    outcome: StudyOutcome = _entry("edgexfer.studies.compare", "run_compare")(cfg)
    return outcome


class CallablePackage(ModuleType):
    """The class of the ``edgexfer.export`` package: calling it is ``edgexfer.api.export``, so that
    ``from edgexfer import export`` gives a function-like object whichever was imported first."""

    def __call__(self, config: ExportConfig | None = None, /, **options: Any) -> Any:
        return export(config, **options)


__all__ = ["EXPORTS", "bench", "compare", "export", "finetune", "make_config", "resolve"]

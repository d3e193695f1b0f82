"""What a study's jobs call: the stage functions (``Stages``, swapped for stand-ins in tests), the
tuning options, and the readers that tell a finished run or export from a partial one.

Below ``edgexfer.studies.jobs`` and ``edgexfer.studies.executors``, which run the jobs, and
``edgexfer.studies.compare``, which plans them: each imports this module, never the other way round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import edgexfer.contracts.manifest as manifest_contract
import edgexfer.contracts.run as run_contract
from edgexfer.backbones import get_backbone, resolve_weights
from edgexfer.evaluate.bench import run_bench
from edgexfer.export import export_run
from edgexfer.io import read_json
from edgexfer.studies.tuning import tune_backbone
from edgexfer.train import finetune


@dataclass
class TuneOptions:
    """KerasTuner search per backbone (``--tune``)."""

    tuner: str = "hyperband"  # or "bayesian"
    max_trials: int = 10
    epochs: int = 4  # most epochs one trial trains (Hyperband's max_epochs)
    objective: str = "val_accuracy"
    executions_per_trial: int = 1


@dataclass
class Stages:
    """The stage functions a study calls; tests swap in stand-ins. With ``--executor ray`` they run
    in the workers (Ray pickles them with cloudpickle)."""

    finetune: Callable[[Any], Any]
    export: Callable[[Any], Any]
    bench: Callable[[Any], Any]
    tune: Callable[..., dict[str, Any]]
    check_backbones: Callable[[Sequence[str], Any], None] = field(
        default=lambda names, image_size=None: known_backbones(names, image_size))
    # weights choice -> "imagenet", "none" or an absolute file path, per backbone (as the trainer resolves it)
    resolve_weights: Callable[[str, Any], str] = field(default=lambda name, weights: resolved_weights(name, weights))


def default_stages(log: Callable[[str], None] | None = None) -> Stages:
    """The library's own stages (TensorFlow is imported when they run, not at module load)."""

    def finetune_stage(config: Any) -> Any:
        return finetune(config, log=log or print)

    return Stages(finetune=finetune_stage, export=export_run, bench=run_bench, tune=tune_backbone)


def same_split(run_dir: Path, split_path: Path) -> bool:
    """True when the run trained and tested on exactly the parts of ``split_path``."""
    run_split = run_dir / "split.json"
    if not run_split.is_file():
        return False
    return read_json(run_split, "run split").get("splits") == read_json(split_path, "study split").get("splits")


def finished_run(run_dir: Path) -> dict[str, Any] | None:
    """run.json of a finished run whose model file is the one it recorded, else None
    (``edgexfer.contracts.run.finished_run``)."""
    run = run_contract.finished_run(run_dir)
    return run.record if run is not None else None


def finished_export(export_dir: Path, model_sha256: str) -> dict[str, Any] | None:
    """manifest.json of a complete export of the model with this hash, else None
    (``edgexfer.contracts.manifest.finished_export``)."""
    manifest = manifest_contract.finished_export(export_dir, model_sha256)
    return manifest.to_dict() if manifest is not None else None


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """history.csv as a list of rows, numbers parsed (``edgexfer.contracts.run.read_history``)."""
    return run_contract.read_history(run_dir)


def known_backbones(names: Sequence[str], image_size: int | None = None) -> None:
    """Refuse, before any work starts, an unknown backbone (the registry names the closest ones) or an
    image size below a backbone's minimum."""
    for name in names:
        get_backbone(name).check_image_size(image_size)


def resolved_weights(backbone: str, weights: Any) -> str:
    """What the trainer will load for ``weights`` on ``backbone`` (None: ImageNet where it exists)."""
    return resolve_weights(get_backbone(backbone), weights)


__all__ = ["Stages", "TuneOptions", "default_stages", "finished_export", "finished_run", "known_backbones",
           "read_history", "resolved_weights", "same_split"]

"""The finished run an export reads (contract section 2), checked before anything is built from it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgexfer.errors import EdgexferError
from edgexfer.io import read_json, sha256_file

RUN_SCHEMA = "edgexfer.run/1"


@dataclass(frozen=True)
class RunRecord:
    """run.json of a finished run plus the paths of the files beside it."""

    path: Path
    record: dict[str, Any]

    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def backbone(self) -> str:
        return str(self.record.get("backbone", "unknown"))

    @property
    def image_size(self) -> tuple[int, int]:
        h, w = self.record["image_size"]
        return int(h), int(w)

    @property
    def classes(self) -> list[str]:
        return [str(c) for c in self.record["classes"]]

    @property
    def model_path(self) -> Path:
        return self.path / str(self.record.get("model_file", "model.keras"))

    @property
    def model_sha256(self) -> str:
        return str(self.record["model_sha256"])

    @property
    def split_path(self) -> Path:
        return self.path / "split.json"

    @property
    def labels_path(self) -> Path:
        return self.path / "labels.json"

    @property
    def run_json_path(self) -> Path:
        return self.path / "run.json"

    def verify_model(self) -> None:
        """Refuse a model file that is missing or differs from the one the run recorded."""
        if not self.model_path.is_file():
            raise EdgexferError(f"model file {self.model_path} is missing", "point to a finished run directory (edgexfer finetune)")
        actual = sha256_file(self.model_path)
        if actual != self.model_sha256:
            raise EdgexferError(
                f"{self.model_path} has sha256 {actual[:12]}…, but {self.run_json_path} recorded {self.model_sha256[:12]}…"
                " (the model was changed or replaced after training)",
                "restore the run's own model.keras or fine-tune again",
            )

    def verify_split(self) -> None:
        recorded = self.record.get("split_sha256")
        if recorded and sha256_file(self.split_path) != recorded:
            raise EdgexferError(
                f"{self.split_path} differs from the split {self.run_json_path} recorded", "restore the run's own split.json"
            )

    def load_split(self, data_root: str | os.PathLike[str] | None = None):
        from edgexfer.data.splits import Split

        return Split.load(self.split_path, data_root=data_root)


def load_run(run_dir: str | os.PathLike[str]) -> RunRecord:
    """Read and check a run directory: run.json (schema, keys), labels.json and split.json present."""
    path = Path(run_dir)
    if not path.is_dir():
        raise EdgexferError(f"run directory {path} does not exist", "pass the folder written by edgexfer finetune")
    run_json = path / "run.json"
    if not run_json.is_file():
        raise EdgexferError(
            f"{path} has no run.json, so it is not a finished run", "point to a run that edgexfer finetune completed"
        )
    record = read_json(run_json, "run record")
    if not isinstance(record, dict) or record.get("schema") != RUN_SCHEMA:
        raise EdgexferError(f"{run_json} is not an edgexfer run record (schema {RUN_SCHEMA})", "point to a run written by edgexfer finetune")
    missing = [k for k in ("image_size", "classes", "model_sha256") if k not in record]
    if missing:
        raise EdgexferError(f"{run_json} lacks {', '.join(missing)}", "re-run edgexfer finetune to regenerate it")
    try:
        h, w = record["image_size"]
        if int(h) < 1 or int(w) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise EdgexferError(f"{run_json} has an invalid image_size {record['image_size']!r}", "regenerate the run") from None
    run = RunRecord(path, record)
    for needed in (run.labels_path, run.split_path):
        if not needed.is_file():
            raise EdgexferError(f"{needed} is missing from the run", "point to a complete run directory")
    labels = read_json(run.labels_path, "labels file")
    if labels != run.classes:
        raise EdgexferError(f"{run.labels_path} does not list the classes of {run_json}", "restore the run's own labels.json")
    return run

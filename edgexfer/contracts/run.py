"""The run directory (docs/contracts.md section 2): run.json, its split reference, metrics.json, history.csv.

One reader and one writer per file. ``load_run`` is the one run-directory reader (export, calibration,
Grad-CAM, studies and ``edgexfer.load_run`` all go through it); ``finished_run`` is its quiet form for
callers that only ask "is this a finished run of an intact model?".
"""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgexfer.contracts._base import read_record, require_keys
from edgexfer.data.names import check_class_names
from edgexfer.data.splits import Split
from edgexfer.errors import EdgexferError
from edgexfer.io import read_json, sha256_file, write_json, write_text

SCHEMA = "edgexfer.run/1"
RUN_FILE = "run.json"
MODEL_FILE = "model.keras"
SPLIT_FILE = "split.json"
LABELS_FILE = "labels.json"
METRICS_FILE = "metrics.json"
HISTORY_FILE = "history.csv"
_FIX = "point to a run directory that edgexfer finetune completed"


@dataclass(frozen=True)
class RunRecord:
    """run.json of a finished run, typed, plus the directory it lies in.

    ``extra`` holds what run.json records beyond these fields (``plan``, ``batchnorm``, ``versions``)."""

    path: Path
    backbone: str
    image_size: tuple[int, int]
    classes: list[str]
    model_sha256: str
    model_file: str = MODEL_FILE
    split_sha256: str | None = None
    head: str | None = None
    weights: str | None = None
    preprocessing: Any = None
    sanity: str | None = None
    created: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ paths and derived values
    @property
    def name(self) -> str:
        return self.path.resolve().name

    @property
    def model_path(self) -> Path:
        return self.path / self.model_file

    @property
    def split_path(self) -> Path:
        return self.path / SPLIT_FILE

    @property
    def labels_path(self) -> Path:
        return self.path / LABELS_FILE

    @property
    def run_json_path(self) -> Path:
        return self.path / RUN_FILE

    @property
    def split_fingerprint(self) -> str:
        """sha256 of the run's split.json: what run.json records, else computed from the file."""
        return self.split_sha256 or sha256_file(self.split_path)

    @property
    def record(self) -> dict[str, Any]:
        """run.json's content as written."""
        return self.to_dict()

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "backbone": self.backbone, "image_size": list(self.image_size),
                "classes": list(self.classes), "head": self.head, "weights": self.weights,
                "preprocessing": self.preprocessing, "model_file": self.model_file,
                "model_sha256": self.model_sha256, "split_sha256": self.split_sha256, **self.extra,
                "sanity": self.sanity, "created": self.created}

    @classmethod
    def from_dict(cls, path: Path, record: dict[str, Any]) -> RunRecord:
        named = {"schema", "backbone", "image_size", "classes", "head", "weights", "preprocessing", "model_file",
                 "model_sha256", "split_sha256", "sanity", "created"}
        h, w = record["image_size"]
        return cls(path=path, backbone=str(record.get("backbone", "unknown")), image_size=(int(h), int(w)),
                   classes=check_class_names(record["classes"], path / RUN_FILE, _FIX), model_sha256=str(record["model_sha256"]),
                   model_file=str(record.get("model_file") or MODEL_FILE), split_sha256=record.get("split_sha256"),
                   head=record.get("head"), weights=record.get("weights"), preprocessing=record.get("preprocessing"),
                   sanity=record.get("sanity"), created=record.get("created"),
                   extra={k: v for k, v in record.items() if k not in named})

    # ------------------------------------------------------------------ checks
    def verify_model(self) -> None:
        """Refuse a model file that is missing or differs from the one the run recorded."""
        if not self.model_path.is_file():
            raise EdgexferError(f"model file {self.model_path} is missing", "point to a finished run directory (edgexfer finetune)")
        actual = sha256_file(self.model_path)
        if actual != self.model_sha256:
            raise EdgexferError(
                f"{self.model_path} does not match run.json: sha256 {actual[:12]}…, but {self.run_json_path} recorded "
                f"{self.model_sha256[:12]}… (the model was changed or replaced after training)",
                "restore the run's own model.keras or fine-tune again",
            )

    def model_intact(self) -> bool:
        return self.model_path.is_file() and sha256_file(self.model_path) == self.model_sha256

    def verify_split(self) -> None:
        if self.split_sha256 and sha256_file(self.split_path) != self.split_sha256:
            raise EdgexferError(
                f"{self.split_path} differs from the split {self.run_json_path} recorded", "restore the run's own split.json"
            )

    def load_split(self, data_root: str | os.PathLike[str] | None = None, *, require_data: bool = True) -> Any:
        return Split.load(self.split_path, data_root=data_root, require_data=require_data)

    # ------------------------------------------------------------------ writer
    def write(self) -> Path:
        """Write run.json (last, it marks the run finished)."""
        return write_json(self.run_json_path, self.to_dict())


def load_run(run_dir: str | os.PathLike[str], *, require_files: bool = True) -> RunRecord:
    """Read and check a run directory: run.json (schema, keys, image size), labels.json matching its classes
    and split.json present (``require_files=False`` reads run.json alone)."""
    path = Path(run_dir)
    if not path.is_dir():
        state = "is a file, not a folder" if path.exists() else "does not exist"
        raise EdgexferError(f"run directory {path} {state}", "pass the folder written by edgexfer finetune")
    run_json = path / RUN_FILE
    if not run_json.is_file():
        raise EdgexferError(f"{path} has no run.json, so it is not a finished run", _FIX)
    record = read_record(run_json, SCHEMA, "run record", _FIX)
    require_keys(record, ("image_size", "classes", "model_sha256"), run_json, "re-run edgexfer finetune to regenerate it")
    try:
        h, w = record["image_size"]
        if int(h) < 1 or int(w) < 1:
            raise ValueError
    except (TypeError, ValueError):
        raise EdgexferError(f"{run_json} has an invalid image_size {record['image_size']!r}", "regenerate the run") from None
    run = RunRecord.from_dict(path, record)
    if require_files:
        for needed in (run.labels_path, run.split_path):
            if not needed.is_file():
                raise EdgexferError(f"{needed} is missing from the run", "point to a complete run directory")
        if read_json(run.labels_path, "labels file") != run.classes:
            raise EdgexferError(f"{run.labels_path} does not list the classes of {run_json}", "restore the run's own labels.json")
    return run


def finished_run(run_dir: str | os.PathLike[str]) -> RunRecord | None:
    """The run record of a finished run whose model file is the one it recorded, else None (never raises for
    a missing, foreign or damaged run)."""
    try:
        run = load_run(run_dir, require_files=False)
    except EdgexferError:
        return None
    return run if run.model_intact() else None


# ---------------------------------------------------------------------------------------- metrics.json

#: metrics.json keys renamed (old name -> new name): "precision" and "recall" were the macro averages, which
#: clashed with a bench row's "precision" (the numeric format, fp16/int8)
LEGACY_METRIC_KEYS = {"precision": "precision_macro", "recall": "recall_macro"}


@dataclass
class RunMetrics:
    """metrics.json: test-split metrics of the saved model (``classification_metrics``) plus what the run
    checked: ``val_accuracy``, ``batchnorm`` (re-estimation record) and ``sanity`` (the verdict the bench gate
    reads). ``extra`` keeps any other key."""

    accuracy: float
    loss: float | None
    precision_macro: float
    recall_macro: float
    f1: float
    auc: float | None
    confusion_matrix: list[list[int]]
    per_class: dict[str, dict[str, float | int]]
    n: int
    val_accuracy: float | None = None
    batchnorm: dict[str, Any] | None = None
    sanity: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"accuracy": self.accuracy, "loss": self.loss, "precision_macro": self.precision_macro,
                               "recall_macro": self.recall_macro, "f1": self.f1, "auc": self.auc,
                               "confusion_matrix": self.confusion_matrix, "per_class": self.per_class, "n": self.n}
        for key in ("val_accuracy", "batchnorm", "sanity"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        return {**out, **self.extra}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RunMetrics:
        """From ``classification_metrics`` output or a metrics.json of any edgexfer version."""
        d = dict(data)
        for old, new in LEGACY_METRIC_KEYS.items():
            if new not in d and isinstance(d.get(old), (int, float)):
                d[new] = d.pop(old)
        named = {"accuracy", "loss", "precision_macro", "recall_macro", "f1", "auc", "confusion_matrix",
                 "per_class", "n", "val_accuracy", "batchnorm", "sanity"}
        return cls(accuracy=d["accuracy"], loss=d.get("loss"), precision_macro=d["precision_macro"],
                   recall_macro=d["recall_macro"], f1=d["f1"], auc=d.get("auc"),
                   confusion_matrix=d.get("confusion_matrix") or [], per_class=d.get("per_class") or {},
                   n=int(d.get("n") or 0), val_accuracy=d.get("val_accuracy"), batchnorm=d.get("batchnorm"),
                   sanity=d.get("sanity") if isinstance(d.get("sanity"), dict) else None,
                   extra={k: v for k, v in d.items() if k not in named and k not in LEGACY_METRIC_KEYS})


def read_metrics(path: str | os.PathLike[str]) -> RunMetrics:
    """metrics.json of a run or export directory (or the file itself), checked; old files (``precision`` and
    ``recall`` for the macro averages) are read under today's names."""
    p = Path(path)
    if p.is_dir():
        p = p / METRICS_FILE
    data = read_json(p, "run metrics")
    fix = "re-run edgexfer finetune to regenerate it"
    if not isinstance(data, dict):
        raise EdgexferError(f"{p} is not an edgexfer metrics file (a JSON {type(data).__name__})", fix)
    try:
        return RunMetrics.from_dict(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgexferError(f"{p} is not an edgexfer metrics file (no {exc})", fix) from None


def write_metrics(run_dir: str | os.PathLike[str], metrics: RunMetrics) -> Path:
    return write_json(Path(run_dir) / METRICS_FILE, metrics.to_dict())


def read_sanity(*candidates: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The run's sanity record (metrics.json ``sanity``) from the first of ``candidates`` (folders or files)
    that holds a readable metrics.json; None for runs that predate it."""
    for candidate in candidates:
        p = Path(candidate)
        p = p / METRICS_FILE if p.is_dir() else p
        if not p.is_file():
            continue
        try:
            data = read_json(p, "run metrics")  # only the sanity record is needed: any metrics.json will do
        except EdgexferError:
            continue
        sanity = data.get("sanity") if isinstance(data, dict) else None
        return sanity if isinstance(sanity, dict) else None
    return None


# ---------------------------------------------------------------------------------------- history.csv


def _cell(text: Any) -> Any:
    """A history.csv cell back as int or float where it is one."""
    for kind in (int, float):
        try:
            return kind(text)
        except (TypeError, ValueError):
            pass
    return text


def read_history(run_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """history.csv (one row per epoch of every stage) with numbers parsed; [] when the run has none."""
    p = Path(run_dir)
    p = p / HISTORY_FILE if p.is_dir() else p
    if not p.is_file():
        return []
    with p.open(newline="") as f:
        return [{k: _cell(v) for k, v in row.items()} for row in csv.DictReader(f)]


def write_history(run_dir: str | os.PathLike[str], history: list[dict[str, Any]]) -> Path:
    columns: list[str] = []
    for row in history:
        columns += [k for k in row if k not in columns]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns)
    writer.writeheader()
    writer.writerows(history)
    return write_text(Path(run_dir) / HISTORY_FILE, buffer.getvalue())


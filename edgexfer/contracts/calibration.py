"""The record of a calibration set, ``<id>.json`` beside ``<id>.npz`` (docs/contracts.md section 3).

``edgexfer.data.calibration`` draws, writes and reads the sets; the record's format, its reader and its
writer are here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgexfer.contracts._base import read_record, require_keys
from edgexfer.errors import EdgexferError
from edgexfer.io import write_json

SCHEMA = "edgexfer.calibration/1"
_FIX = "rebuild the set with: edgexfer calibration build RUN_DIR"


@dataclass(frozen=True)
class CalibrationRecord:
    """What a calibration set holds and where it was drawn from. ``refs`` and ``pixel_sha1`` are per image,
    in set order; ``extra`` keeps any other key."""

    id: str
    file: str
    classes: list[str]
    image_size: tuple[int, int]
    size: int
    sha256: str
    source_run: dict[str, Any] = field(default_factory=dict)
    model_sha256: str | None = None
    split: str = "train"
    split_sha256: str | None = None
    class_counts: dict[str, int] = field(default_factory=dict)
    seed: int | None = None
    requested_size: int | None = None
    refs: list[str] = field(default_factory=list)
    pixel_sha1: list[str] | None = None
    created: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "id": self.id, "file": self.file, "source_run": self.source_run,
                "model_sha256": self.model_sha256, "split": self.split, "split_sha256": self.split_sha256,
                "classes": list(self.classes), "class_counts": self.class_counts,
                "image_size": list(self.image_size), "seed": self.seed, "requested_size": self.requested_size,
                "size": self.size, "sha256": self.sha256, "refs": self.refs, "pixel_sha1": self.pixel_sha1,
                "created": self.created, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CalibrationRecord:
        named = {"schema", "id", "file", "source_run", "model_sha256", "split", "split_sha256", "classes",
                 "class_counts", "image_size", "seed", "requested_size", "size", "sha256", "refs", "pixel_sha1",
                 "created"}
        h, w = d["image_size"]
        hashes = d.get("pixel_sha1")
        return cls(id=str(d["id"]), file=str(d.get("file") or ""), classes=[str(c) for c in d["classes"]],
                   image_size=(int(h), int(w)), size=int(d["size"]), sha256=str(d["sha256"]),
                   source_run=d.get("source_run") or {}, model_sha256=d.get("model_sha256"),
                   split=str(d.get("split") or "train"), split_sha256=d.get("split_sha256"),
                   class_counts=d.get("class_counts") or {}, seed=d.get("seed"),
                   requested_size=d.get("requested_size"), refs=list(d.get("refs") or []),
                   pixel_sha1=list(hashes) if isinstance(hashes, list) else None, created=d.get("created"),
                   extra={k: v for k, v in d.items() if k not in named})


def read_calibration_record(json_path: str | os.PathLike[str]) -> CalibrationRecord:
    """A set's ``.json``, checked (schema, id, classes, image size, size, sha256)."""
    record = read_record(json_path, SCHEMA, "calibration record", _FIX)
    require_keys(record, ("id", "classes", "image_size", "size", "sha256"), json_path, _FIX)
    try:
        return CalibrationRecord.from_dict(record)
    except (TypeError, ValueError) as exc:
        raise EdgexferError(f"{json_path} is not a valid edgexfer calibration record ({exc})", _FIX) from None


def write_calibration_record(json_path: str | os.PathLike[str], record: CalibrationRecord) -> Path:
    return write_json(json_path, record.to_dict())

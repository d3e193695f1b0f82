"""What ``edgexfer predict`` and ``edgexfer explain`` write (docs/predict.md): the predictions file's schema and
Grad-CAM's ``index.json`` (its overlays and where they came from).

``edgexfer.predict.PredictionRun`` (``edgexfer.predict.records``) is the typed predictions record and writes
it (``.json`` with this schema, or ``.csv``); the Grad-CAM index is written and read here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgexfer.io import read_json, write_json

PREDICTIONS_SCHEMA = "edgexfer.predictions/1"
GRADCAM_SCHEMA = "edgexfer.gradcam/1"
GRADCAM_DIR = "gradcam"
INDEX_FILE = "index.json"


@dataclass(frozen=True)
class Explanation:
    """One overlay: which image, what the model said, which class the heat map explains."""

    source: str
    file: str  # overlay PNG, relative to the folder holding index.json
    predicted_class: str
    probability: float
    explained_class: str
    true_class: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "file": self.file, "predicted_class": self.predicted_class,
                "probability": self.probability, "explained_class": self.explained_class,
                "true_class": self.true_class}

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> Explanation:
        return cls(str(entry["source"]), str(entry["file"]), str(entry["predicted_class"]),
                   float(entry["probability"]), str(entry["explained_class"]),
                   None if entry.get("true_class") is None else str(entry["true_class"]))


@dataclass
class GradcamIndex:
    """``index.json`` of a Grad-CAM folder. ``extra`` holds what a selection adds (``selection``, ``limit``,
    ``misclassified``, ``n``…)."""

    run: str
    model_sha256: str | None
    classes: list[str]
    images: list[Explanation]
    method: str = "grad-cam"
    layer: str = "backbone"
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": GRADCAM_SCHEMA, "run": self.run, "model_sha256": self.model_sha256,
                "classes": list(self.classes), "method": self.method, "layer": self.layer, **self.extra,
                "images": [e.to_dict() for e in self.images]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GradcamIndex:
        named = {"schema", "run", "model_sha256", "classes", "method", "layer", "images"}
        return cls(run=str(d.get("run") or ""), model_sha256=d.get("model_sha256"),
                   classes=[str(c) for c in d.get("classes") or []],
                   images=[Explanation.from_dict(e) for e in d.get("images") or []],
                   method=str(d.get("method") or "grad-cam"), layer=str(d.get("layer") or "backbone"),
                   extra={k: v for k, v in d.items() if k not in named})


def write_gradcam_index(folder: str | os.PathLike[str], index: GradcamIndex) -> Path:
    return write_json(Path(folder) / INDEX_FILE, index.to_dict())


def read_gradcam_index(folder: str | os.PathLike[str]) -> GradcamIndex | None:
    """The Grad-CAM index in ``folder``, or None when there is none or it is of another format (a report then
    shows no overlays); a file that is not JSON is refused in one line."""
    path = Path(folder) / INDEX_FILE
    if not path.is_file():
        return None
    record = read_json(path, "Grad-CAM index")
    if not isinstance(record, dict) or record.get("schema") != GRADCAM_SCHEMA:
        return None
    return GradcamIndex.from_dict(record)

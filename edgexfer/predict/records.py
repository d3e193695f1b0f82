"""What a prediction run produced, and how it is written: ``Prediction``, ``SkippedImage``, ``PredictionRun``
(``.csv``, or ``.json`` of docs/contracts.md's ``edgexfer.predictions/1``), written atomically."""

from __future__ import annotations

import csv
import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgexfer.contracts.predictions import PREDICTIONS_SCHEMA
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.operating_point import DecisionRule
from edgexfer.io import write_json, write_text


@dataclass(frozen=True)
class Prediction:
    """One image's answer: the class, its probability, every class's probability, and who answered."""

    source: str  # the file path, or "array[<i>]"
    predicted_class: str
    class_index: int
    probability: float
    probabilities: tuple[float, ...]  # in the order of ``classes``
    classes: tuple[str, ...]
    artifact: str
    runtime: str

    def as_dict(self) -> dict[str, Any]:
        return {"path": self.source, "predicted_class": self.predicted_class, "probability": self.probability,
                "probabilities": dict(zip(self.classes, self.probabilities, strict=True))}


@dataclass(frozen=True)
class SkippedImage:
    path: str
    reason: str


@dataclass
class PredictionRun:
    """What ``Predictor.predict_files`` did: a prediction for every readable file, the others skipped."""

    predictions: list[Prediction]
    skipped: list[SkippedImage]
    artifact: str
    runtime: str
    provider: str
    classes: tuple[str, ...]
    export: str
    reason: str = ""
    sha256: str | None = None  # of the file that answered (the manifest's, checked against the bytes loaded)
    decision: DecisionRule | None = None  # the clinical operating point the answers follow, if any

    def to_csv(self) -> str:
        """``path,predicted_class,probability,p_<class>…``; floats written so that they read back exactly."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(["path", "predicted_class", "probability", *(f"p_{c}" for c in self.classes)])
        for p in self.predictions:
            writer.writerow([p.source, p.predicted_class, repr(p.probability), *(repr(v) for v in p.probabilities)])
        return buffer.getvalue()

    def to_json(self) -> dict[str, Any]:
        decision = self.decision
        return {"schema": PREDICTIONS_SCHEMA, "export": self.export, "artifact": self.artifact,
                "sha256": self.sha256, "runtime": self.runtime, "provider": self.provider,
                "classes": list(self.classes),
                "decision": None if decision is None else {
                    "positive_class": decision.positive_class, "threshold": decision.threshold,
                    "source": decision.source},
                "predictions": [p.as_dict() for p in self.predictions],
                "skipped": [{"path": s.path, "reason": s.reason} for s in self.skipped]}

    def write(self, path: str | os.PathLike[str]) -> Path:
        """Write ``.csv`` or ``.json`` atomically (complete under its name, or absent)."""

        out = Path(path)
        check_output_path(out)
        if out.suffix.lower() == ".json":
            return write_json(out, self.to_json())
        return write_text(out, self.to_csv())


def check_output_path(path: str | os.PathLike[str]) -> None:
    out = Path(path)
    if out.suffix.lower() not in (".csv", ".json"):
        raise EdgexferError(f"--out {out} must end in .csv or .json", "e.g. --out predictions.csv")
    if out.is_dir():
        raise EdgexferError(f"--out {out} is a folder", "name a file ending in .csv or .json")

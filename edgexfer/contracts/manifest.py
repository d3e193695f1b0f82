"""manifest.json of an export directory (docs/contracts.md section 4): lineage, input/output, artifacts.

``read_manifest`` is the one reader (export, bench, predict, serving and studies go through it, directly
or through ``edgexfer.evaluate.exported.load_export``, which adds the artifacts' hash checks);
``write_manifest`` the one writer. Artifact entries stay JSON records here (``edgexfer.runtime.Artifact``
is their typed view for runtimes).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgexfer.contracts._base import read_record, require_keys
from edgexfer.data.names import check_class_names
from edgexfer.errors import EdgexferError
from edgexfer.io import sha256_file, write_json
from edgexfer.versions import library_versions

SCHEMA = "edgexfer.export/1"
MANIFEST_FILE = "manifest.json"
#: files of the source run copied into every export (so bench finds the test split without the run)
RUN_FILES = ("labels.json", "split.json", "run.json")
#: copied when the run has them: metrics.json carries the run's sanity record that bench reads
OPTIONAL_RUN_FILES = ("metrics.json",)
_FIX = "point to a folder written by edgexfer export (or re-export with this version of edgexfer)"


@dataclass(frozen=True)
class SourceRun:
    """``source_run``: the run the export was made from."""

    path: str | None
    name: str | None
    model_sha256: str | None
    backbone: str | None
    image_size: tuple[int, int]
    classes: list[str]
    labels_file: str = "labels.json"
    split_file: str = "split.json"
    split_sha256: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "name": self.name, "model_sha256": self.model_sha256, "backbone": self.backbone,
                "image_size": list(self.image_size), "classes": list(self.classes), "labels_file": self.labels_file,
                "split_file": self.split_file, "split_sha256": self.split_sha256}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SourceRun:
        h, w = d["image_size"]
        return cls(path=d.get("path"), name=d.get("name"), model_sha256=d.get("model_sha256"),
                   backbone=d.get("backbone"), image_size=(int(h), int(w)), classes=check_class_names(d["classes"], "the export manifest", "re-export the model"),
                   labels_file=str(d.get("labels_file") or "labels.json"),
                   split_file=str(d.get("split_file") or "split.json"), split_sha256=d.get("split_sha256"))


@dataclass(frozen=True)
class QuantizerCandidate:
    """One INT8 quantizer's best file (after its fallback rounds), judged on the export's judging images."""

    quantizer: str
    version: str | None
    agreement: float
    agreed: int
    n: int
    interval: tuple[float, float]
    outcome: str
    kept: bool

    def to_dict(self) -> dict[str, Any]:
        return {"quantizer": self.quantizer, "version": self.version, "agreement": self.agreement,
                "agreed": self.agreed, "n": self.n, "interval": [round(v, 4) for v in self.interval],
                "outcome": self.outcome, "kept": self.kept}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> QuantizerCandidate:
        low, high = d.get("interval") or (0.0, 1.0)
        return cls(str(d["quantizer"]), d.get("version"), float(d["agreement"]), int(d["agreed"]), int(d["n"]),
                   (float(low), float(high)), str(d.get("outcome") or ""), bool(d.get("kept")))


@dataclass(frozen=True)
class Int8Quantizer:
    """``int8.quantizer``: who wrote the INT8 file (``edgexfer`` or ``nncf``), its version and settings, every
    candidate judged (``auto``), and ``reason``: the line the export printed about the choice."""

    name: str
    version: str | None
    settings: dict[str, Any]
    candidates: tuple[QuantizerCandidate, ...]
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "version": self.version, "settings": dict(self.settings),
                "candidates": [c.to_dict() for c in self.candidates], "reason": self.reason}

    @classmethod
    def from_artifact(cls, artifact: dict[str, Any]) -> Int8Quantizer:
        """The INT8 entry's quantizer; an export written before ``quantizer`` was recorded was ours."""
        d = artifact.get("quantizer")
        if not d:
            return cls("edgexfer", None, dict(artifact.get("quantization") or {}), (), "recorded before quantizers")
        return cls(str(d["name"]), d.get("version"), dict(d.get("settings") or {}),
                   tuple(QuantizerCandidate.from_dict(c) for c in d.get("candidates") or ()), str(d.get("reason") or ""))


@dataclass
class ExportManifest:
    """manifest.json. ``extra`` holds the other top-level records (``timings``)."""

    name: str
    created: str
    source_run: SourceRun
    input: dict[str, Any]
    output: dict[str, Any]
    artifacts: list[dict[str, Any]]
    options: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "name": self.name, "created": self.created, "source_run": self.source_run.to_dict(),
                "input": self.input, "output": self.output, "artifacts": self.artifacts, "options": self.options,
                "versions": self.versions, **self.extra}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ExportManifest:
        named = {"schema", "name", "created", "source_run", "input", "output", "artifacts", "options", "versions"}
        return cls(name=str(d.get("name") or ""), created=str(d.get("created") or ""),
                   source_run=SourceRun.from_dict(d["source_run"]), input=d["input"], output=d.get("output") or {},
                   artifacts=list(d["artifacts"]), options=d.get("options") or {}, versions=d.get("versions") or {},
                   extra={k: v for k, v in d.items() if k not in named})

    def artifact_entry(self, name: str) -> dict[str, Any] | None:
        return next((a for a in self.artifacts if a.get("name") == name), None)


def new_manifest(name: str, run: Any, artifacts: list[dict[str, Any]], options: dict[str, Any]) -> ExportManifest:
    """The manifest of an export of ``run`` (an ``edgexfer.contracts.run.RunRecord``)."""

    h, w = run.image_size
    source = SourceRun(path=str(run.path.resolve()), name=run.name, model_sha256=run.model_sha256,
                       backbone=run.backbone, image_size=(h, w), classes=list(run.classes),
                       split_sha256=run.split_fingerprint)
    return ExportManifest(name=name, created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
                          source_run=source,
                          input={"name": "image", "shape": [-1, h, w, 3], "dtype": "float32", "range": [0, 255]},
                          output={"name": "probabilities"}, artifacts=artifacts, options=options,
                          versions=library_versions())


def read_manifest_record(export_dir: str | os.PathLike[str]) -> dict[str, Any]:
    """manifest.json as the JSON record, checked (schema, ``source_run`` with classes and image size, input,
    artifacts)."""
    root = Path(export_dir)
    if not root.is_dir():
        state = "is a file, not a folder" if root.exists() else "does not exist"
        raise EdgexferError(f"export directory {root} {state}", "pass the folder written by edgexfer export")
    path = root / MANIFEST_FILE
    if not path.is_file():
        raise EdgexferError(f"{root} has no {MANIFEST_FILE}, so it is not a finished export",
                            "pass a folder written by edgexfer export (or re-run the export)")
    record = read_record(path, SCHEMA, "export manifest", _FIX)
    require_keys(record, ("source_run", "input", "artifacts"), path, "re-export the model")
    require_keys(record["source_run"], ("classes", "image_size"), path, "re-export the model", "source_run")
    return record


def read_manifest(export_dir: str | os.PathLike[str]) -> ExportManifest:
    """The export's manifest.json, checked and typed."""
    return ExportManifest.from_dict(read_manifest_record(export_dir))


def write_manifest(export_dir: str | os.PathLike[str], manifest: ExportManifest) -> Path:
    return write_json(Path(export_dir) / MANIFEST_FILE, manifest.to_dict())


def is_export_dir(path: str | os.PathLike[str]) -> bool:
    try:
        read_manifest_record(path)
        return True
    except EdgexferError:
        return False


def finished_export(export_dir: str | os.PathLike[str], model_sha256: str) -> ExportManifest | None:
    """The manifest of a complete export of the model with this hash (every artifact present with its recorded
    sha256), else None; never raises for a missing or damaged export."""
    root = Path(export_dir)
    try:
        manifest = read_manifest(root)
    except (EdgexferError, KeyError, TypeError, ValueError):
        return None
    if manifest.source_run.model_sha256 != model_sha256:
        return None
    for artifact in manifest.artifacts:
        path = root / str(artifact.get("file"))
        if not path.is_file() or sha256_file(path) != artifact.get("sha256"):
            return None
    return manifest

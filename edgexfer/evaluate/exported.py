"""Read and verify an export directory (docs/contracts.md section 4) without TensorFlow.

Everything the bench uses from an export passes through here: the manifest must exist and parse,
every artifact file must exist with the sha256 the manifest records, and the split copy must be the
one the run was trained with.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgexfer.contracts.manifest import MANIFEST_FILE as MANIFEST
from edgexfer.contracts.manifest import SourceRun, read_manifest_record
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.operating_point import DecisionRule, OperatingPoint
from edgexfer.io import sha256_file
from edgexfer.runtime.base import Artifact

#: the ONNX metadata key under which export records the classes (JSON list, index order)
CLASSES_KEY = "edgexfer.classes"


@dataclass
class ExportDir:
    path: Path
    manifest: dict[str, Any]
    artifacts: list[Artifact]

    @property
    def name(self) -> str:
        return str(self.manifest.get("name") or self.path.name)

    @property
    def source_run(self) -> SourceRun:
        return SourceRun.from_dict(self.manifest["source_run"])

    @property
    def classes(self) -> list[str]:
        return self.source_run.classes

    @property
    def image_size(self) -> tuple[int, int]:
        return self.source_run.image_size

    @property
    def operating_point(self) -> OperatingPoint | None:
        """The clinical operating point export chose and recorded in the manifest (None when it chose none)."""
        return OperatingPoint.from_record(self.manifest.get("operating_point"), self.classes, str(self.path / MANIFEST))

    def decision(self) -> DecisionRule | None:
        """How a served model answers at the manifest's operating point (its source: the manifest), or None."""
        point = self.operating_point
        return DecisionRule.from_point(point, f"the export manifest {self.path / MANIFEST}") if point else None

    @property
    def split_path(self) -> Path:
        return self.path / self.source_run.split_file

    def artifact(self, name: str) -> Artifact:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise EdgexferError(f"export {self.path} has no artifact '{name}'",
                            f"available: {', '.join(a.name for a in self.artifacts)}")

    def keras_artifact(self) -> tuple[Artifact | None, str]:
        """The source run's model.keras as an artifact for the Keras runtime, or (None, why not)."""
        source = self.manifest["source_run"]
        run_path = source.get("path")
        if not run_path:
            return None, "the manifest records no source run path"
        model = Path(run_path) / "model.keras"
        if not model.is_file():
            return None, f"the source run's model {model} is not on this machine"
        expected = source.get("model_sha256")
        if expected and sha256_file(model) != expected:
            return None, f"{model} has changed since the export (sha256 differs from the manifest)"
        return Artifact("keras", model, "keras", "fp32", "any", expected, model.stat().st_size), ""


def load_export(path: str | os.PathLike[str], verify_hashes: bool = True) -> ExportDir:
    """Open an export directory, checking the manifest and (by default) every file's sha256."""
    root = Path(path)
    manifest = read_manifest_record(root)
    source = manifest["source_run"]
    artifacts = [Artifact.from_manifest(entry, root) for entry in manifest["artifacts"]]
    if not artifacts:
        raise EdgexferError(f"{root / MANIFEST} lists no artifacts", "re-export the model")
    export = ExportDir(root, manifest, artifacts)
    for artifact in artifacts:
        if not artifact.path.is_file():
            raise EdgexferError(f"artifact {artifact.path} listed in the manifest is missing",
                                "re-export the model or restore the file")
        if verify_hashes:
            _check_hash(artifact.path, artifact.sha256)
            _check_recorded_classes(artifact, export.classes)
    if verify_hashes and export.split_path.is_file():
        _check_hash(export.split_path, source.get("split_sha256"))
    return export


def recorded_classes(path: Path) -> list[str] | None:
    """The classes an ONNX file records in its own ``edgexfer.classes`` metadata, or None when it records none."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # noqa: BLE001  (protobuf raises its own DecodeError; any failure is an unreadable file)
        raise EdgexferError(f"{path} is not a readable ONNX file ({type(exc).__name__})", "re-export the model") from None
    value = next((p.value for p in model.metadata_props if p.key == CLASSES_KEY), None)
    if value is None:
        return None
    try:
        classes = json.loads(value)
    except ValueError:
        classes = None
    if not isinstance(classes, list):
        raise EdgexferError(f"{path}: its {CLASSES_KEY} metadata is not a JSON list", "re-export the model")
    return [str(c) for c in classes]


def _check_recorded_classes(artifact: Artifact, classes: list[str]) -> None:
    """Refuse an ONNX artifact whose own record of its classes disagrees with the manifest's (a swapped or
    edited manifest would label the same probabilities with the wrong class)."""
    if artifact.format != "onnx":
        return
    recorded = recorded_classes(artifact.path)
    if recorded is not None and recorded != list(classes):
        raise EdgexferError(
            f"the manifest lists the classes {classes} but {artifact.path.name} was exported for {recorded} "
            "(in that index order)", "restore the export's own manifest.json or re-export the model")


def _check_hash(path: Path, expected: str | None) -> None:
    if not expected:
        raise EdgexferError(f"the manifest records no sha256 for {path.name}", "re-export the model")
    actual = sha256_file(path)
    if actual != expected:
        raise EdgexferError(
            f"{path} does not match the manifest (sha256 {actual[:12]}… expected {expected[:12]}…): "
            "the file changed after export", "re-export the model or restore the original file")

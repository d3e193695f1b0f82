"""``model_int8_<target>.layers.json``: the layer report written beside an INT8 file (docs/contracts.md section 4,
``int8.layers``): per node of the float graph, the SQNR the INT8 model keeps against FP32, and the nodes the
accuracy fallback kept in float with their reason. The export writes it (`edgexfer.export.int8.sensitivity`);
the bench report reads it."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from edgexfer.contracts._base import read_record, require_keys
from edgexfer.errors import EdgexferError
from edgexfer.io import sha256_file, write_json

SCHEMA = "edgexfer.layer-report/1"
#: SQNR above this is treated as exact: noise 60 dB below the signal changes no decision
SQNR_CAP_DB = 60.0
_FIX = "re-export the model with --int8"


@dataclass(frozen=True)
class KeptNode:
    """A node the fallback kept in float: why, what quantizing it lost, and the round that decided."""

    name: str
    op_type: str
    reason: str
    sqnr_drop_db: float
    round: int


@dataclass(frozen=True)
class LayerRow:
    """One node: the SQNR (dB) of its output in the INT8 model against FP32, what it loses over its worst input,
    the SQNR of its quantized weight (None: no weight, or kept float) and whether it was kept in float."""

    name: str
    op_type: str
    output_sqnr_db: float
    sqnr_drop_db: float
    weight_sqnr_db: float | None
    in_float: bool


@dataclass(frozen=True)
class LayerReport:
    """The report of the INT8 file ``artifact``, measured on ``images`` calibration images; ``nodes`` worst first."""

    artifact: str
    images: int
    nodes: tuple[LayerRow, ...]
    kept_in_float: tuple[KeptNode, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"schema": SCHEMA, "artifact": self.artifact, "images": self.images,
                "measure": "SQNR in dB of the INT8 model's tensors against FP32 (higher is better, capped at "
                           f"{SQNR_CAP_DB:g}); sqnr_drop_db: what the node loses over its worst input",
                "nodes": [asdict(r) for r in self.nodes], "kept_in_float": [asdict(k) for k in self.kept_in_float]}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LayerReport:
        return cls(artifact=str(d["artifact"]), images=int(d["images"]),
                   nodes=tuple(LayerRow(**r) for r in d["nodes"]),
                   kept_in_float=tuple(KeptNode(**k) for k in d["kept_in_float"]))

    def worst(self, n: int) -> list[LayerRow]:
        return sorted(self.nodes, key=lambda r: r.sqnr_drop_db, reverse=True)[:n]

    def lowest(self) -> LayerRow | None:
        return min(self.nodes, key=lambda r: r.output_sqnr_db, default=None)


def layers_file(int8_file: str) -> str:
    """The report's file name beside ``int8_file``: ``model_int8_cpu.onnx`` -> ``model_int8_cpu.layers.json``."""
    return f"{Path(int8_file).stem}.layers.json"


def write_layer_report(report: LayerReport, path: str | os.PathLike[str]) -> Path:
    return write_json(path, report.to_dict())


def read_layer_report(path: str | os.PathLike[str]) -> LayerReport:
    record = read_record(path, SCHEMA, "INT8 layer report", _FIX)
    require_keys(record, ("artifact", "images", "nodes", "kept_in_float"), path, _FIX)
    try:
        return LayerReport.from_dict(record)
    except (KeyError, TypeError, ValueError) as exc:
        raise EdgexferError(f"{path} is not a readable INT8 layer report ({type(exc).__name__}: {exc})", _FIX) from None


#: nodes of each layer report that bench results carry (worst first)
WORST_SHOWN = 8


def layer_summaries(export_dir: str | os.PathLike[str], artifacts: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For bench results (``export.int8_layers``): per artifact with a layer report, the nodes that lose the most
    signal and the nodes kept in float. A report that is missing or is not the file the manifest names (sha256)
    gives ``problem`` instead."""
    out: list[dict[str, Any]] = []
    for artifact in artifacts:
        entry = artifact.get("layers")
        if not entry:
            continue
        path = Path(export_dir) / str(entry["file"])
        if not path.is_file() or sha256_file(path) != entry.get("sha256"):
            out.append({"artifact": artifact["name"], "file": entry["file"],
                        "problem": "missing, or not the file the manifest names (sha256 differs)"})
            continue
        report = read_layer_report(path)
        out.append({"artifact": artifact["name"], "file": entry["file"], "images": report.images,
                    "nodes": len(report.nodes), "worst": [asdict(r) for r in report.worst(WORST_SHOWN)],
                    "kept_in_float": [asdict(k) for k in report.kept_in_float]})
    return out

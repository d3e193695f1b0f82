"""The accuracy gate: each precision against the FP32 ONNX reference of the same export.

A result breaks the gate when its accuracy, macro F1 or the recall (sensitivity) of ANY class drops
by more than the limit: in medicine one lost disease class matters more than the average.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# float noise: a drop equal to the limit passes
_EPS = 1e-9


@dataclass(frozen=True)
class Thresholds:
    max_accuracy_drop: float = 0.01
    max_f1_drop: float = 0.01
    max_recall_drop: float = 0.02

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


@dataclass(frozen=True)
class Breach:
    """One broken threshold: ``metric`` is accuracy, f1 or recall[<class>]."""

    artifact: str
    precision: str
    runtime: str
    metric: str
    reference: float
    value: float
    drop: float
    limit: float
    #: images behind the drop (net): for recall, cases of that class no longer found
    images: int | None = None
    out_of: int | None = None

    def reason(self) -> str:
        count = f", {self.images} of {self.out_of} images" if self.images is not None else ""
        return (f"{self.metric} dropped {self.drop * 100:.2f} points "
                f"({self.reference:.4f} -> {self.value:.4f}{count}), limit {self.limit * 100:.2f}")


def check_gate(reference: dict[str, Any], candidate: dict[str, Any], thresholds: Thresholds,
               *, artifact: str = "", precision: str = "", runtime: str = "") -> list[Breach]:
    """The thresholds ``candidate`` metrics break against ``reference`` (both classification_metrics)."""
    n = candidate.get("n")
    checks: list[tuple[str, float, float, float, int | None]] = [
        ("accuracy", reference["accuracy"], candidate["accuracy"], thresholds.max_accuracy_drop, n),
        ("f1", reference["f1"], candidate["f1"], thresholds.max_f1_drop, None),
    ]
    for name, ref_class in reference["per_class"].items():
        cand_class = candidate["per_class"].get(name)
        if cand_class is not None:
            checks.append((f"recall[{name}]", ref_class["recall"], cand_class["recall"], thresholds.max_recall_drop,
                           cand_class.get("support")))
    breaches = []
    for metric, ref_value, value, limit, out_of in checks:
        drop = float(ref_value) - float(value)
        if drop > limit + _EPS:
            images = round(drop * out_of) if out_of else None
            breaches.append(Breach(artifact, precision, runtime, metric, float(ref_value), float(value), drop, limit,
                                   images, out_of if out_of else None))
    return breaches


def breach_table(breaches: list[Breach]) -> str:
    """A plain-text table of what broke: artifact, precision, runtime, metric, FP32, value, drop, limit, and
    how many images the drop amounts to (a one-image drop on a small test set says: measure on more data)."""
    header = ("artifact", "precision", "runtime", "metric", "FP32", "value", "drop", "limit", "images")
    rows = [(b.artifact, b.precision, b.runtime, b.metric, f"{b.reference:.4f}", f"{b.value:.4f}",
             f"{b.drop:.4f}", f"{b.limit:.4f}", f"{b.images}/{b.out_of}" if b.images is not None else "-")
            for b in breaches]
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in [header, *rows]]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)

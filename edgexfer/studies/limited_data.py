"""Limited-data study: learning curves with and without transfer on subsets of the training split.

Each training-set size is a stratified, seeded subset of the study's train split; validation and
test parts are the study's own, unchanged, so every point is measured on the same test images.
Subsets are nested (the 10 % subset lies inside the 25 % one, and so on): the curves then show
what more data adds rather than which images happened to be drawn.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.data.splits import Split, check_split
from edgexfer.errors import EdgexferError


def parse_fractions(text: str | Sequence[float]) -> list[float]:
    """``"0.1,0.25,0.5,1.0"`` → sorted unique fractions in (0, 1]."""
    items = text.split(",") if isinstance(text, str) else list(text)
    try:
        values = sorted({float(str(v).strip()) for v in items if str(v).strip()})
    except ValueError:
        raise EdgexferError(f"--data-fractions {text!r} is not a list of numbers", "pass e.g. 0.1,0.25,0.5,1.0") from None
    if not values or any(not math.isfinite(v) or not 0 < v <= 1 for v in values):
        raise EdgexferError(f"--data-fractions {text!r} must be fractions in (0, 1]", "pass e.g. 0.1,0.25,0.5,1.0")
    return values


def subsample_train(split: Split, fraction: float, seed: int = 0) -> Split:
    """The same split with its train part cut to ``fraction`` of each class (at least one image each).

    Seeded and nested: for a given seed, the subset at a smaller fraction is contained in the
    subset at a larger one, because every class is shuffled once and cut at different lengths.
    """
    if not 0 < fraction <= 1:
        raise EdgexferError(f"data fraction {fraction} is not in (0, 1]", "pass fractions like 0.1,0.25,0.5,1.0")
    train = split.samples("train")
    if fraction == 1:
        return Split(split.source, {n: split.samples(n) for n in split.names}, split.seed, split.fractions, split.presplit)
    rng = np.random.default_rng(seed)
    kept = []
    for label in range(len(split.classes)):
        items = sorted((s for s in train if s.label == label), key=lambda s: s.ref)
        order = rng.permutation(len(items))
        n_keep = max(1, round(len(items) * fraction))
        kept += [items[i] for i in order[:n_keep]]
    parts = {n: split.samples(n) for n in split.names}
    parts["train"] = sorted(kept, key=lambda s: (s.label, s.ref))
    subset = Split(split.source, parts, split.seed, split.fractions, split.presplit)
    check_split(subset)
    return subset


def weights_tag(weights: str) -> str:
    """A folder-safe name for a weights choice (``imagenet``, ``none`` or a file's stem)."""
    if weights in ("imagenet", "none"):
        return weights
    return "file-" + "".join(c if c.isalnum() or c in "-_" else "_" for c in Path(weights).stem)


@dataclass
class LimitedDataPoint:
    backbone: str
    weights: str
    fraction: float
    run_dir: Path

    @property
    def transfer(self) -> bool:
        return self.weights != "none"


def point_config(base: Any, point: LimitedDataPoint, split_file: Path, options: dict[str, Any] | None = None) -> Any:
    """The FinetuneConfig of one learning-curve point: the study's fine-tune options (and tuned ones).

    Both arms get the same epoch budget: ``fine_tune_epochs`` is made explicit (its default is 10
    with pretrained weights and 0 from scratch), so the from-scratch arm trains every layer for
    ``epochs + fine_tune_epochs`` epochs, as many as the transfer arm's two phases together.
    """
    from dataclasses import replace

    fields = dict(options or {})
    if base.fine_tune_epochs is None and "fine_tune_epochs" not in fields:
        fields["fine_tune_epochs"] = 10
    return replace(base, **fields, weights=point.weights, out=str(point.run_dir), split=str(split_file))


def plan_points(backbones: Sequence[str], fractions: Sequence[float], transfer_weights: dict[str, str],
                root: Path) -> list[LimitedDataPoint]:
    """Every (backbone, weights, fraction) run: with transfer (each backbone's weights) and from scratch."""
    points = []
    for b in backbones:
        transfer = transfer_weights[b]
        choices = [transfer] if transfer == "none" else [transfer, "none"]
        points += [LimitedDataPoint(b, w, f, root / b / f"{weights_tag(w)}-{f:g}") for w in choices for f in fractions]
    return points


@dataclass
class LimitedDataPlan:
    """Every learning-curve point of a study and the subset split each trains on."""

    backbones: list[str]
    fractions: list[float]
    transfer_weights: dict[str, str]
    seed: int
    root: Path
    points: list[LimitedDataPoint]
    split_files: dict[float, tuple[Path, int]]  # fraction -> (its split.json, training images)

    def split_file(self, point: LimitedDataPoint) -> Path:
        return self.split_files[point.fraction][0]

    def label(self, point: LimitedDataPoint) -> str:
        i = self.points.index(point) + 1
        return (f"[limited data {i}/{len(self.points)}] {point.backbone} weights={point.weights} "
                f"fraction={point.fraction:g}")


def plan_limited_data(backbones: Sequence[str], fractions: Sequence[float], transfer_weights: dict[str, str],
                      study_split: Split, root: Path, seed: int) -> LimitedDataPlan:
    """Write each fraction's subset split (once: finished points were trained on it) and list the points.

    ``transfer_weights`` maps each backbone to its pretrained weights ("imagenet" or a file), or
    "none" when it has none (then only its from-scratch curve is drawn).
    """
    splits_dir = root / "splits"
    split_files: dict[float, tuple[Path, int]] = {}
    for f in fractions:
        subset = subsample_train(study_split, f, seed)
        path = splits_dir / f"split-{f:g}.json"
        if not path.is_file():  # a saved subset is never rewritten: finished points were trained on it
            subset.save(path)
        split_files[f] = (path, len(subset.samples("train")))
    return LimitedDataPlan(list(backbones), list(fractions), dict(transfer_weights), seed, root,
                           plan_points(backbones, fractions, transfer_weights, root), split_files)


def limited_data_record(plan: LimitedDataPlan,
                        measured: Callable[[LimitedDataPoint], tuple[dict[str, Any], str] | None]) -> dict[str, Any]:
    """The study's ``limited_data`` record. ``measured(point)`` gives a point's test metrics (metrics.json)
    and where they come from (its run folder, or "comparison run"), or None for a point that failed (left out)."""
    points = []
    for point in plan.points:
        found = measured(point)
        if found is None:
            continue
        metrics, source = found
        points.append({
            "backbone": point.backbone, "weights": point.weights, "transfer": point.transfer,
            "fraction": point.fraction, "n_train": plan.split_files[point.fraction][1],
            "accuracy": metrics.get("accuracy"), "f1": metrics.get("f1"), "auc": metrics.get("auc"),
            "loss": metrics.get("loss"), "n_test": metrics.get("n"), "run_dir": source,
        })
    note = None
    scratch_only = [b for b in plan.backbones if plan.transfer_weights[b] == "none"]
    if scratch_only:
        note = (f"{', '.join(scratch_only)} had no pretrained weights in this study (`--weights none`, or a backbone "
                "without ImageNet weights), so only its from-scratch curve is drawn; pass `--weights imagenet` or "
                "`--weights PATH` to draw both.")
    shown = sorted({w for b, w in plan.transfer_weights.items() if w != "none"})
    return {"fractions": list(plan.fractions), "transfer_weights": ", ".join(shown) if shown else "none",
            "transfer_weights_by_backbone": dict(plan.transfer_weights), "seed": plan.seed, "points": points,
            "note": note}


def run_limited_data(
    backbones: Sequence[str],
    fractions: Sequence[float],
    transfer_weights: dict[str, str],
    study_split: Split,
    root: Path,
    seed: int,
    train_point: Callable[[LimitedDataPoint, Path], dict[str, Any]],
    reuse: Callable[[LimitedDataPoint], dict[str, Any] | None] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Train every point, one after another, and return the study's ``limited_data`` record (a study runs
    the points as jobs instead: ``plan_limited_data``, its executor, ``limited_data_record``).

    ``train_point(point, split_file)`` fine-tunes one point and returns its test metrics
    (metrics.json); ``reuse(point)`` may return the metrics of an equivalent finished run (the main
    comparison's full-data run) so it is not trained twice.
    """
    plan = plan_limited_data(backbones, fractions, transfer_weights, study_split, root, seed)

    def measured(point: LimitedDataPoint) -> tuple[dict[str, Any], str]:
        metrics = reuse(point) if reuse is not None else None
        if metrics is not None:
            log(f"{plan.label(point)}: same as the full comparison run, reused")
            return metrics, "comparison run"
        log(f"{plan.label(point)}: {plan.split_files[point.fraction][1]} training images")
        return train_point(point, plan.split_file(point)), str(point.run_dir.relative_to(root.parent))

    return limited_data_record(plan, measured)

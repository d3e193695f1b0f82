"""Stratified, seeded train/val/test splits, saved to split.json so every later stage uses the same images.

numpy, Pillow and scikit-learn only: bench on a Jetson reads the test split through `Split.iter_batches`.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.data.sources import SPLIT_NAMES, DataSource, Sample
from edgexfer.errors import EdgexferError
from edgexfer.io import read_json, write_json

SCHEMA = "edgexfer.split/1"
DEFAULT_FRACTIONS = (0.7, 0.2, 0.1)


@dataclass
class Split:
    """Which samples are train, val and test, and the source to read them from."""

    source: DataSource
    splits: dict[str, list[Sample]]
    seed: int
    fractions: tuple[float, float, float]
    presplit: bool = False

    @property
    def classes(self) -> list[str]:
        return list(self.source.classes)

    @property
    def names(self) -> list[str]:
        return [name for name in SPLIT_NAMES if name in self.splits]

    def samples(self, name: str) -> list[Sample]:
        try:
            return list(self.splits[name])
        except KeyError:
            raise EdgexferError(f"the split has no '{name}' part", f"use one of {', '.join(self.names)}") from None

    def labels(self, name: str) -> np.ndarray:
        return np.array([s.label for s in self.samples(name)], dtype=np.int64)

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per class in each part: {"train": {"normal": 70, …}, …}."""
        out = {}
        for name in self.names:
            c = np.bincount(self.labels(name), minlength=len(self.classes))
            out[name] = {cls: int(n) for cls, n in zip(self.classes, c, strict=True)}
        return out

    # ------------------------------------------------------------------ reading images

    def iter_batches(
        self, name: str, size: tuple[int, int], batch_size: int, *, limit: int | None = None, workers: int | None = None
    ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (uint8 images (B, H, W, 3), int64 labels (B,)) over one part, in its saved order.

        Decoding runs on a few threads (Pillow releases the GIL while decoding and resizing).
        ``limit`` stops after that many images.
        """
        if batch_size < 1:
            raise EdgexferError(f"batch size {batch_size} is not positive", "pass a batch size of 1 or more")
        samples = self.samples(name)
        if limit is not None:
            samples = samples[: max(0, int(limit))]
        size = (int(size[0]), int(size[1]))
        n_workers = workers or min(8, os.cpu_count() or 1)
        with ThreadPoolExecutor(max_workers=n_workers) as pool:
            for start in range(0, len(samples), batch_size):
                chunk = samples[start : start + batch_size]
                images = list(pool.map(lambda s: self.source.load(s.ref, size), chunk))
                yield np.stack(images), np.array([s.label for s in chunk], dtype=np.int64)

    def load_arrays(self, name: str, size: tuple[int, int], *, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """All images of one part at once: (uint8 (N, H, W, 3), int64 (N,))."""
        images, labels = [], []
        for x, y in self.iter_batches(name, size, batch_size=64, limit=limit):
            images.append(x)
            labels.append(y)
        if not images:
            h, w = int(size[0]), int(size[1])
            return np.zeros((0, h, w, 3), dtype=np.uint8), np.zeros((0,), dtype=np.int64)
        return np.concatenate(images), np.concatenate(labels)

    # ------------------------------------------------------------------ record

    def to_record(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "classes": self.classes,
            "source": self.source.describe(),
            "seed": self.seed,
            "fractions": list(self.fractions),
            "presplit": self.presplit,
            "counts": self.counts(),
            "splits": {name: [[s.ref, s.label] for s in self.splits[name]] for name in self.names},
        }

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write split.json atomically."""
        return write_json(path, self.to_record())

    @classmethod
    def load(
        cls, path: str | os.PathLike[str], data_root: str | os.PathLike[str] | None = None, *, require_data: bool = True
    ) -> Split:
        """Read a split.json. ``data_root`` says where the data is now, when it moved since training.

        Raises when the data is not there, unless ``require_data=False`` (classes, refs and counts only).
        """
        record = read_json(path, "split file")
        if not isinstance(record, dict) or record.get("schema") != SCHEMA:
            raise EdgexferError(f"{path} is not an edgexfer split file (schema {SCHEMA})", "point to the split.json of a run")
        try:
            classes = list(record["classes"])
            splits = {
                name: [Sample(str(ref), int(label)) for ref, label in record["splits"][name]]
                for name in SPLIT_NAMES
                if name in record["splits"]
            }
            source_record = dict(record["source"])
            seed = int(record.get("seed", 0))
            fractions = tuple(float(f) for f in record.get("fractions", DEFAULT_FRACTIONS))
        except (KeyError, TypeError, ValueError) as exc:
            raise EdgexferError(f"{path} is damaged ({type(exc).__name__}: {exc})", "regenerate it with edgexfer finetune") from None
        source_record["classes"] = classes
        all_samples = [s for name in SPLIT_NAMES if name in splits for s in splits[name]]
        source = DataSource.from_record(source_record, all_samples, data_root=data_root, require_data=require_data)
        return cls(source, splits, seed, fractions, bool(record.get("presplit", False)))  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------- making


def make_split(
    source: DataSource, fractions: Sequence[float] = DEFAULT_FRACTIONS, seed: int = 0
) -> Split:
    """Split ``source`` into train/val/test, stratified by class and seeded.

    The same source and seed always give the same split. Every class appears in every part, so a class
    needs at least three images. A pre-split source keeps its parts; a missing val or test part is
    carved, stratified, from train in the proportion ``fractions`` asks for.
    """
    fracs = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    if source.presplit is not None:
        parts = {name: list(items) for name, items in source.presplit.items() if items}
        if "train" not in parts:
            raise EdgexferError(f"the train split of {source.root} holds no images", "add training images")
        for name, frac in (("val", fracs[1]), ("test", fracs[2])):
            if name not in parts:
                share = frac / (fracs[0] + frac)
                parts["train"], parts[name] = _carve(parts["train"], share, source.classes, rng, name)
        split = Split(source, {n: _ordered(parts[n]) for n in SPLIT_NAMES}, seed, fracs, presplit=True)
    else:
        by_class = _by_class(source.samples, len(source.classes))
        parts = {name: [] for name in SPLIT_NAMES}
        for label, items in enumerate(by_class):
            if len(items) < 3:
                raise EdgexferError(
                    f"class '{source.classes[label]}' has {len(items)} image(s); a train/val/test split needs at least 3 per class",
                    "add images of that class",
                )
            order = rng.permutation(len(items))
            n_train, n_val, _ = _allocate(len(items), fracs)
            shuffled = [items[i] for i in order]
            parts["train"] += shuffled[:n_train]
            parts["val"] += shuffled[n_train : n_train + n_val]
            parts["test"] += shuffled[n_train + n_val :]
        split = Split(source, {n: _ordered(parts[n]) for n in SPLIT_NAMES}, seed, fracs)
    check_split(split)
    return split


def check_split(split: Split) -> None:
    """Raise when a part has fewer images than classes, train lacks a class, or an image is in two parts."""
    n_classes = len(split.classes)
    for name in SPLIT_NAMES:
        n = len(split.splits.get(name, []))
        if n < n_classes:
            raise EdgexferError(
                f"the {name} split has {n} image(s) for {n_classes} classes",
                "add images or give that split a larger fraction",
            )
    train_labels = {s.label for s in split.splits["train"]}
    missing = [c for i, c in enumerate(split.classes) if i not in train_labels]
    if missing:
        raise EdgexferError(f"the train split has no images of {', '.join(missing)}", "add training images of every class")
    seen: dict[str, str] = {}
    for name in SPLIT_NAMES:
        for s in split.splits[name]:
            other = seen.setdefault(s.ref, name)
            if other != name:
                raise EdgexferError(f"image {s.ref} is in both the {other} and {name} splits", "remove the duplicate")


def class_weights(split: Split) -> dict[int, float]:
    """Balanced class weights from the train split (scikit-learn's ``compute_class_weight('balanced')``)."""
    from sklearn.utils.class_weight import compute_class_weight

    y = split.labels("train")
    classes = np.arange(len(split.classes))
    weights = compute_class_weight("balanced", classes=classes, y=y)
    return {int(c): float(w) for c, w in zip(classes, weights, strict=True)}


def _check_fractions(fractions: Sequence[float]) -> tuple[float, float, float]:
    try:
        fracs = tuple(float(f) for f in fractions)
    except (TypeError, ValueError):
        raise EdgexferError(f"split fractions {fractions!r} are not numbers", "pass three numbers like 0.7,0.2,0.1") from None
    if len(fracs) != 3 or any(not math.isfinite(f) or f <= 0 for f in fracs):
        raise EdgexferError(f"split fractions {fractions!r} are not three positive numbers", "pass train,val,test like 0.7,0.2,0.1")
    total = sum(fracs)
    if abs(total - 1.0) > 1e-6:
        raise EdgexferError(f"split fractions {fractions!r} add up to {total:g}, not 1", "pass train,val,test like 0.7,0.2,0.1")
    return fracs  # type: ignore[return-value]


def _allocate(n: int, fracs: tuple[float, float, float]) -> tuple[int, int, int]:
    """Images of one class per part: rounded shares, at least one in each part."""
    n_val = max(1, round(n * fracs[1]))
    n_test = max(1, round(n * fracs[2]))
    while n - n_val - n_test < 1:  # small classes: give train at least one, take from the larger held-out part
        if n_val >= n_test and n_val > 1:
            n_val -= 1
        else:
            n_test -= 1
    return n - n_val - n_test, n_val, n_test


def _by_class(samples: list[Sample], n_classes: int) -> list[list[Sample]]:
    groups: list[list[Sample]] = [[] for _ in range(n_classes)]
    for s in sorted(samples, key=lambda s: s.ref):  # independent of the order files were listed in
        groups[s.label].append(s)
    return groups


def _carve(
    train: list[Sample], share: float, classes: list[str], rng: np.random.Generator, name: str
) -> tuple[list[Sample], list[Sample]]:
    kept: list[Sample] = []
    carved: list[Sample] = []
    for label, items in enumerate(_by_class(train, len(classes))):
        if not items:
            continue
        if len(items) < 2:
            raise EdgexferError(
                f"class '{classes[label]}' has {len(items)} training image(s), too few to carve a {name} split from",
                f"add a {name}/ folder or more training images",
            )
        order = rng.permutation(len(items))
        n_carved = min(len(items) - 1, max(1, round(len(items) * share)))
        carved += [items[i] for i in order[:n_carved]]
        kept += [items[i] for i in order[n_carved:]]
    return kept, carved


def _ordered(samples: list[Sample]) -> list[Sample]:
    return sorted(samples, key=lambda s: (s.label, s.ref))

"""The labelled images a bench measures: the run's exact test split, or a data set given with --data.

Images are decoded and resized once by `edgexfer.data` (the same Pillow code training used), kept
in host memory as raw uint8 NHWC, and each sample's ref is kept to time decode + resize end to end.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.errors import EdgexferError
from edgexfer.evaluate.exported import ExportDir


@dataclass
class BenchData:
    images: np.ndarray  # (N, H, W, 3) uint8
    labels: np.ndarray  # (N,) int64
    classes: list[str]
    refs: list[str]
    load: Callable[[str], np.ndarray]  # decode + resize one ref to the model size
    description: dict[str, Any] = field(default_factory=dict)


def load_bench_data(export: ExportDir, data: str | os.PathLike[str] | None = None,
                    progress: bool = True) -> BenchData:
    """Load the test images: ``data`` None → the run's test split (via the export's split.json);
    a folder / .csv / .npz → that data set (its ``test`` part when it is pre-split)."""
    from edgexfer.data.sources import discover

    size = export.image_size
    if data is None:
        from edgexfer.data.splits import Split

        if not export.split_path.is_file():
            raise EdgexferError(f"export {export.path} has no {export.split_path.name}, so its test split is unknown",
                                "re-export the run, or pass a labelled data set with --data")
        split = Split.load(export.split_path)
        source = split.source
        samples = list(split.samples("test"))
        origin: dict[str, Any] = {"kind": "split", "split_file": str(export.split_path), "split": "test",
                  "root": str(source.root)}
    else:
        source = discover(data)
        if source.presplit and source.presplit.get("test"):
            samples, part = list(source.presplit["test"]), "test"
        else:
            samples, part = list(source.samples), "all"
        origin = {"kind": "data", "path": str(Path(data)), "split": part}
    if list(source.classes) != export.classes:
        raise EdgexferError(
            f"data set classes {list(source.classes)} do not match the model's classes {export.classes}",
            "pass a data set with the same class names (folder names / labels) as the training data")
    _check_native_size(source, samples, size)
    if not samples:
        raise EdgexferError(f"the data set {origin.get('path') or origin.get('split_file')} has no test images",
                            "pass a labelled data set with --data")

    from tqdm.auto import tqdm

    from edgexfer.data.images import ImageReadError

    images, labels, refs, skipped = [], [], [], []
    for sample in tqdm(samples, desc="loading test images", unit="img", disable=None if progress else True, file=sys.stderr):
        try:
            images.append(source.load(sample.ref, size))
        except ImageReadError as exc:
            skipped.append({"ref": sample.ref, "reason": exc.line()})
            continue
        labels.append(sample.label)
        refs.append(sample.ref)
    if not images:
        raise EdgexferError("none of the test images could be read", "check the data folder (see --data)")
    y = np.asarray(labels, dtype=np.int64)
    origin.update({
        "n": len(images),
        "classes": list(source.classes),
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(source.classes)},
        "image_size": list(size),
        "skipped": skipped,
    })
    return BenchData(np.stack(images).astype(np.uint8), y, list(source.classes), refs,
                     lambda ref: source.load(ref, size), origin)


def _check_native_size(source: Any, samples: list[Any], size: tuple[int, int]) -> None:
    """A .npz stores images at one size: it must be the model's (resizing it would bench other pixels)."""
    if getattr(source, "kind", None) != "npz" or not samples:
        return
    part = samples[0].ref.split(":", 1)[0]
    with np.load(source.root, mmap_mode="r") as npz:
        shape = npz[f"{part}_images"].shape
    if tuple(shape[1:3]) != tuple(size):
        raise EdgexferError(
            f"{source.root} holds {shape[1]}x{shape[2]} images, the model takes {size[0]}x{size[1]}",
            f"pass a data set at {size[0]}x{size[1]} (or a folder of image files, which are resized)")

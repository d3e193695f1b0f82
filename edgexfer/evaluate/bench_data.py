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

from edgexfer.contracts.calibration import read_calibration_record
from edgexfer.data.calibration import pixel_hash
from edgexfer.data.images import ImageReadError, is_image_file, load_image
from edgexfer.data.sources import discover
from edgexfer.data.splits import Split
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

    size = export.image_size
    if data is None:
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


# ------------------------------------------------------------------------------------------------------------------
# More evidence without labels: agreement with FP32 needs no label, so every image the bench may use counts:
# the labelled test images, the run's validation split (default data only) and any --unlabeled folder, never
# an image of the INT8 calibration set and never the train split (the model is most confident on the images it
# was fitted to, so a precision's flips are under-counted there).

#: sources of the agreement pool, in report order
POOL_SOURCES = ("test", "val", "unlabeled")


@dataclass
class AgreementPool:
    """Images beyond the labelled ones whose predictions only count for agreement with FP32: ``images``
    (N, H, W, 3) uint8 and, per image, its ``sources`` ("val" or "unlabeled"). ``description``: how many each
    source gave, what was left out (duplicates of another pool image, calibration images) and why."""

    images: np.ndarray
    sources: list[str]
    description: dict[str, Any] = field(default_factory=dict)
    #: per image, its class for validation images (they choose a clinical operating point), -1 unlabeled
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


def calibration_hashes(export: ExportDir) -> tuple[set[str], str]:
    """Pixel hashes of the INT8 calibration set(s) the manifest records, and a sentence saying where they came
    from (or that the set's record is not on this machine, so unlabeled images were not checked against it)."""

    hashes: set[str] = set()
    found, missing = [], []
    for entry in export.manifest.get("artifacts", []):
        calibration = entry.get("calibration") if isinstance(entry, dict) else None
        if not isinstance(calibration, dict) or not calibration.get("file"):
            continue
        name = Path(str(calibration["file"])).with_suffix(".json").name
        candidates = [export.path / name, export.path.parent / "calibration" / name, Path("calibration") / name,
                      export.path.parent.parent / "calibration" / name]
        record = next((c for c in candidates if c.is_file()), None)
        if record is None:
            missing.append(name)
            continue
        try:
            pixel = read_calibration_record(record).pixel_sha1 or []
        except EdgexferError:
            missing.append(name)
            continue
        hashes.update(pixel)
        found.append(str(record))
    if found:
        text = f"calibration images left out by pixel hash ({', '.join(found)})"
    elif missing:
        text = (f"the calibration set's record ({', '.join(missing)}) is not on this machine: unlabeled images were "
                "not checked against it (its images come from the train split, never from val or test)")
    else:
        text = "no artifact records a calibration set"
    return hashes, text


def _load_refs(load: Callable[[str], np.ndarray], refs: list[str], what: str, progress: bool
               ) -> tuple[list[np.ndarray], list[dict[str, str]]]:
    from tqdm.auto import tqdm


    images, skipped = [], []
    for ref in tqdm(refs, desc=f"loading {what} images", unit="img", disable=None if progress else True,
                    file=sys.stderr):
        try:
            images.append(load(ref))
        except ImageReadError as exc:
            skipped.append({"ref": ref, "reason": exc.line()})
    return images, skipped


def load_agreement_pool(export: ExportDir, labelled: BenchData, data: str | os.PathLike[str] | None = None,
                        unlabeled: str | os.PathLike[str] | None = None, progress: bool = True) -> AgreementPool:
    """The images beyond ``labelled`` that count for agreement: the run's validation split when the bench
    measures the run's own test split (``data`` None; skipped with a note when its files are not here), and
    every image file under ``unlabeled`` (a folder, searched recursively; exit 2 when it is not a folder or
    holds no image). Calibration images, and images already in the pool (same pixels), are left out."""

    size = export.image_size
    notes: list[str] = []
    chosen: list[tuple[str, np.ndarray, int]] = []
    skipped: list[dict[str, str]] = []
    if data is None and export.split_path.is_file():
        try:
            split = Split.load(export.split_path, require_data=False)
            samples = split.samples("val")
            refs = [s.ref for s in samples]
            label_of = {s.ref: int(s.label) for s in samples}
            if refs and not Path(split.source.root).exists():
                notes.append(f"validation images not used: {split.source.root} is not on this machine")
            elif refs:
                images, bad = _load_refs(lambda ref: split.source.load(ref, size), refs, "validation", progress)
                read = [ref for ref in refs if ref not in {b["ref"] for b in bad}]
                chosen += [("val", img, label_of[ref]) for img, ref in zip(images, read, strict=True)]
                skipped += bad
        except EdgexferError as exc:
            notes.append(f"validation images not used: {exc.line()}")
    elif data is not None:
        notes.append("validation images not used: --data replaces the run's split")
    if unlabeled is not None:
        folder = Path(unlabeled)
        if not folder.is_dir():
            raise EdgexferError(f"--unlabeled {folder} is not a folder", "pass a folder of image files")
        files = sorted(str(p) for p in folder.rglob("*") if p.is_file() and is_image_file(p))
        if not files:
            raise EdgexferError(f"--unlabeled {folder} holds no image files",
                                "pass a folder of PNG, JPEG, BMP, TIFF or DICOM images")
        images, bad = _load_refs(lambda ref: load_image(ref, size), files, "unlabeled", progress)
        chosen += [("unlabeled", img, -1) for img in images]
        skipped += bad
    calibration, calibration_text = calibration_hashes(export)
    seen = {pixel_hash(img) for img in labelled.images}
    kept_images, kept_sources, kept_labels = [], [], []
    duplicates = in_calibration = 0
    for source, img, label in chosen:
        digest = pixel_hash(img)
        if digest in calibration:
            in_calibration += 1
        elif digest in seen:
            duplicates += 1
        else:
            seen.add(digest)
            kept_images.append(img)
            kept_sources.append(source)
            kept_labels.append(label)
    counts = {s: 0 for s in POOL_SOURCES}
    counts["test"] = int(len(labelled.images))
    for s in kept_sources:
        counts[s] += 1
    description = {"sources": counts, "n": sum(counts.values()), "left_out_calibration": in_calibration,
                   "left_out_duplicates": duplicates, "calibration_check": calibration_text,
                   "unlabeled": str(unlabeled) if unlabeled is not None else None, "notes": notes,
                   "skipped": skipped,
                   "train_images": "never used: the model is most confident on the images it was fitted to, so "
                                   "a precision's flips would be under-counted there"}
    shape = (0, size[0], size[1], 3)
    stacked = np.stack(kept_images).astype(np.uint8) if kept_images else np.zeros(shape, np.uint8)
    return AgreementPool(stacked, kept_sources, description, np.asarray(kept_labels, dtype=np.int64))

"""Calibration sets: a stratified sample of a run's train split, kept as raw pixels to reuse anywhere.

A set is ``<id>.npz`` (uncompressed: ``images`` uint8 (N, H, W, 3), ``labels`` int64 (N,)) and
``<id>.json`` (contract section 3). A set is identified by its content, never by a folder or run name:
the id is the run's split fingerprint (sha256 of split.json), the image size, the number of images it
really holds and the seed, so two runs that share a folder name never share a set. The record keeps
every image's ref and pixel hash; before an export uses a set it checks that none of its images is in
the run's validation or test split (`check_disjoint`). The .npz is written and read in batches, through the zip member and
the .npy header, so a set of any size never sits in memory whole: a Jetson that lacks the training
images calibrates from the copied pair alone.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.contracts.calibration import (
    CalibrationRecord,
    read_calibration_record,
    write_calibration_record,
)
from edgexfer.contracts.run import RunRecord, load_run
from edgexfer.data.splits import Split
from edgexfer.errors import EdgexferError
from edgexfer.io import atomic_path, sha256_file

DEFAULT_SIZE = 500
DEFAULT_DIR = Path("calibration")


def calibration_id(split_fingerprint: str, image_size: Sequence[int], size: int, seed: int) -> str:
    """``cal-<split sha256, 16 hex>-<H>x<W>-<images>-seed<seed>``: by content, with the number of images held."""
    h, w = (int(v) for v in image_size)
    return f"cal-{split_fingerprint[:16]}-{h}x{w}-{int(size)}-seed{int(seed)}"


def split_fingerprint(run: RunRecord) -> str:
    """The run's split fingerprint: the sha256 of its split.json (what run.json records, else computed)."""
    return run.split_fingerprint


def pixel_hash(image: np.ndarray) -> str:
    """sha1 of an image's uint8 pixels and shape: the same picture at the same size gives the same hash."""
    arr = np.ascontiguousarray(image, dtype=np.uint8)
    return hashlib.sha1(repr(arr.shape).encode() + arr.tobytes()).hexdigest()


def stratified_indices(labels: Sequence[int] | np.ndarray, n_classes: int, size: int, seed: int) -> np.ndarray:
    """Indices of ``size`` samples drawn per class in proportion to the class counts, at least one each.

    Quotas start at the proportional share rounded down (at least 1 per present class), then move one
    image at a time toward the share they miss most; a seeded draw without replacement inside each
    class follows, and the result is shuffled so that every batch mixes classes.
    """
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=n_classes)[:n_classes]
    present = counts > 0
    size = int(min(size, y.size))
    if size < int(present.sum()):
        raise ValueError(f"{size} samples cannot cover {int(present.sum())} classes")
    ideal = size * counts / max(1, counts.sum())
    quota = np.where(present, np.maximum(np.floor(ideal), 1), 0).astype(np.int64)
    while quota.sum() > size:  # too many after the at-least-one rule: take from the most over-served
        k = int(np.argmax(np.where(quota > 1, quota - ideal, -np.inf)))
        quota[k] -= 1
    while quota.sum() < size:  # largest remainders first
        k = int(np.argmax(np.where(quota < counts, ideal - quota, -np.inf)))
        quota[k] += 1
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(np.flatnonzero(y == k), size=int(quota[k]), replace=False) for k in range(n_classes) if quota[k]]
    picked = np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)
    return rng.permutation(picked)


def build_calibration_set(
    run_dir: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    size: int = DEFAULT_SIZE,
    seed: int = 0,
    *,
    data_root: str | os.PathLike[str] | None = None,
    batch_size: int = 64,
    progress: bool = False,
) -> Path:
    """Draw a stratified calibration set from the run's train split and write ``<id>.npz`` + ``<id>.json``.

    ``out`` is a folder (default ``calibration/``) or a ``.npz`` path. Returns the .npz path.
    Draws from ``train`` only: validation images judge the export and test images judge the bench.
    """

    run = load_run(run_dir)
    classes = run.classes
    if int(size) < len(classes):
        raise EdgexferError(
            f"a calibration set of {size} images cannot hold the {len(classes)} classes of run {run.name}",
            f"pass a size of at least {len(classes)} (default {DEFAULT_SIZE})",
        )
    split = run.load_split(data_root)
    train = split.samples("train")
    labels = np.array([s.label for s in train], dtype=np.int64)
    counts = np.bincount(labels, minlength=len(classes)) if labels.size else np.zeros(len(classes), np.int64)
    absent = [c for c, n in zip(classes, counts, strict=True) if n == 0]
    if absent:
        raise EdgexferError(
            f"the train split of run {run.name} has no images of class {', '.join(absent)}",
            "calibrate from a run whose train split holds every class",
        )
    picked = stratified_indices(labels, len(classes), int(size), seed)
    chosen = [train[i] for i in picked]
    h, w = run.image_size
    fingerprint = split_fingerprint(run)
    set_id = calibration_id(fingerprint, (h, w), len(chosen), seed)
    target = Path(out) if out is not None else DEFAULT_DIR
    npz_path = target if target.suffix == ".npz" else target / f"{set_id}.npz"
    json_path = npz_path.with_suffix(".json")
    subset = Split(split.source, {"train": chosen}, split.seed, split.fractions)

    from tqdm.auto import tqdm

    hashes: list[str] = []
    bar = tqdm(total=len(chosen), desc="calibration set", unit="img", disable=None if progress else True,
               leave=False)  # None: no bar when stderr is not a terminal (a log, CI)
    with atomic_path(npz_path) as tmp:
        with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as zf:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                      "shape": (len(chosen), h, w, 3)}
            with zf.open("images.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                for images, _ in subset.iter_batches("train", (h, w), batch_size):
                    member.write(np.ascontiguousarray(images, dtype=np.uint8).tobytes())
                    hashes.extend(pixel_hash(img) for img in images)
                    bar.update(len(images))
            with zf.open("labels.npy", "w") as member:
                np.lib.format.write_array(member, np.array([s.label for s in chosen], dtype=np.int64))
        digest = sha256_file(tmp)
    bar.close()
    class_counts = np.bincount([s.label for s in chosen], minlength=len(classes))
    write_calibration_record(json_path, CalibrationRecord(
        id=set_id,
        file=npz_path.name,
        source_run={"path": str(run.path.resolve()), "name": run.name, "backbone": run.backbone},
        model_sha256=run.model_sha256,
        split="train",
        split_sha256=fingerprint,
        classes=classes,
        class_counts={c: int(n) for c, n in zip(classes, class_counts, strict=True)},
        image_size=(h, w),
        seed=int(seed),
        requested_size=int(size),
        size=len(chosen),
        sha256=digest,
        refs=[s.ref for s in chosen],
        pixel_sha1=hashes,
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    ))
    return npz_path


@dataclass(frozen=True)
class CalibrationSet:
    """A calibration set on disk; images are read in batches by `iter_batches`."""

    npz_path: Path
    json_path: Path
    record: CalibrationRecord

    @property
    def manifest(self) -> dict[str, Any]:
        """The set's .json as written."""
        return self.record.to_dict()

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def size(self) -> int:
        return self.record.size

    @property
    def image_size(self) -> tuple[int, int]:
        return self.record.image_size

    @property
    def classes(self) -> list[str]:
        return list(self.record.classes)

    def labels(self) -> np.ndarray:
        with zipfile.ZipFile(self.npz_path) as zf, zf.open("labels.npy") as member:
            return np.lib.format.read_array(member)

    def iter_batches(self, batch_size: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield (uint8 images (B, H, W, 3), int64 labels (B,)), reading ``batch_size`` images at a time."""
        if batch_size < 1:
            raise EdgexferError(f"batch size {batch_size} is not positive", "pass a batch size of 1 or more")
        labels = self.labels()
        with zipfile.ZipFile(self.npz_path) as zf, zf.open("images.npy") as member:
            shape, dtype = _read_npy_header(member, self.npz_path)
            per_image = int(np.prod(shape[1:])) * dtype.itemsize
            for start in range(0, shape[0], batch_size):
                n = min(batch_size, shape[0] - start)
                buf = member.read(n * per_image)
                if len(buf) != n * per_image:
                    raise EdgexferError(f"calibration set {self.npz_path} is truncated", "rebuild it with edgexfer calibration build")
                yield np.frombuffer(buf, dtype=dtype).reshape((n, *shape[1:])), labels[start : start + n]

    def check_compatible(self, image_size: Sequence[int], classes: Sequence[str]) -> None:
        """Refuse a set made for another input size or class list, or too small to cover the classes."""
        if tuple(int(v) for v in image_size) != self.image_size:
            raise EdgexferError(
                f"calibration set {self.npz_path} holds {self.image_size[0]}x{self.image_size[1]} images, "
                f"the model takes {int(image_size[0])}x{int(image_size[1])}",
                "build a set for this run with: edgexfer calibration build RUN_DIR",
            )
        if list(classes) != self.classes:
            raise EdgexferError(
                f"calibration set {self.npz_path} was drawn for classes {self.classes}, the model has {list(classes)}",
                "build a set for this run with: edgexfer calibration build RUN_DIR",
            )
        if self.size < len(classes):
            raise EdgexferError(
                f"calibration set {self.npz_path} has {self.size} images, fewer than the {len(classes)} classes",
                "build a larger set (--calibration-size)",
            )

    def describe(self) -> dict[str, Any]:
        return {**self.manifest, "npz": str(self.npz_path), "json": str(self.json_path),
                "size_bytes": self.npz_path.stat().st_size}


def load_calibration_set(path: str | os.PathLike[str], *, verify_hash: bool = True) -> CalibrationSet:
    """Open a set from its ``.npz`` or ``.json``; checks the record, the file hash and the array shapes."""
    p = Path(path)
    npz_path, json_path = (p.with_suffix(".npz"), p) if p.suffix == ".json" else (p, p.with_suffix(".json"))
    if not npz_path.is_file():
        raise EdgexferError(f"calibration set {npz_path} does not exist", "build one with: edgexfer calibration build RUN_DIR")
    if not json_path.is_file():
        raise EdgexferError(f"calibration set {npz_path} has no record {json_path.name} beside it", "copy the .json with the .npz, or rebuild the set")
    record = read_calibration_record(json_path)
    if verify_hash and sha256_file(npz_path) != record.sha256:
        raise EdgexferError(f"calibration set {npz_path} does not match the sha256 in {json_path.name} (changed or corrupt)", "rebuild the set")
    cal = CalibrationSet(npz_path, json_path, record)
    try:
        with zipfile.ZipFile(npz_path) as zf:
            with zf.open("images.npy") as member:
                shape, dtype = _read_npy_header(member, npz_path)
            n_labels = len(cal.labels())
    except (zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise EdgexferError(f"calibration set {npz_path} is unreadable ({exc})", "rebuild the set") from None
    h, w = cal.image_size
    if dtype != np.uint8 or shape != (cal.size, h, w, 3) or n_labels != cal.size:
        raise EdgexferError(
            f"calibration set {npz_path} holds {shape} {dtype} images, its record says ({cal.size}, {h}, {w}, 3) uint8",
            "rebuild the set",
        )
    return cal


def find_or_build(
    location: str | os.PathLike[str],
    run_dir: str | os.PathLike[str],
    size: int,
    seed: int,
    *,
    data_root: str | os.PathLike[str] | None = None,
    progress: bool = False,
) -> tuple[CalibrationSet, bool]:
    """The set to calibrate the run ``run_dir`` with: ``location`` is a set file (used as is) or a folder where
    the set of this run's split (`calibration_id`: split fingerprint, image size, images, seed) is reused when
    present and built otherwise. Either way the set is checked against the run's image size and classes, and
    against its validation and test images (`check_disjoint`), before it is returned. Returns (set, built)."""

    run = load_run(run_dir)
    loc = Path(location)
    if loc.suffix in (".npz", ".json"):
        calset, built = load_calibration_set(loc), False
    else:
        record = Split.load(run.split_path, data_root, require_data=False)
        n_train = len(record.samples("train"))
        candidate = loc / f"{calibration_id(split_fingerprint(run), run.image_size, min(int(size), n_train), seed)}.npz"
        if candidate.is_file():
            calset, built = load_calibration_set(candidate), False
        else:
            path = build_calibration_set(run_dir, loc, size, seed, data_root=data_root, progress=progress)
            calset, built = load_calibration_set(path), True
    calset.check_compatible(run.image_size, run.classes)
    check_disjoint(calset, run, data_root=data_root)
    return calset, built


def check_disjoint(calset: CalibrationSet, run: RunRecord, *, data_root: str | os.PathLike[str] | None = None) -> None:
    """Refuse (exit 2) a set holding any image of the run's validation or test split.

    A set drawn from the train part of this very split (same fingerprint) is disjoint by construction.
    Any other set is compared by pixels: the run's validation and test images are decoded at the set's size
    and hashed like the set's images (`pixel_hash`), so a copy of a test image under another name or folder
    is found too. A foreign set that records no pixel hashes cannot be checked and is refused.
    """
    m = calset.record
    if m.split_sha256 == split_fingerprint(run) and m.split == "train":
        return
    hashes = m.pixel_sha1
    if not isinstance(hashes, list) or len(hashes) != calset.size:
        raise EdgexferError(
            f"calibration set {calset.npz_path} was drawn from another split than run {run.name}'s and records no "
            "image hashes, so it cannot be checked against the run's validation and test images",
            f"build a set for this run: edgexfer calibration build {run.path}")
    index = {h: i for i, h in enumerate(hashes)}
    split = run.load_split(data_root)
    refs = m.refs
    for part in ("val", "test"):
        if part not in split.splits:
            continue
        samples = split.samples(part)
        start = 0
        for images, _ in split.iter_batches(part, calset.image_size, 64):
            for offset, img in enumerate(images):
                hit = index.get(pixel_hash(img))
                if hit is not None:
                    which = refs[hit] if hit < len(refs) else f"image {hit}"
                    raise EdgexferError(
                        f"calibration set {calset.npz_path} holds {which}, which is in the {part} split of run "
                        f"{run.name} ({samples[start + offset].ref}): calibrating on it would leak the images "
                        "that judge the export",
                        f"build a set for this run: edgexfer calibration build {run.path}")
            start += len(images)


def _read_npy_header(member, where: Path) -> tuple[tuple[int, ...], np.dtype]:
    try:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
    except ValueError as exc:
        raise EdgexferError(f"calibration set {where} is not a valid .npy archive ({exc})", "rebuild the set") from None
    if fortran:
        raise EdgexferError(f"calibration set {where} stores images in Fortran order", "rebuild the set with edgexfer")
    return tuple(int(s) for s in shape), np.dtype(dtype)

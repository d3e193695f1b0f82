"""Where labelled images come from: class folders, pre-split folders, a CSV of path,label, a MedMNIST `.npz`.

`discover(path)` looks at what is on disk and returns a DataSource: the class names (sorted, in index
order), the samples (a reference and an integer label each) and, for pre-split layouts, the given
train/val/test lists. A DataSource can also be re-opened from its record in `split.json` without
scanning anything (`DataSource.from_record`), which is what bench does on another machine.

numpy and Pillow only: no TensorFlow here.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.data.images import IMAGE_SUFFIXES, ImageReadError, is_image_file, load_image, to_rgb_uint8
from edgexfer.data.names import check_class_names
from edgexfer.errors import EdgexferError

SPLIT_NAMES = ("train", "val", "test")
# folder names accepted for each split of a pre-split layout
_SPLIT_ALIASES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation"),
    "test": ("test", "testing"),
}
_CSV_PATH_COLUMNS = ("path", "file", "filename", "image", "image_path")
_CSV_LABEL_COLUMNS = ("label", "class", "target", "diagnosis")


@dataclass(frozen=True)
class Sample:
    """One labelled image: ``ref`` is a path relative to the data root, or ``"<split>:<index>"`` in a .npz."""

    ref: str
    label: int


@dataclass
class DataSource:
    """A labelled image collection. ``kind`` is one of ``folders``, ``presplit``, ``csv``, ``npz``.

    ``root`` is the folder that file refs are relative to (for ``npz``: the .npz file itself; for ``csv``:
    the CSV file, whose folder the refs are relative to).
    """

    kind: str
    root: Path
    classes: list[str]
    samples: list[Sample]
    presplit: dict[str, list[Sample]] | None = None
    _arrays: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ reading images

    @property
    def base_dir(self) -> Path:
        """The folder file refs are relative to."""
        return self.root.parent if self.kind == "csv" else self.root

    def path_of(self, ref: str) -> Path:
        """The file a ref points to (file-based kinds only)."""
        if self.kind == "npz":
            raise EdgexferError(f"sample {ref} lives inside {self.root}, not in its own file")
        p = Path(ref)
        return p if p.is_absolute() else self.base_dir / p

    def load(self, ref: str, size: tuple[int, int]) -> np.ndarray:
        """The image behind ``ref`` as RGB uint8 (size[0], size[1], 3), decoded by `images.load_image`."""
        if self.kind == "npz":
            return to_rgb_uint8(self._npz_image(ref), size)
        return load_image(self.path_of(ref), size)

    def _npz_image(self, ref: str) -> np.ndarray:
        split, _, index = ref.partition(":")
        key = f"{split}_images"
        if key not in self._arrays:
            with _open_npz(self.root) as npz:
                if key not in npz.files:
                    raise ImageReadError(f"{self.root}[{ref}]", f"the file has no array '{key}'")
                self._arrays[key] = npz[key]
        images = self._arrays[key]
        try:
            return images[int(index)]
        except (ValueError, IndexError):
            raise ImageReadError(f"{self.root}[{ref}]", f"no image {index} in '{key}' ({len(images)} images)") from None

    # ------------------------------------------------------------------ records

    def describe(self) -> dict[str, Any]:
        """A JSON-able record of this source, stored in split.json; `from_record` re-opens it."""
        counts = np.bincount([s.label for s in self.samples], minlength=len(self.classes))
        return {
            "kind": self.kind,
            "root": str(self.root),
            "classes": list(self.classes),
            "n": len(self.samples),
            "class_counts": {name: int(c) for name, c in zip(self.classes, counts, strict=True)},
            "presplit": sorted(self.presplit) if self.presplit is not None else None,
        }

    @classmethod
    def from_record(
        cls,
        record: dict[str, Any],
        samples: list[Sample] | None = None,
        data_root: str | os.PathLike[str] | None = None,
        *,
        require_data: bool = True,
    ) -> DataSource:
        """Re-open a source from `describe()`'s record, without scanning the disk.

        ``data_root`` overrides where the data lives now (for a run trained on another machine): the data
        folder for folder kinds, the CSV file or its folder for ``csv``, the .npz file or its folder for ``npz``.
        ``require_data=False`` skips the check that the data exists (to read classes and counts only).
        """
        try:
            kind = record["kind"]
            root = Path(record["root"])
            classes = list(record["classes"])
        except (KeyError, TypeError) as exc:
            raise EdgexferError(f"the data source record has no {exc}", "regenerate split.json with edgexfer finetune") from None
        check_class_names(classes, "the split record", "regenerate split.json with edgexfer finetune")
        if kind not in ("folders", "presplit", "csv", "npz"):
            raise EdgexferError(f"unknown data source kind '{kind}' in the split record", "regenerate split.json")
        if data_root is not None:
            new = Path(data_root)
            if kind in ("csv", "npz") and new.is_dir():
                new = new / root.name
            root = new
        if require_data and not root.exists():
            hint = "the data folder" if kind in ("folders", "presplit") else f"the {kind} file"
            raise EdgexferError(f"data {root} recorded in the split does not exist here", f"pass data_root= (--data) pointing to {hint}")
        return cls(kind=kind, root=root, classes=classes, samples=list(samples or []))

    def subset(self, samples: list[Sample]) -> DataSource:
        """The same source restricted to ``samples`` (pre-split lists restricted too)."""
        keep = set(samples)
        presplit = None
        if self.presplit is not None:
            presplit = {name: [s for s in items if s in keep] for name, items in self.presplit.items()}
        return DataSource(self.kind, self.root, list(self.classes), list(samples), presplit, self._arrays)


# ---------------------------------------------------------------------------------------------- discover


def discover(path: str | os.PathLike[str]) -> DataSource:
    """Look at ``path`` and return its DataSource.

    - a ``.npz`` file with ``train_images``/``train_labels`` (+ ``val_*``, ``test_*``), MedMNIST style;
    - a ``.csv`` file of ``path,label`` rows (header optional; paths relative to the CSV's folder);
    - a folder with ``train/`` (and ``val/`` and/or ``test/``) sub-folders, each holding class folders;
    - a folder of class folders (images anywhere below each class folder).
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise EdgexferError(f"data path {p} does not exist", "check --data (a folder of class folders, a .csv or a .npz)")
    if p.is_file():
        suffix = p.suffix.lower()
        if suffix == ".npz":
            return _discover_npz(p)
        if suffix in (".csv", ".tsv"):
            return _discover_csv(p)
        raise EdgexferError(f"data file {p} is not a .csv or .npz", "pass a folder of class folders, a .csv of path,label or a .npz")
    split_dirs = _split_dirs(p)
    if split_dirs:
        return _discover_presplit(p, split_dirs)
    classes, samples = _scan_class_folders(p)
    return DataSource("folders", p.resolve(), classes, samples)


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith((".", "_")))


def _images_below(folder: Path) -> list[Path]:
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in sorted(filenames) if is_image_file(f))
    return found


def _scan_class_folders(folder: Path, root: Path | None = None) -> tuple[list[str], list[Sample]]:
    """Classes and samples of a folder of class folders; refs are relative to ``root`` (default: ``folder``)."""
    root = root or folder
    class_dirs = _visible_dirs(folder)
    if not class_dirs:
        loose = [f for f in folder.iterdir() if is_image_file(f)]
        if loose:
            raise EdgexferError(
                f"{folder} holds {len(loose)} images but no class folders",
                "put the images in one sub-folder per class (e.g. normal/, pneumonia/)",
            )
        raise EdgexferError(
            f"{folder} holds no class folders and no images",
            f"point --data to a folder with one sub-folder of images per class ({', '.join(sorted(IMAGE_SUFFIXES))})",
        )
    classes = check_class_names([d.name for d in class_dirs], folder, "rename that class folder")
    samples: list[Sample] = []
    for label, class_dir in enumerate(class_dirs):
        files = _images_below(class_dir)
        if not files:
            raise EdgexferError(
                f"class folder {class_dir} holds no images",
                "add images to it or remove the folder",
            )
        samples.extend(Sample(f.relative_to(root).as_posix(), label) for f in files)
    _require_two_classes(classes, folder)
    return classes, samples


def _require_two_classes(classes: list[str], where: Path) -> None:
    if len(classes) < 2:
        found = f"only the class '{classes[0]}'" if classes else "no classes"
        raise EdgexferError(f"{where} has {found}", "a classifier needs at least two classes: add a folder per class")


def _split_dirs(folder: Path) -> dict[str, Path]:
    found: dict[str, Path] = {}
    children = {d.name.lower(): d for d in _visible_dirs(folder)}
    for split, aliases in _SPLIT_ALIASES.items():
        for alias in aliases:
            if alias in children:
                found[split] = children[alias]
                break
    # a pre-split layout needs train plus at least one held-out split; a lone "train" class is just a class
    if "train" in found and len(found) >= 2:
        return found
    return {}


def _discover_presplit(root: Path, split_dirs: dict[str, Path]) -> DataSource:
    per_split: dict[str, tuple[list[str], list[Sample]]] = {
        name: _scan_class_folders(d, root) for name, d in split_dirs.items()
    }
    train_classes = per_split["train"][0]
    for name, (classes, _) in per_split.items():
        extra = sorted(set(classes) - set(train_classes))
        if extra:
            raise EdgexferError(
                f"{split_dirs[name]} has classes not in {split_dirs['train']}: {', '.join(extra)}",
                "the train split must hold a folder for every class",
            )
    classes = train_classes
    index = {name: i for i, name in enumerate(classes)}
    presplit: dict[str, list[Sample]] = {}
    for name, (split_classes, samples) in per_split.items():
        # labels were numbered per split folder: renumber by the train split's class order
        presplit[name] = [Sample(s.ref, index[split_classes[s.label]]) for s in samples]
    all_samples = [s for name in SPLIT_NAMES if name in presplit for s in presplit[name]]
    return DataSource("presplit", root.resolve(), classes, all_samples, presplit)


def _discover_csv(path: Path) -> DataSource:
    delimiter = "\t" if path.suffix.lower() == ".tsv" else ","
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f, delimiter=delimiter) if row and any(cell.strip() for cell in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise EdgexferError(f"cannot read CSV {path}: {exc}", "save it as UTF-8 text with path,label rows") from exc
    if not rows:
        raise EdgexferError(f"CSV {path} is empty", "write one path,label row per image")
    path_col, label_col = 0, 1
    header = [cell.strip().lower() for cell in rows[0]]
    if any(h in _CSV_PATH_COLUMNS for h in header) and any(h in _CSV_LABEL_COLUMNS for h in header):
        path_col = next(i for i, h in enumerate(header) if h in _CSV_PATH_COLUMNS)
        label_col = next(i for i, h in enumerate(header) if h in _CSV_LABEL_COLUMNS)
        rows = rows[1:]
        first_line = 2
    else:
        first_line = 1
    base = path.parent
    pairs: list[tuple[str, str]] = []
    missing: list[str] = []
    for line, row in enumerate(rows, start=first_line):
        if len(row) <= max(path_col, label_col):
            raise EdgexferError(f"CSV {path} line {line} has {len(row)} column(s)", "write path,label on every row")
        ref, label = row[path_col].strip(), row[label_col].strip()
        if not ref or not label:
            raise EdgexferError(f"CSV {path} line {line} has an empty path or label", "fill in both columns")
        file = Path(ref) if Path(ref).is_absolute() else base / ref
        if not file.is_file():
            missing.append(ref)
        pairs.append((Path(ref).as_posix(), label))
    if missing:
        shown = ", ".join(missing[:3]) + (f" and {len(missing) - 3} more" if len(missing) > 3 else "")
        raise EdgexferError(
            f"CSV {path} names {len(missing)} file(s) that do not exist: {shown}",
            f"paths are read relative to {base}; fix or remove those rows",
        )
    if not pairs:
        raise EdgexferError(f"CSV {path} has a header but no rows", "write one path,label row per image")
    seen: dict[str, str] = {}
    for ref, label in pairs:
        if seen.setdefault(ref, label) != label:
            raise EdgexferError(f"CSV {path} lists {ref} twice with different labels", "keep one row per image")
    classes = _sorted_labels({label for _, label in pairs})
    check_class_names(classes, f"CSV {path}", "rename that label in every row")
    _require_two_classes(classes, path)
    index = {name: i for i, name in enumerate(classes)}
    samples = sorted({Sample(ref, index[label]) for ref, label in pairs}, key=lambda s: s.ref)
    return DataSource("csv", path.resolve(), classes, samples)


def _sorted_labels(labels: set[str]) -> list[str]:
    # numeric labels sort as numbers ("2" before "10"), names alphabetically
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


class _open_npz:
    """np.load as a context manager with a clear error; reading an array inside the block is checked too
    (an object array, which would need pickle, or a damaged member: one line, not a traceback)."""

    def __init__(self, path: Path):
        self.path = path

    def __enter__(self):
        try:
            self.npz = np.load(self.path, allow_pickle=False)
        except (OSError, ValueError, EOFError) as exc:
            raise EdgexferError(f"cannot read {self.path} as a .npz file ({exc})", "check the file") from exc
        return self.npz

    def __exit__(self, exc_type, exc, traceback):
        self.npz.close()
        if exc_type is not None and issubclass(exc_type, (ValueError, OSError, EOFError)) \
                and not issubclass(exc_type, EdgexferError):
            # np.load(allow_pickle=False) refuses object arrays: never unpickle data from a file we were handed
            why = ("it holds object arrays (saved from Python objects, readable only by unpickling)"
                   if "allow_pickle" in str(exc) else str(exc))
            raise EdgexferError(f"cannot read {self.path}: {why}",
                                "save the images and labels as plain numeric arrays (np.savez with uint8/int arrays)"
                                ) from None
        return False


def _discover_npz(path: Path) -> DataSource:
    with _open_npz(path) as npz:
        files = set(npz.files)
        splits = [name for name in SPLIT_NAMES if f"{name}_images" in files]
        if "train" not in splits or len(splits) < 2:
            raise EdgexferError(
                f"{path} has arrays {sorted(files)}, not train_images plus val_images and/or test_images",
                "save it MedMNIST style: train_images, train_labels, val_images, val_labels, test_images, test_labels",
            )
        labels: dict[str, np.ndarray] = {}
        for name in splits:
            if f"{name}_labels" not in files:
                raise EdgexferError(f"{path} has {name}_images but no {name}_labels", "save the labels beside the images")
            images_shape = npz[f"{name}_images"].shape
            y = np.asarray(npz[f"{name}_labels"])
            if y.ndim == 2 and y.shape[1] == 1:
                y = y[:, 0]
            if y.ndim != 1:
                raise EdgexferError(
                    f"{path}: {name}_labels has shape {y.shape}; only single-label data is supported",
                    "store one integer class per image",
                )
            if len(y) != images_shape[0]:
                raise EdgexferError(
                    f"{path}: {name}_images holds {images_shape[0]} images but {name}_labels {len(y)} labels",
                    "store one label per image",
                )
            if len(images_shape) not in (3, 4):
                raise EdgexferError(f"{path}: {name}_images has shape {images_shape}", "store images as (N, H, W) or (N, H, W, C)")
            if not np.issubdtype(y.dtype, np.integer) or (y.size and y.min() < 0):
                raise EdgexferError(f"{path}: {name}_labels are not non-negative integers", "store class indices 0..K-1")
            labels[name] = y.astype(np.int64)
        n_classes = int(max(int(y.max()) for y in labels.values() if y.size) + 1)
        if "label_names" in files:
            names = npz["label_names"]
            if names.ndim != 1 or names.dtype.kind not in "Uiu":
                raise EdgexferError(f"{path}: label_names has shape {names.shape} and type {names.dtype}",
                                    "store the class names as a 1-D array of str (numpy dtype U)")
            classes = check_class_names([str(c) for c in names.tolist()], f"{path} label_names",
                                        "rename that class in label_names")
            if len(classes) < n_classes:
                raise EdgexferError(f"{path}: label_names has {len(classes)} names for {n_classes} classes", "name every class")
        else:
            classes = [str(i) for i in range(n_classes)]
    _require_two_classes(classes, path)
    presplit = {name: [Sample(f"{name}:{i}", int(label)) for i, label in enumerate(y)] for name, y in labels.items()}
    train_present = set(np.unique(labels["train"]).tolist())
    missing = [classes[i] for i in range(len(classes)) if i not in train_present]
    if missing:
        raise EdgexferError(f"{path}: the train split has no images of class(es) {', '.join(missing)}", "add training images for every class")
    all_samples = [s for name in SPLIT_NAMES if name in presplit for s in presplit[name]]
    return DataSource("npz", path.resolve(), classes, all_samples, presplit)

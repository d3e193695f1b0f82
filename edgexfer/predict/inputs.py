"""The images a user names on a command line: files, folders (recursive) and CSV/TSV lists of paths."""

from __future__ import annotations

import csv
import io
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from edgexfer.data.images import IMAGE_SUFFIXES, is_image_file
from edgexfer.errors import EdgexferError
from edgexfer.predict.records import SkippedImage


@dataclass
class InputFiles:
    """Image files named on a command line: files, folders (recursive) and CSV lists of paths."""

    paths: list[Path] = field(default_factory=list)
    skipped: list[SkippedImage] = field(default_factory=list)  # listed files that do not exist


def collect_inputs(inputs: Sequence[str | os.PathLike[str]]) -> InputFiles:
    """Expand INPUT arguments: an image file; a folder (every image file below it, sorted); a ``.csv``/``.tsv``
    list of paths (the ``path`` column, else the first; relative to the list). A named file or folder that
    does not exist, or an input with no image at all, is an error; a listed file that is missing is skipped."""

    if not inputs:
        raise EdgexferError("no input images given", "pass image files, folders or a CSV of paths")
    found = InputFiles()
    for raw in inputs:
        p = Path(raw)
        if not p.exists():
            raise EdgexferError(f"input {p} does not exist", "pass existing image files, folders or a CSV of paths")
        if p.is_dir():
            files = sorted(f for f in p.rglob("*") if f.is_file() and is_image_file(f)
                           and not any(part.startswith(".") for part in f.relative_to(p).parts))
            if not files:
                raise EdgexferError(f"folder {p} holds no image files (png, jpg, bmp, tif, dcm)",
                                    "pass a folder with images in it")
            found.paths += files
        elif p.suffix.lower() in (".csv", ".tsv"):
            listed = _read_path_list(p)
            for f in listed:
                if f.is_file():
                    found.paths.append(f)
                else:
                    found.skipped.append(SkippedImage(str(f), f"listed in {p.name} but no such file"))
        else:
            found.paths.append(p)  # any other file is tried as an image (unreadable ones are skipped)
    return found


def _read_path_list(path: Path) -> list[Path]:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgexferError(f"cannot read the list {path}: {exc}", "pass a UTF-8 CSV with one path per row") from exc
    rows = [r for r in csv.reader(io.StringIO(text), delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
            if r and any(c.strip() for c in r)]
    if not rows:
        raise EdgexferError(f"the list {path} is empty", "put one image path per row")
    column = 0
    header = [c.strip().lower() for c in rows[0]]
    if "path" in header:
        column, rows = header.index("path"), rows[1:]
    elif not _looks_like_path(rows[0][0], path.parent):
        rows = rows[1:]  # a header without a "path" column: take the first column
    paths = [Path(r[column].strip()) for r in rows if len(r) > column and r[column].strip()]
    if not paths:
        raise EdgexferError(f"the list {path} names no files", "put one image path per row")
    return [p if p.is_absolute() else path.parent / p for p in paths]


def _looks_like_path(value: str, base: Path) -> bool:
    candidate = Path(value.strip())
    return candidate.suffix.lower() in IMAGE_SUFFIXES or (base / candidate).exists() or candidate.exists()

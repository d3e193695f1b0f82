"""What every contract module shares: reading a record with its schema checked, and refusing unknown keys."""

from __future__ import annotations

import dataclasses
import difflib
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from edgexfer.errors import EdgexferError
from edgexfer.io import read_json


def read_record(path: str | os.PathLike[str], schema: str, what: str, fix: str) -> dict[str, Any]:
    """The JSON object in ``path`` whose ``schema`` is ``schema``; one line naming the file and the fix when
    the file is missing, not JSON, not an object, of another format, or of an older/newer version of it."""
    p = Path(path)
    if not p.is_file():
        raise EdgexferError(f"{p} does not exist, so there is no {what} there", fix)
    record = read_json(p, what)
    found = record.get("schema") if isinstance(record, dict) else None
    if found != schema:
        kind = (f"schema {found!r}" if isinstance(found, str) else
                "no schema" if isinstance(record, dict) else f"a JSON {type(record).__name__}")
        family = schema.rsplit("/", 1)[0]
        why = ("another version of this format" if isinstance(found, str) and found.rsplit("/", 1)[0] == family
               else "not this format")
        raise EdgexferError(f"{p} is not an edgexfer {what}: it has {kind}, expected {schema!r} ({why})", fix)
    return record


def require_keys(record: Mapping[str, Any], keys: Iterable[str], path: str | os.PathLike[str], fix: str,
                 where: str = "") -> None:
    """Refuse a record that lacks any of ``keys`` (``where``: the sub-record's name, e.g. 'source_run')."""
    missing = [k for k in keys if k not in record]
    if missing:
        inside = f" {where}" if where else ""
        raise EdgexferError(f"{path}{inside} lacks {', '.join(repr(k) for k in missing)}", fix)


def field_names(cls: type) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def check_known_keys(config_class: type, options: Iterable[str], what: str, *, source: str | None = None,
                     ignore: Iterable[str] = ()) -> None:
    """Refuse, in one line (EdgexferError, exit 2), an option name that ``config_class`` has no field for.

    The one check every config takes (finetune ``--config`` files, ``export_run(dict)``, bench and study
    options): the closest known names are suggested. ``source`` names where the options came from (a file).
    """
    known = field_names(config_class)
    skip = set(ignore)
    unknown = [name for name in options if name not in known and name not in skip]
    if not unknown:
        return
    name = unknown[0]
    close = difflib.get_close_matches(name, known, n=2)
    hint = f" (did you mean {' or '.join(close)}?)" if close else ""
    more = f" and {len(unknown) - 1} more" if len(unknown) > 1 else ""
    origin = f" in {source}" if source else ""
    raise EdgexferError(f"unknown {what} option '{name}'{more}{origin}{hint}",
                        f"use options of {config_class.__name__}: {', '.join(known)}")

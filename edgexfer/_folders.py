"""Swap a finished folder into place by renames: readers see the old folder or the new one, never half."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path


def swap_in(staging: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Rename ``staging`` onto ``final`` (same file system); an existing ``final`` is moved aside first and
    removed after, or put back if the rename fails."""
    staging, final = Path(staging), Path(final)
    old = None
    if final.exists():
        old = final.parent / f".{final.name}.old-{os.getpid()}"
        os.replace(final, old)
    try:
        os.replace(staging, final)
    except OSError:
        if old is not None:
            os.replace(old, final)
        raise
    if old is not None:
        with contextlib.suppress(OSError):
            shutil.rmtree(old)
    return final

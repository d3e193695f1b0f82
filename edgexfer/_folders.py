"""Output folders: built aside, swapped into place safely, never overlapping an input, never written through a link.

Every command that writes a folder whole (export, bench, package, explain's Grad-CAM overlays) builds it in a
staging folder beside the final one (``.<name>.staging-<pid>-*``) and calls `swap_in` while it holds the final
folder's lock (`edgexfer.io.lock_folder`). The swap is two renames, and a kill may land between them; it is
safe at every point because `sweep_stale`, which the next command runs under the same lock, knows the layout:

1. ``final`` is renamed to ``.<name>.old-<pid>-*/<name>`` (a fresh folder of its own, so that no name can clash);
2. ``staging`` is renamed to ``final``;
3. the ``.old-*`` folder is removed.

Killed before 1: ``final`` is the old folder, the staging folder is litter. Between 1 and 2: ``final`` is missing
and its old copy is whole inside ``.old-*``: `sweep_stale` renames it back. After 2: ``final`` is the new folder
and the ``.old-*`` folder is litter. So readers see the old folder or the new one, and a kill never costs both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

from edgexfer.errors import EdgexferError
from edgexfer.io import make_temp_dir


def resolved(path: str | os.PathLike[str]) -> Path:
    """``path`` absolute, with ``~`` expanded and every symlink resolved (the folder it really is)."""
    return Path(path).expanduser().resolve()


def staging_dir(final: Path) -> Path:
    """A new empty folder beside ``final`` to build it in (``.<name>.staging-<pid>-*``)."""
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        return make_temp_dir(f".{final.name}.staging-{os.getpid()}-", final.parent)
    except OSError as exc:
        raise EdgexferError(f"cannot create a folder beside {final}: {exc.strerror or exc}",
                            "choose a writable output folder") from None


def swap_in(staging: str | os.PathLike[str], final: str | os.PathLike[str]) -> Path:
    """Rename ``staging`` onto ``final`` (same file system), safely at every point (see the module docstring).

    An existing ``final`` is moved aside first and removed after, or put back if the second rename fails.
    Call it holding ``final``'s lock. A symlink at ``final`` is refused: it would be replaced, not written.
    """
    staging, final = Path(staging), Path(final)
    if final.is_symlink():
        raise EdgexferError(f"{final} is a symbolic link", "pass the folder it points to instead")
    aside: Path | None = None
    try:
        if final.exists():
            aside = make_temp_dir(f".{final.name}.old-{os.getpid()}-", final.parent)
            os.rename(final, aside / final.name)
        os.rename(staging, final)
    except OSError as exc:
        if aside is not None and (aside / final.name).exists() and not final.exists():
            os.rename(aside / final.name, final)
        raise EdgexferError(f"cannot write {final}: {exc.strerror or exc}",
                            "check free disk space and permissions") from None
    finally:
        if aside is not None and final.exists():
            shutil.rmtree(aside, ignore_errors=True)
    return final


def sweep_stale(final: str | os.PathLike[str]) -> list[Path]:
    """Undo what a killed `swap_in` or build left beside ``final``: when ``final`` is missing and an old copy
    of it is whole in ``.<name>.old-*``, rename it back; then remove the ``.<name>.staging-*`` and
    ``.<name>.old-*`` folders. Call only while holding ``final``'s lock, so that they can only be the
    leftovers of a process that was killed. Returns the folders removed."""
    final = Path(final)
    removed: list[Path] = []
    if not final.parent.is_dir():
        return removed
    olds = sorted((p for p in final.parent.glob(f".{final.name}.old-*") if p.is_dir() and not p.is_symlink()),
                  key=lambda p: p.stat().st_mtime, reverse=True)
    if not final.exists() and not final.is_symlink():
        for old in olds:
            copy = old / final.name
            if copy.is_dir() and not copy.is_symlink():
                os.rename(copy, final)  # the folder a kill between the two renames left aside
                break
    for path in [*sorted(final.parent.glob(f".{final.name}.staging-*")), *olds]:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def refuse_overlap(out: str | os.PathLike[str], inputs: Mapping[str, str | os.PathLike[str] | None],
                   option: str = "--out") -> None:
    """Refuse an output that is an input, lies inside one, or holds one (resolved paths: a symlink or a
    ``..`` is seen through). A bench written into its export is deleted by the next export; a run folder
    inside its data folder becomes training data; a prediction list written over its input is lost."""
    target = resolved(out)
    for what, given in inputs.items():
        if given is None:
            continue
        source = resolved(given)
        if target == source:
            raise EdgexferError(f"{option} {out} is the {what} {given}", f"write {option} somewhere else")
        if target.is_relative_to(source):
            raise EdgexferError(f"{option} {out} lies inside the {what} {given}",
                                f"write {option} outside that folder")
        if source.is_relative_to(target):
            raise EdgexferError(f"{option} {out} holds the {what} {given}, which writing it could replace",
                                f"write {option} to a folder that does not hold the {what}")


def refuse_links_inside(folder: str | os.PathLike[str]) -> None:
    """Refuse an existing output folder that holds a symbolic link: writing through it would change files
    outside the folder (a ``plots`` link to elsewhere would have those files replaced)."""
    root = Path(folder)
    if not root.is_dir() or root.is_symlink():
        return
    for parent, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            path = Path(parent) / name
            if path.is_symlink():
                raise EdgexferError(f"{path} inside the output folder {root} is a symbolic link",
                                    "remove the link (edgexfer never writes through one) or choose another output")


# ---------------------------------------------------------------------------------------------- temp files
# Libraries called during an export (ONNX Runtime's quantize_static, our INT8 rounds) make temporary files
# with `tempfile` and no ``dir=``; they must land in the staging folder, removed with it whatever happens.
# Setting ``tempfile.tempdir`` (or TMPDIR) would send every other thread of the process there too, into a
# folder that is about to be deleted. Instead `tempfile.gettempdir`, which every `tempfile` function asks
# when no ``dir`` is given (CPython Lib/tempfile.py, ``_sanitize_params``), answers per thread while an
# export runs: the staging folder for the thread that asked for it, the usual answer for every other one.

_thread_dirs = threading.local()
_patch_lock = threading.Lock()
_patch_users = 0
_stock_gettempdir = tempfile.gettempdir


def _gettempdir() -> str:
    folder = getattr(_thread_dirs, "folder", None)
    return folder if folder is not None else _stock_gettempdir()


@contextlib.contextmanager
def thread_temp_dir(folder: str | os.PathLike[str]) -> Iterator[str]:
    """Within the block, this thread's `tempfile` files and folders go into ``folder`` (made if needed); other
    threads' are unaffected, and nothing process-wide (``tempfile.tempdir``, TMPDIR) changes. Yields the path,
    for a child process's TMPDIR."""
    global _patch_users
    path = os.fspath(folder)
    os.makedirs(path, exist_ok=True)
    previous = getattr(_thread_dirs, "folder", None)
    with _patch_lock:
        if _patch_users == 0:
            tempfile.gettempdir = _gettempdir
        _patch_users += 1
    _thread_dirs.folder = path
    try:
        yield path
    finally:
        _thread_dirs.folder = previous
        with _patch_lock:
            _patch_users -= 1
            if _patch_users == 0:
                tempfile.gettempdir = _stock_gettempdir


__all__ = ["refuse_links_inside", "refuse_overlap", "resolved", "staging_dir", "swap_in", "sweep_stale",
           "thread_temp_dir"]

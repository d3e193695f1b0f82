"""Atomic writes and hashing: an artifact is complete under its final name or absent."""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import math
import os
import re
import stat
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgexfer.errors import EdgexferError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary file sits in the same directory so the rename is atomic on one file system.
    """
    final = Path(path)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgexferError(f"cannot create folder {final.parent}: {exc.strerror}", "choose a writable --out") from exc
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    except OSError as exc:
        raise EdgexferError(f"cannot write {final}: {exc.strerror or exc}", "choose a writable --out") from None
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        if tmp.is_file():
            os.chmod(tmp, file_mode())  # mkstemp makes 0600; give the mode a plain open() would
        os.replace(tmp, final)
    except OSError as exc:
        raise EdgexferError(f"cannot write {final}: {exc.strerror or exc}", "check free disk space and permissions") from exc
    finally:
        if tmp.exists():
            tmp.unlink()


def check_writable(path: str | os.PathLike[str]) -> None:
    """Refuse now, before any work, a file ``path`` that could not be written at the end: its nearest existing
    folder must take a new file (a probe file is created and removed: permissions, a read-only file system and
    a file where a folder belongs all show)."""
    final = Path(path)
    folder = final.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise EdgexferError(f"cannot write {final}: {folder} is not a folder", "choose a writable --out")
    try:
        fd, probe = tempfile.mkstemp(prefix=".edgexfer-probe-", dir=folder)
    except OSError as exc:
        raise EdgexferError(f"cannot write {final}: {exc.strerror or exc} in {folder}", "choose a writable --out") from None
    os.close(fd)
    os.unlink(probe)


def _umask() -> int:
    """The process umask, read without changing it: os.umask can only read it by setting it, and for that
    instant every other thread would create files with the wrong mode. Linux 4.7+ shows it in
    /proc/self/status (proc(5), "Umask"); elsewhere the set-and-restore is the only way."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def file_mode() -> int:
    """The mode a plain ``open()`` gives a new file under the current umask (0644 under 022)."""
    return 0o666 & ~_umask()


def dir_mode() -> int:
    """The mode a plain ``mkdir()`` gives a new folder under the current umask (0755 under 022)."""
    return 0o777 & ~_umask()


def make_temp_dir(prefix: str, parent: str | os.PathLike[str] | None = None) -> Path:
    """``tempfile.mkdtemp`` (which makes 0700) with the folder mode the umask gives a plain ``mkdir``."""
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    os.chmod(path, dir_mode())
    return path


def fix_modes(root: str | os.PathLike[str]) -> None:
    """Give every file and folder under ``root`` (and ``root``) the umask's normal modes.

    For trees assembled from temporary files and folders (export staging, run folders) before they are
    swapped into place, so that a colleague, a web server or a device user can read them.
    """
    fmode, dmode = file_mode(), dir_mode()
    root = Path(root)
    if root.is_file():
        os.chmod(root, fmode)
        return
    os.chmod(root, dmode)
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(folder, name), dmode)
        for name in files:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, fmode)


class FolderLock:
    """An exclusive OS lock on a folder that one command writes, held for the command's lifetime.

    The lock is ``fcntl.flock`` on ``<parent>/.<name>.lock`` (beside the folder, so that a folder swapped
    in by rename keeps its lock). The kernel drops it when the process dies, kill -9 included, so a
    killed run never blocks the next one. A second process asking for it fails at once with one line
    naming the folder and the process that holds it. The folder is resolved first (symlinks, ``..``), so two
    names of one folder share one lock; the lock file is opened with ``O_NOFOLLOW`` and must be a regular file.

    The ``filelock`` library was considered: its Unix lock is the same ``flock`` call, but it leaves the lock
    file in place after release (litter beside every output) and records no holder for the one-line error.
    """

    def __init__(self, folder: str | os.PathLike[str], command: str = "edgexfer"):
        # the folder it really is: `--out real` and `--out alias` (a symlink to it) take the same lock
        self.folder = Path(folder).expanduser().resolve()
        self.command = command
        self.lock_path = self.folder.parent / f".{self.folder.name}.lock"
        self._fd: int | None = None

    def acquire(self) -> FolderLock:
        try:
            self.folder.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise EdgexferError(f"cannot create folder {self.folder.parent}: {exc.strerror}",
                                "choose a writable output folder") from exc
        while True:
            try:
                # O_NOFOLLOW: a symlink planted at the lock's name is refused, never followed (we truncate the file);
                # O_NONBLOCK: a FIFO planted there cannot hang the open; then only a regular file is accepted
                fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC,
                             file_mode())
            except OSError as exc:
                if exc.errno == errno.ELOOP:
                    raise EdgexferError(f"the lock file {self.lock_path} is a symbolic link",
                                        "remove it (edgexfer creates its lock files itself)") from None
                raise EdgexferError(f"cannot create the lock file {self.lock_path}: {exc.strerror}",
                                    "choose a writable output folder") from exc
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                os.close(fd)
                raise EdgexferError(f"the lock file {self.lock_path} is not a regular file",
                                    "remove it (edgexfer creates its lock files itself)")
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                holder = _read_holder(fd)
                os.close(fd)
                if exc.errno not in (errno.EWOULDBLOCK, errno.EACCES, errno.EAGAIN):
                    raise EdgexferError(f"cannot lock {self.folder}: {exc.strerror}",
                                        "use a folder on a local file system") from exc
                raise FolderBusy(self.folder, holder) from None
            # the holder before us may have unlinked the file after we opened it: lock the file on disk
            try:
                same = os.path.samestat(os.fstat(fd), os.lstat(self.lock_path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"pid={os.getpid()} command={self.command} since={time.strftime('%Y-%m-%dT%H:%M:%S')}\n".encode())
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            self.lock_path.unlink()  # unlink while still locked: a waiter re-checks the inode
        os.close(self._fd)
        self._fd = None

    def __enter__(self) -> FolderLock:
        # `with lock_folder(...)` holds the lock already: entering must not take it a second time
        return self if self._fd is not None else self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


class FolderBusy(EdgexferError):
    """Another process holds the folder's lock (exit 2)."""

    def __init__(self, folder: Path, holder: str):
        who = f" by {holder}" if holder else " by another process"
        super().__init__(f"{folder} is in use{who}",
                         "wait for that command to finish, stop it, or choose another output folder")


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 512).decode(errors="replace").strip()
    except OSError:
        return ""
    # the command holds spaces ("edgexfer bench"): split on " key=" only
    fields = dict(part.split("=", 1) for part in re.split(r" (?=\w+=)", text) if "=" in part)
    if "pid" not in fields:
        return ""
    return f"process {fields['pid']} ({fields.get('command', 'edgexfer')}, since {fields.get('since', '?')})"


def lock_folder(folder: str | os.PathLike[str], command: str | None = None) -> FolderLock:
    """Take the folder's lock now (raises `FolderBusy` at once if held); release with ``.release()`` or ``with``."""
    return FolderLock(folder, command or " ".join(["edgexfer", *sys.argv[1:2]])).acquire()


def write_json(path: str | os.PathLike[str], data: Any) -> Path:
    """Write ``data`` as indented, strict JSON, atomically.

    A value that is not a finite number (NaN, ±inf: an undefined metric such as the AUC of a one-class
    split) is written as ``null``: JSON has no NaN, and strict parsers reject Python's ``NaN`` token.
    """
    text = json.dumps(strict_json(data), indent=2, sort_keys=False, allow_nan=False)
    with atomic_path(path) as tmp:
        tmp.write_text(text + "\n")
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def read_json(path: str | os.PathLike[str], what: str = "file") -> Any:
    """Read JSON or raise one clear line naming the file and the problem."""
    p = Path(path)
    if not p.is_file():
        raise EdgexferError(f"{what} {p} does not exist", "check the path")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise EdgexferError(f"{what} {p} is not valid JSON ({exc})", "restore or regenerate it") from exc


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def strict_json(obj: Any) -> Any:
    """``obj`` as plain JSON types: numpy scalars/arrays and paths converted, non-finite floats as None."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k) if not isinstance(k, str) else k: strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    return strict_json(_json_default(obj))


def _json_default(obj: Any) -> Any:
    # numpy scalars and arrays, paths: the common non-JSON types in our results
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")

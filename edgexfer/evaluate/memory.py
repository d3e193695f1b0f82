"""What one artifact costs in memory: the peak resident memory its session adds to the process.

Bench runs every artifact in one process, one after another, so the process's own peak (``ru_maxrss``) only
grows and says nothing about any one artifact. :class:`SessionMemory` takes the process's resident set size
just before a session is opened and samples it (psutil) on a background thread until the session is closed;
the peak sample minus that baseline is what the session, its model, buffers and activations at the largest
batch cost. glibc keeps freed memory in its arenas, which a later session could reuse and so look cheaper:
on glibc, freed memory is handed back (``malloc_trim``) before the baseline is taken.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import threading

import psutil  # type: ignore[import-untyped]

#: seconds between two samples: sessions keep their memory for seconds, a sample costs microseconds
INTERVAL_S = 0.01
_MB = 1024 * 1024


def _trim() -> None:
    """Hand freed heap memory back to the system where the C library can (glibc's malloc_trim)."""
    if not sys.platform.startswith("linux"):
        return
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
        if libc is not None and hasattr(libc, "malloc_trim"):
            libc.malloc_trim(0)
    except OSError:
        pass  # not glibc (musl): the baseline may then be a little high, never wrong by a whole session


class SessionMemory:
    """``with SessionMemory() as memory: ...``; then ``memory.peak_mb`` is the peak resident memory (MB) the
    block added over the process's memory when it began (0 when it added none)."""

    def __init__(self, interval_s: float = INTERVAL_S) -> None:
        self._process = psutil.Process()
        self._interval = interval_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.baseline = 0
        self.peak = 0

    def _sample(self) -> None:
        self.peak = max(self.peak, self._process.memory_info().rss)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def __enter__(self) -> SessionMemory:
        _trim()
        self.baseline = self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, name="edgexfer-session-memory", daemon=True)
        self._thread.start()
        return self

    def sample(self) -> None:
        """One sample now (call it where the block holds the most, e.g. before freeing a large result)."""
        self._sample()

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self._sample()

    @property
    def peak_mb(self) -> float:
        return max(self.peak - self.baseline, 0) / _MB

"""Find unreadable images before training, so a corrupt file is listed in the run, never a crash mid-epoch."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from edgexfer.data.images import ImageReadError
from edgexfer.data.sources import DataSource, Sample
from edgexfer.errors import EdgexferError
from edgexfer.io import write_text

# decoding is the cost and the check; the tiny output size keeps the resize free
_PROBE_SIZE = (8, 8)


@dataclass
class ScanResult:
    """``source`` holds only readable samples; ``skipped`` lists (ref, reason) for the others."""

    source: DataSource
    skipped: list[tuple[str, str]]

    @property
    def kept(self) -> list[Sample]:
        return list(self.source.samples)

    def write_skipped(self, path: str | os.PathLike[str]) -> Path | None:
        """Write ``ref<TAB>reason`` lines (the run's skipped.txt); nothing is written when none was skipped."""
        if not self.skipped:
            return None
        lines = "".join(f"{ref}\t{reason}\n" for ref, reason in self.skipped)
        return write_text(path, lines)


def scan_source(
    source: DataSource, *, workers: int | None = None, progress: Callable[[int, int], None] | None = None
) -> ScanResult:
    """Decode every image of ``source`` once; return the readable ones and (ref, reason) for the rest.

    Raises when a class is left without a readable image. ``.npz`` arrays are checked when discovered,
    so they are not decoded again here. ``progress(done, total)`` is called as images are checked.
    """
    if source.kind == "npz":
        return ScanResult(source, [])

    def probe(sample: Sample) -> str | None:
        try:
            source.load(sample.ref, _PROBE_SIZE)
        except ImageReadError as exc:
            return exc.reason
        except EdgexferError:  # e.g. pydicom missing: every DICOM would fail the same way, so stop
            raise
        except Exception as exc:  # a decoder bug on one odd file must not stop the run
            return f"{type(exc).__name__}: {exc}"
        return None

    samples = source.samples
    reasons: list[str | None] = []
    with ThreadPoolExecutor(max_workers=workers or min(8, os.cpu_count() or 1)) as pool:
        for i, reason in enumerate(pool.map(probe, samples), start=1):
            reasons.append(reason)
            if progress is not None:
                progress(i, len(samples))
    kept = [s for s, r in zip(samples, reasons, strict=True) if r is None]
    skipped = [(s.ref, r) for s, r in zip(samples, reasons, strict=True) if r is not None]
    present = {s.label for s in kept}
    for label, name in enumerate(source.classes):
        if label not in present:
            total = sum(1 for s in samples if s.label == label)
            raise EdgexferError(
                f"none of the {total} image(s) of class '{name}' in {source.root} can be read",
                "replace or convert those files",
            )
    return ScanResult(source.subset(kept), skipped)

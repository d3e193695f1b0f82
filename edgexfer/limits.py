"""Upper bounds of numeric options, from the machine and the model rather than guesses.

- Threads: no more than the cores this process may run on (``os.sched_getaffinity``): ONNX Runtime's
  intra-op pool does not get faster past that, and 100000 threads exhaust the process's memory first.
- A batch: its input tensor alone (N x H x W x 3 float32, what every runtime and Keras is fed) must fit in
  the machine's physical memory (``sysconf``); a batch that cannot even be allocated ends in
  MemoryError, or swaps for hours, long after files were written.
- An image side: an image must be one Pillow can read back (``PIL.Image.MAX_IMAGE_PIXELS``; beyond it
  Pillow refuses the file as a decompression bomb), as every image is read through Pillow.

These are necessary bounds, not promises: a batch that passes may still be too large for a model's
activations, which the runtime then reports.
"""

from __future__ import annotations

import math
import os

from edgexfer.errors import EdgexferError

#: bytes per input value (float32): what runtimes and Keras are fed
INPUT_BYTES = 4


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return max(1, os.cpu_count() or 1)


def memory_bytes() -> int:
    """The machine's physical memory (POSIX sysconf; psutil where that is missing)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):
        import psutil  # type: ignore[import-untyped]

        return int(psutil.virtual_memory().total)


def check_threads(value: int | None, option: str = "--threads") -> int | None:
    """``value`` when it is None (the library's default) or 1..usable cores; else one line, exit 2."""
    if value is None:
        return None
    cores = usable_cores()
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= cores:
        raise EdgexferError(f"{option} {value} is outside 1..{cores}, the cores this process may use",
                            f"pass at most {cores} or leave {option} out")
    return value


def check_batch_fits(batch: int, height: int, width: int, option: str = "--batch-size") -> None:
    """Refuse a batch whose input tensor (N x H x W x 3 float32) alone exceeds the machine's memory."""
    need = int(batch) * int(height) * int(width) * 3 * INPUT_BYTES
    total = memory_bytes()
    if need > total:
        most = max(0, total // (int(height) * int(width) * 3 * INPUT_BYTES))
        raise EdgexferError(
            f"{option} {batch} at {height}x{width} px needs {need / 2**30:,.1f} GiB for its input alone; this "
            f"machine has {total / 2**30:,.1f} GiB", f"use a batch of at most {most}" if most else "use smaller images")


def max_image_side() -> int:
    """The largest square image side Pillow reads back without refusing it as a decompression bomb."""
    from PIL import Image

    limit = Image.MAX_IMAGE_PIXELS
    return math.isqrt(int(limit)) if limit else 2**16


def check_image_side(side: int, option: str) -> None:
    """Refuse an image side beyond what Pillow reads back (and hence beyond what any edgexfer stage can use)."""
    most = max_image_side()
    if side > most:
        raise EdgexferError(f"{option} {side} is larger than {most} px, the largest square image Pillow reads back "
                            "(PIL.Image.MAX_IMAGE_PIXELS)", f"pass at most {most}")


__all__ = ["check_batch_fits", "check_image_side", "check_threads", "max_image_side", "memory_bytes", "usable_cores"]

"""The number formatters and the figure helpers every report uses (bench report, study report, summaries).

One dash for a missing figure, one number of digits per kind of figure, one size threshold, and one way
to make and save a figure (matplotlib's object API with the Agg canvas: no pyplot state, no display).
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Literal

from edgexfer.io import atomic_path

#: what a table shows for a figure that is missing or undefined
DASH = "—"
#: decimals of a fraction (accuracy, F1, AUC, agreement…)
METRIC_DIGITS = 3


def finite(value: Any) -> bool:
    """A real, finite number (not None, NaN, ±inf, text or a bool)."""
    if isinstance(value, bool):
        return False
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def num(value: Any) -> float:
    """``value`` as a float, NaN when it is not a finite number (for plotting)."""
    return float(value) if finite(value) else float("nan")


def fmt(value: Any, digits: int = METRIC_DIGITS) -> str:
    """A figure for a table: fixed decimals, the dash when missing, yes/no for a flag, integers as they are."""
    if value is None:
        return DASH
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    if hasattr(value, "dtype") and getattr(value.dtype, "kind", "") in "iu":
        return str(int(value))
    if finite(value):
        return f"{float(value):.{digits}f}"
    return DASH if isinstance(value, float) else str(value)


def fmt_ms(value: Any) -> str:
    """Milliseconds: 3 decimals below 1 ms, 2 below 100 ms, none above."""
    if not finite(value):
        return DASH
    v = float(value)
    return f"{v:.3f}" if v < 1 else f"{v:.2f}" if v < 100 else f"{v:.0f}"


def fmt_size(size_bytes: Any) -> str:
    """A file size: MB (2 decimals) from 1 MB, kB (1 decimal) below."""
    if not finite(size_bytes):
        return DASH
    n = float(size_bytes)
    return f"{n / 1e6:.2f} MB" if n >= 1e6 else f"{n / 1e3:.1f} kB"


def fmt_duration(seconds: Any) -> str:
    if not finite(seconds):
        return DASH
    s = float(seconds)
    return f"{s:.0f} s" if s < 120 else f"{s / 60:.1f} min"


# ---------------------------------------------------------------------------------------------- figures


def figure(width: float = 6.0, height: float = 4.5, *, dpi: int = 100,
           layout: Literal["constrained", "compressed", "tight"] | None = None) -> Any:
    """A matplotlib Figure on the Agg canvas (no pyplot, no display, nothing global changed)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=dpi, layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Any, path: str | os.PathLike[str], *, tight: bool = True) -> Path:
    """Write ``fig`` as a PNG atomically (complete under its name, or absent); ``tight`` trims the margins
    (leave it off for figures laid out by matplotlib's constrained layout)."""
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", **({"bbox_inches": "tight"} if tight else {}))
    return Path(path)

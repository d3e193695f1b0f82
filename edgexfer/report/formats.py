"""The number formatters and the figure helpers every report uses (bench report, study report, summaries).

One dash for a missing figure, one number of digits per kind of figure, one size threshold, and one way
to make and save a figure (matplotlib's object API with the Agg canvas: no pyplot state, no display).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

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


# ---------------------------------------------------------------------------------------------- markdown
# Every string a user controls (class names, paths, run and export names, titles, reasons that quote them)
# goes into markdown through one of these, so that it reads back as the same text and never as markup: a
# label such as ``![x](/home/u/.ssh/id_rsa)`` must stay a label, not become an image. CommonMark lets any
# ASCII punctuation be backslash-escaped (spec 0.31.2, section 2.4 "Backslash escapes"); a code span
# holds any text when its backtick fence is longer than every backtick run inside it (section 6.1); in a
# GFM table ``\|`` is a pipe inside a cell, code spans included (GFM spec, section 4.10 "Tables").

_BREAKS = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
#: the characters that can start inline markup, an entity, a cell or a heading's closing sequence
_MARKUP = re.compile(r"([\\`*_\[\]<>#!|&~])")


def md(value: Any) -> str:
    """``value`` as literal markdown text: line breaks and control characters become spaces, every character
    that could start markup is backslash-escaped (safe mid-line in paragraphs, headings, list items and cells)."""
    return _MARKUP.sub(r"\\\1", _BREAKS.sub(" ", str(value)))


def md_code(value: Any, *, table: bool = False) -> str:
    """``value`` as a code span that shows it literally; ``table``: the span sits in a table cell."""
    text = _BREAKS.sub(" ", str(value))
    if not text:
        return DASH
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    if text[0] in "` " or text[-1] in "` ":  # one space each side is stripped again by the parser
        text = f" {text} "
    if table:
        text = text.replace("|", "\\|")
    return f"{fence}{text}{fence}"


def md_url(path: Any) -> str:
    """A relative file path as a link destination (percent-encoded: no space, parenthesis or bracket left)."""
    return quote(str(path), safe="/")


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

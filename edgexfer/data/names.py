"""Which class names edgexfer accepts: those that come back unchanged from every file it writes.

A class name travels from where it enters (a class folder, a CSV label, a .npz's ``label_names``, a
run's records) into ``labels.json``, ``split.json``, ``manifest.json``, the ONNX metadata, the
predictions CSV and JSON, Triton's ``labels.txt`` (one name a line, the line number is the class
index), markdown reports and plots. A name breaks one of them when it holds

- a control, format, surrogate, private-use or unassigned character (Unicode category ``C*``), or a
  line or paragraph separator (``Zl``/``Zp``): a newline splits one class into two lines of
  ``labels.txt`` and shifts every index after it; ``str.splitlines`` also splits at U+2028/U+2029,
  U+001C-U+001E and U+0085; a byte that is not UTF-8 in a folder name arrives as a lone surrogate
  that no UTF-8 file can hold; bidirectional overrides (U+202E) make a name display as another one.
  The zero-width (non-)joiners U+200C/U+200D are allowed: Persian and Indic names need them;
- white space at either end: CSV labels and ``labels.txt`` lines are read back stripped;
- a ``/`` or ``\\``, or is ``.`` / ``..``: it could not be the class folder it must be in a folder layout;
- more than 255 UTF-8 bytes: longer than a file name may be (NAME_MAX on Linux, macOS and Windows).

Unicode categories: https://www.unicode.org/reports/tr44/#General_Category_Values ; line boundaries
of ``str.splitlines``: https://docs.python.org/3/library/stdtypes.html#str.splitlines .
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence

from edgexfer.errors import EdgexferError

#: the longest class name, in UTF-8 bytes (NAME_MAX: a class folder must be able to carry it)
MAX_NAME_BYTES = 255
_ALLOWED_FORMAT = {"\u200c", "\u200d"}  # zero-width non-joiner / joiner: part of Persian and Indic spelling


def class_name_problem(name: object) -> str | None:
    """Why ``name`` cannot be a class name, or None when it can."""
    if not isinstance(name, str):
        return f"is a {type(name).__name__}, not text"
    if not name:
        return "is empty"
    for ch in name:
        category = unicodedata.category(ch)
        if (category.startswith("C") and ch not in _ALLOWED_FORMAT) or category in ("Zl", "Zp"):
            return f"holds U+{ord(ch):04X} ({unicodedata.name(ch, 'a control, surrogate or unassigned character')})"
    if name != name.strip():
        return "starts or ends with white space"
    if "/" in name or "\\" in name or name in (".", ".."):
        return "is not a valid folder name"
    if len(name.encode("utf-8")) > MAX_NAME_BYTES:
        return f"is longer than {MAX_NAME_BYTES} bytes"
    return None


def check_class_names(names: Sequence[object], where: object, fix: str) -> list[str]:
    """``names`` as a list of str, or an EdgexferError naming the first name that cannot round-trip."""
    for name in names:
        problem = class_name_problem(name)
        if problem is not None:
            raise EdgexferError(f"{where}: the class name {name!r} {problem}", fix)
    return [str(n) for n in names]

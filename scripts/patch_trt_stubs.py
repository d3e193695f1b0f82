"""Copy the unpacked tensorrt-stubs wheel and fix the syntax errors its .pyi files carry, for mypy.

tensorrt-stubs 10.13 does not parse as shipped: parameters named ``in``, a non-default parameter
after defaults in ``add_scale_nd``, and an ``import tensorrt_libs`` of a package that has no stubs.
The patched copy of its ``tensorrt/`` and ``tensorrt_bindings/`` goes on ``MYPYPATH`` (``make typecheck``).

    python scripts/patch_trt_stubs.py .stubs/site .stubs/patched
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

PACKAGES = ("tensorrt", "tensorrt_bindings")


def patch_stubs(site: Path, dest: Path) -> Path:
    """Write the patched stub packages from the unpacked wheel ``site`` into ``dest``; return ``dest``."""
    missing = [p for p in PACKAGES if not (site / p).is_dir()]
    if missing:
        raise SystemExit(f"patch_trt_stubs: error: tensorrt-stubs are not unpacked at {site} (no {', '.join(missing)}); "
                         "run `make setup`")
    dest.mkdir(parents=True, exist_ok=True)
    for package in PACKAGES:
        shutil.rmtree(dest / package, ignore_errors=True)
        shutil.copytree(site / package, dest / package)
    for pyi in dest.rglob("*.pyi"):
        text = pyi.read_text()
        text = re.sub(r"([(,]\s*)in(\s*:)", r"\1in_\2", text)  # a parameter named `in`
        text = re.sub(r"(def add_scale_nd\(.*?)channel_axis: int\)", r"\1channel_axis: int = ...)", text)
        text = re.sub(r"^import tensorrt_libs.*$", "", text, flags=re.M)  # not a stub package
        pyi.write_text(text)
    return dest


if __name__ == "__main__":
    if len(sys.argv) != 3:
        raise SystemExit("usage: python scripts/patch_trt_stubs.py UNPACKED_WHEEL_DIR OUT_DIR")
    patch_stubs(Path(sys.argv[1]), Path(sys.argv[2]))

"""Options whose values come from a registry: the choices are read from the registry itself, so a
new runtime or backbone appears in every command's help and validation at once.

Both registries are light tables (no TensorFlow, no onnxruntime import), safe at CLI import time.
"""

from __future__ import annotations

import click


def runtime_names() -> list[str]:
    from edgexfer.runtime import RUNTIMES

    return list(RUNTIMES)


def backbone_choice() -> click.Choice:
    """``click.Choice`` over the registered backbones (``edgexfer backbones`` lists them)."""
    from edgexfer.backbones.registry import backbone_names

    return click.Choice(backbone_names(), case_sensitive=False)


RUNTIMES_HELP = ("Runtimes to use, comma-separated, from: " + ", ".join(runtime_names())
                 + " (default: every one usable here; `edgexfer doctor` lists them).")


def runtimes_list(ctx: click.Context, param: click.Parameter, value: str | tuple[str, ...] | None) -> list[str] | None:
    """A comma-separated (or repeated) list of runtime names, each one from the runtime table."""
    if not value:
        return None
    parts = (value,) if isinstance(value, str) else value
    names = [n.strip() for v in parts for n in v.split(",") if n.strip()]
    known = runtime_names()
    unknown = [n for n in names if n not in known]
    if unknown:
        raise click.BadParameter(f"unknown runtime(s) {', '.join(map(repr, unknown))}; choose from: {', '.join(known)}")
    return names or None

"""Option parsers shared by several commands (click callbacks)."""

from __future__ import annotations

import click


def batch_sizes(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, ...] | None:
    """'1,8,32' → (1, 8, 32); None stays None (the library default)."""
    if value is None:
        return None
    try:
        sizes = tuple(int(v) for v in value.split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of integers, e.g. 1,8,32") from None
    if not sizes or min(sizes) < 1:
        raise click.BadParameter(f"{value!r}: batch sizes must be positive integers, e.g. 1,8,32")
    return sizes

"""A stage's config from a config object and keyword options: the API's functions and a study's per-stage
options are built here, with the one-line errors for an unknown, missing or mistyped option."""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

from edgexfer.contracts import check_known_keys
from edgexfer.errors import EdgexferError

C = TypeVar("C")


def make_config(config_class: type[C], config: C | None, options: dict[str, Any], stage: str) -> C:
    """``config`` with ``options`` replaced, or a new ``config_class(**options)``; one-line errors for an
    unknown option, a missing required one, or a config of the wrong class."""
    if config is not None and not isinstance(config, config_class):
        raise EdgexferError(f"{stage} takes a {config_class.__name__}, got {type(config).__name__}",
                            f"pass {config_class.__name__}(...) or its fields as keyword arguments")

    fields = {f.name: f for f in dataclasses.fields(config_class)}  # type: ignore[arg-type]
    check_known_keys(config_class, options, stage)
    if config is not None:
        return dataclasses.replace(config, **options) if options else config  # type: ignore[type-var]
    required = [n for n, f in fields.items() if f.init and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and n not in options]
    if required:
        raise EdgexferError(f"{stage} needs {', '.join(required)}",
                            f"pass them as keyword arguments or in a {config_class.__name__}")
    return config_class(**options)


__all__ = ["make_config"]

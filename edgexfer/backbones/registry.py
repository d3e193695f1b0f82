"""The backbone registry: a table of feature extractors, so tests and studies parametrize over it.

A backbone is registered by decorating the function that builds its Keras feature extractor
(``include_top=False``) with :func:`register_backbone`. The entry carries what the rest of
edgexfer needs to know without building anything: native and minimum input size, the preprocessing
the model puts in front of the extractor, where to unfreeze for fine-tuning, and the parameter count.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from edgexfer.errors import EdgexferError

# preprocessing modes, applied as constant layers inside the model (see heads.preprocessing_layers)
PREPROCESSING = {
    "caffe": "RGB to BGR, minus the ImageNet mean per channel (0–255 scale)",
    "tf": "scaled to [-1, 1] (x / 127.5 - 1)",
    "torch": "scaled to [0, 1], then standardized by the ImageNet mean and std per channel",
    "unit": "scaled to [0, 1] (x / 255)",
    "builtin": "the Keras model's own constant rescaling to [-1, 1] (include_preprocessing=True)",
}

BuildFn = Callable[[tuple[int, int, int], "str | None"], Any]


@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone.

    ``unfreeze_points`` are layer-name prefixes, the top of the network first. Fine-tuning stage k
    freezes every layer up to and including the LAST layer whose name starts with point k, and
    trains everything above it; so stage 1 trains the top block(s) and later stages reach deeper.
    """

    name: str
    display_name: str
    family: str
    native_size: int
    min_size: int
    preprocessing: str
    unfreeze_points: tuple[str, ...]
    parameters: int
    imagenet: bool
    builder: BuildFn = field(repr=False, compare=False)
    description: str = ""

    def check_image_size(self, image_size: int | tuple[int, int] | None) -> tuple[int, int]:
        """The (H, W) to build at: native size when None; one clear error below the minimum."""
        if image_size is None:
            return (self.native_size, self.native_size)
        h, w = (image_size, image_size) if isinstance(image_size, int) else tuple(int(v) for v in image_size)
        if min(h, w) < self.min_size:
            raise EdgexferError(
                f"image size {h}x{w} is below the minimum of {self.min_size} px for backbone {self.name}",
                f"use --image-size {self.min_size} or more (its native size is {self.native_size})",
            )
        return (h, w)


_REGISTRY: dict[str, BackboneSpec] = {}


def register_backbone(
    name: str,
    *,
    display_name: str | None = None,
    family: str,
    native_size: int,
    min_size: int,
    preprocessing: str,
    unfreeze_points: tuple[str, ...],
    parameters: int,
    imagenet: bool = True,
    description: str = "",
) -> Callable[[BuildFn], BuildFn]:
    """Decorator: register ``builder(input_shape, weights)`` -> Keras model as backbone ``name``.

    ``weights`` is None or "imagenet"; a weights file is loaded by edgexfer after building, so
    builders never see a path.
    """
    if preprocessing not in PREPROCESSING:
        raise ValueError(f"unknown preprocessing {preprocessing!r}; one of {sorted(PREPROCESSING)}")

    def decorate(builder: BuildFn) -> BuildFn:
        key = name.lower()
        if key in _REGISTRY:
            raise ValueError(f"backbone {key!r} is already registered")
        _REGISTRY[key] = BackboneSpec(
            name=key,
            display_name=display_name or name,
            family=family,
            native_size=native_size,
            min_size=min_size,
            preprocessing=preprocessing,
            unfreeze_points=tuple(unfreeze_points),
            parameters=parameters,
            imagenet=imagenet,
            builder=builder,
            description=description,
        )
        return builder

    return decorate


def list_backbones() -> list[BackboneSpec]:
    """Every registered backbone, in registration order."""
    return list(_REGISTRY.values())


def backbone_names() -> list[str]:
    return [spec.name for spec in list_backbones()]


def get_backbone(name: str) -> BackboneSpec:
    """The backbone called ``name`` (case-insensitive; display names like "ResNet50" work too)."""
    key = str(name).strip().lower()
    if key in _REGISTRY:
        return _REGISTRY[key]
    closest = difflib.get_close_matches(key, list(_REGISTRY), n=3, cutoff=0.5)
    hint = f" (closest: {', '.join(closest)})" if closest else ""
    raise EdgexferError(f"unknown backbone '{name}'{hint}", "run `edgexfer backbones` to list them")

"""Backbones: a registry of feature extractors, the heads put on them, and the classifier builder.

Importing this package does not import TensorFlow; building a model does.

    from edgexfer.backbones import list_backbones, get_backbone, build_model
    model = build_model("mobilenetv2", num_classes=3, image_size=160, head="gap", weights="imagenet")
"""

import edgexfer.backbones.presets as presets  # noqa: F401  (registers the built-in backbones)
from edgexfer.backbones.build import (
    INPUT_NAME,
    OUTPUT_NAME,
    build_base,
    build_model,
    get_base,
    resolve_weights,
)
from edgexfer.backbones.heads import HEADS
from edgexfer.backbones.registry import (
    PREPROCESSING,
    BackboneSpec,
    backbone_names,
    get_backbone,
    list_backbones,
    register_backbone,
)

create_backbone = build_base  # the name docs/architecture.md uses

__all__ = [
    "BackboneSpec", "HEADS", "INPUT_NAME", "OUTPUT_NAME", "PREPROCESSING", "backbone_names", "build_base",
    "build_model", "create_backbone", "get_backbone", "get_base", "list_backbones", "register_backbone",
    "resolve_weights",
]

"""Build a backbone's feature extractor (with its weights) and the full classifier around it.

The classifier: input ``image`` (N, H, W, 3) float32 raw RGB 0–255 → constant preprocessing →
backbone → head → ``probabilities`` (softmax, float32).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgexfer.backbones.heads import add_head, check_head, init_preprocessing, preprocessing_layers
from edgexfer.backbones.registry import BackboneSpec, get_backbone
from edgexfer.errors import EdgexferError

INPUT_NAME = "image"
OUTPUT_NAME = "probabilities"


def resolve_weights(spec: BackboneSpec, weights: str | os.PathLike[str] | None) -> str:
    """Normalize ``weights`` to "imagenet", "none" or an absolute file path.

    None means the usual choice: ImageNet where the backbone has it, none otherwise.
    """
    if weights is None:
        return "imagenet" if spec.imagenet else "none"
    text = os.fspath(weights)
    if text.lower() in ("none", ""):
        return "none"
    if text.lower() == "imagenet":
        if not spec.imagenet:
            raise EdgexferError(f"backbone {spec.name} has no ImageNet weights", "use --weights none or a weights file")
        return "imagenet"
    path = Path(text).expanduser()
    if not path.is_file():
        raise EdgexferError(f"weights file {path} does not exist", "pass imagenet, none or the path of a weights file")
    return str(path.resolve())


def build_base(spec: BackboneSpec, image_size: int | tuple[int, int] | None = None,
               weights: str | os.PathLike[str] | None = "none"):
    """The backbone's Keras feature extractor at ``image_size`` with ``weights`` loaded."""
    h, w = spec.check_image_size(image_size)
    mode = resolve_weights(spec, weights)
    input_shape = (h, w, 3)
    if mode == "imagenet":
        try:
            base = spec.builder(input_shape, "imagenet")
        except Exception as exc:  # Keras raises a plain Exception on a failed download
            raise EdgexferError(
                f"could not get the ImageNet weights of {spec.name} through Keras ({_short(exc)})",
                "on an offline site, fetch the Keras '*_notop.h5' weights file elsewhere and pass --weights PATH",
            ) from None
    else:
        base = spec.builder(input_shape, None)
        if mode != "none":
            load_weights_file(base, mode, spec.name)
    if spec.family == "efficientnet":
        base = _strip_keras_preprocessing(base)
    return base


def load_weights_file(model, path: str, backbone: str) -> None:
    """Load a Keras weights file into ``model``; refuse, in one line, a file made for another network."""
    _check_weight_shapes(model, path, backbone)
    try:
        model.load_weights(path)
    except Exception as exc:  # Keras raises ValueError/KeyError/OSError depending on the mismatch
        raise EdgexferError(
            f"weights file {path} does not fit backbone {backbone} ({_short(exc)})",
            f"pass a weights file of {backbone} without its top (include_top=False), or --weights imagenet|none",
        ) from None


def _check_weight_shapes(model, path: str, backbone: str) -> None:
    """Compare the array shapes stored in an HDF5 weights file with the model's, before loading.

    Keras may load a partly matching file with only a warning; a wrong backbone must be refused.
    """
    try:
        import h5py
    except ImportError:  # h5py comes with Keras; without it Keras's own checks are all we have
        return
    stored: list[tuple[int, ...]] = []
    try:
        with h5py.File(path, "r") as f:
            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and not name.startswith(("optimizer", "model_weights/optimizer")):
                    stored.append(tuple(obj.shape))
            f.visititems(visit)
    except OSError as exc:
        raise EdgexferError(
            f"weights file {path} cannot be read as a Keras weights file ({_short(exc)})",
            "pass a .weights.h5 or Keras '*_notop.h5' file",
        ) from None
    expected = sorted(tuple(v.shape) for v in model.weights)
    if sorted(stored) != expected:
        why = (f"{len(stored)} arrays in the file, {len(expected)} in the backbone" if len(stored) != len(expected)
               else "its array shapes differ from the backbone's")
        raise EdgexferError(
            f"weights file {path} does not fit backbone {backbone} ({why})",
            f"pass a weights file of {backbone} without its top (include_top=False), or --weights imagenet|none",
        )


def _strip_keras_preprocessing(base):
    """Replace Keras EfficientNet's Rescaling/Normalization front with identities.

    Its Normalization layer keeps mean/variance as variables that export to ONNX as extra graph
    inputs; edgexfer applies the same ImageNet standardization as constants instead (mode "torch").
    """
    import keras

    front = []
    for layer in base.layers[1:4]:
        if isinstance(layer, (keras.layers.Rescaling, keras.layers.Normalization)):
            front.append(layer)
    ids = {id(layer) for layer in front}

    def swap(layer):
        return keras.layers.Identity(name=f"{layer.name}_by_edgexfer") if id(layer) in ids else layer

    return keras.models.clone_model(base, clone_function=swap)


def build_model(
    backbone: str | BackboneSpec,
    num_classes: int,
    image_size: int | tuple[int, int] | None = None,
    *,
    head: str = "gap",
    weights: str | os.PathLike[str] | None = "none",
    dropout: float = 0.2,
    bn_inference: bool | None = None,
) -> Any:
    """The full classifier: raw pixels in (``image``), class probabilities out (``probabilities``).

    ``bn_inference``: call the backbone with ``training=False`` so its BatchNorm layers stay in
    inference mode, also while fine-tuning (the Keras transfer-learning recipe). Default: on for
    pretrained weights, off for ``weights="none"`` (BatchNorm must learn its statistics from scratch).
    """
    import keras

    spec = backbone if isinstance(backbone, BackboneSpec) else get_backbone(backbone)
    check_head(head)
    if num_classes < 2:
        raise EdgexferError(f"{num_classes} class(es): a classifier needs at least 2", "add a second class")
    h, w = spec.check_image_size(image_size)
    weights_mode = resolve_weights(spec, weights)
    if bn_inference is None:
        bn_inference = weights_mode != "none"
    base = build_base(spec, (h, w), weights_mode)
    base.name = "backbone"

    inputs = keras.Input(shape=(h, w, 3), dtype="float32", name=INPUT_NAME)
    x = inputs
    prep = preprocessing_layers(spec.preprocessing)
    for layer in prep:
        x = layer(x)
    init_preprocessing(prep)
    x = base(x, training=False) if bn_inference else base(x)
    outputs = add_head(x, num_classes, head=head, dropout=dropout)
    return keras.Model(inputs, outputs, name=f"edgexfer_{spec.name}")


def get_base(model) -> Any:
    """The backbone sub-model of a classifier made by :func:`build_model`."""
    return model.get_layer("backbone")


def _short(exc: BaseException, limit: int = 200) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Classification heads put on a backbone's feature map, and the constant preprocessing in front of it.

Everything here is made of stock Keras layers, so a saved ``model.keras`` loads with plain Keras (no
edgexfer import needed) and exports to ONNX with exactly one graph input.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from edgexfer.errors import EdgexferError

HEADS = {
    "gap": "global average pooling → BatchNorm → Dropout → Dense softmax",
    "attention": "spatial attention map over the conv features → attention-weighted pooling → "
                 "BatchNorm → Dropout → Dense softmax (as in attention-based VGG16 models)",
}

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)


def check_head(head: str) -> str:
    if head not in HEADS:
        raise EdgexferError(f"unknown head '{head}'", f"use one of: {', '.join(HEADS)}")
    return head


def preprocessing_layers(mode: str) -> list[Any]:
    """Layers mapping raw RGB 0–255 pixels to what the backbone expects; constants only."""
    from keras import layers

    if mode == "caffe":
        # a fixed 1x1 convolution: channel swap RGB→BGR plus the mean shift, in one constant op
        conv = layers.Conv2D(3, 1, use_bias=True, trainable=False, name="preprocess_caffe")
        return [conv]
    if mode == "tf":
        return [layers.Rescaling(1.0 / 127.5, offset=-1.0, name="preprocess_tf")]
    if mode == "torch":
        scale = [1.0 / (255.0 * s) for s in IMAGENET_STD_RGB]
        offset = [-m / s for m, s in zip(IMAGENET_MEAN_RGB, IMAGENET_STD_RGB, strict=True)]
        return [layers.Rescaling(scale, offset=offset, name="preprocess_torch")]
    if mode == "unit":
        return [layers.Rescaling(1.0 / 255.0, name="preprocess_unit")]
    if mode == "builtin":
        return []
    raise ValueError(f"unknown preprocessing mode {mode!r}")


def init_preprocessing(layer_list: list[Any]) -> None:
    """Set the constants of layers that hold them as weights (the caffe 1x1 convolution)."""
    for layer in layer_list:
        if layer.name == "preprocess_caffe":
            kernel = np.zeros((1, 1, 3, 3), dtype=np.float32)
            for out_channel, in_channel in enumerate((2, 1, 0)):  # BGR output from RGB input
                kernel[0, 0, in_channel, out_channel] = 1.0
            bias = -np.asarray(CAFFE_MEAN_BGR, dtype=np.float32)
            layer.set_weights([kernel, bias])


def add_head(features, num_classes: int, head: str = "gap", dropout: float = 0.2, attention_units: int = 64):
    """Apply ``head`` to a 4-D feature tensor; return the softmax output (float32, named "probabilities")."""
    from keras import layers

    check_head(head)
    if head == "gap":
        x = layers.GlobalAveragePooling2D(name="head_pool")(features)
    else:
        x = _attention_pool(features, attention_units)
    # momentum 0.9: the moving statistics settle within a short fine-tune (Keras default 0.99 lags)
    x = layers.BatchNormalization(momentum=0.9, name="head_bn")(x)
    if dropout > 0:
        x = layers.Dropout(dropout, name="head_dropout")(x)
    # float32 so the softmax stays exact under mixed precision
    return layers.Dense(num_classes, activation="softmax", dtype="float32", name="probabilities")(x)


def _attention_pool(features, units: int):
    """Attention-weighted average of the feature map: weights are a softmax over spatial positions."""
    from keras import layers

    _, h, w, _ = features.shape
    if h is None or w is None:
        raise ValueError("the attention head needs a feature map of fixed spatial size")
    x = layers.BatchNormalization(momentum=0.9, name="attention_bn")(features)
    a = layers.Conv2D(units, 1, activation="relu", name="attention_conv")(x)
    a = layers.Conv2D(1, 1, name="attention_logits")(a)
    a = layers.Reshape((h * w,), name="attention_flat")(a)
    a = layers.Softmax(dtype="float32", name="attention_softmax")(a)
    a = layers.Reshape((h, w, 1), name="attention_map")(a)
    weighted = layers.Multiply(name="attention_weighted")([x, a])
    # mean over positions times h*w = the attention-weighted sum (the weights sum to 1)
    pooled = layers.GlobalAveragePooling2D(name="attention_pool")(weighted)
    return layers.Rescaling(float(h * w), name="attention_sum")(pooled)

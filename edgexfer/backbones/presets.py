"""The built-in backbones: Keras applications (``include_top=False``) and a tiny CNN for CPU demos.

Parameter counts are of the feature extractor as edgexfer builds it (no head, no preprocessing
layer); a test checks each against the built model. Unfreeze points are layer-name prefixes, top
first (see ``BackboneSpec``).
"""

from __future__ import annotations

from edgexfer.backbones.registry import register_backbone


def _keras_app(class_name: str, input_shape, weights, **kwargs):
    import keras

    return getattr(keras.applications, class_name)(include_top=False, weights=weights, input_shape=input_shape, **kwargs)


# ---------------------------------------------------------------------------------------- VGG


@register_backbone("vgg16", display_name="VGG16", family="vgg", native_size=224, min_size=32, preprocessing="caffe",
                   unfreeze_points=("block4_", "block3_", "block2_"), parameters=14_714_688)
def vgg16(input_shape, weights):
    return _keras_app("VGG16", input_shape, weights)


@register_backbone("vgg19", display_name="VGG19", family="vgg", native_size=224, min_size=32, preprocessing="caffe",
                   unfreeze_points=("block4_", "block3_", "block2_"), parameters=20_024_384)
def vgg19(input_shape, weights):
    return _keras_app("VGG19", input_shape, weights)


# ------------------------------------------------------------------------------------- ResNet


@register_backbone("resnet50", display_name="ResNet50", family="resnet", native_size=224, min_size=32,
                   preprocessing="caffe", unfreeze_points=("conv4_", "conv3_", "conv2_"), parameters=23_587_712)
def resnet50(input_shape, weights):
    return _keras_app("ResNet50", input_shape, weights)


@register_backbone("resnet152v2", display_name="ResNet152V2", family="resnet", native_size=224, min_size=32,
                   preprocessing="tf", unfreeze_points=("conv4_", "conv3_", "conv2_"), parameters=58_331_648)
def resnet152v2(input_shape, weights):
    return _keras_app("ResNet152V2", input_shape, weights)


# ---------------------------------------------------------------------------------- Inception


@register_backbone("inceptionv3", display_name="InceptionV3", family="inception", native_size=299, min_size=75,
                   preprocessing="tf", unfreeze_points=("mixed8", "mixed7", "mixed5", "mixed2"),
                   parameters=21_802_784)
def inceptionv3(input_shape, weights):
    return _keras_app("InceptionV3", input_shape, weights)


# ------------------------------------------------------------------------------- EfficientNet
# Keras builds EfficientNet with Rescaling + Normalization layers in front; edgexfer removes them
# (see build.py) and applies the same ImageNet standardization as constants ("torch" mode).

_EFFICIENTNET = {  # name: (native size, parameters without the Normalization layer's 7 statistics)
    "EfficientNetB0": (224, 4_049_564),
    "EfficientNetB1": (240, 6_575_232),
    "EfficientNetB2": (260, 7_768_562),
    "EfficientNetB3": (300, 10_783_528),
}


def _register_efficientnet(class_name: str, native: int, parameters: int) -> None:
    @register_backbone(class_name.lower(), display_name=class_name, family="efficientnet", native_size=native,
                       min_size=32, preprocessing="torch", unfreeze_points=("block5", "block4", "block3"),
                       parameters=parameters)
    def build(input_shape, weights):
        return _keras_app(class_name, input_shape, weights)


for _name, (_native, _params) in _EFFICIENTNET.items():
    _register_efficientnet(_name, _native, _params)


# ----------------------------------------------------------------------------------- DenseNet


@register_backbone("densenet121", display_name="DenseNet121", family="densenet", native_size=224, min_size=32,
                   preprocessing="torch", unfreeze_points=("pool4_", "pool3_", "pool2_"), parameters=7_037_504)
def densenet121(input_shape, weights):
    return _keras_app("DenseNet121", input_shape, weights)


# ---------------------------------------------------------------------------------- MobileNet


@register_backbone("mobilenetv2", display_name="MobileNetV2", family="mobilenet", native_size=224, min_size=32,
                   preprocessing="tf", unfreeze_points=("block_12_", "block_9_", "block_5_"), parameters=2_257_984)
def mobilenetv2(input_shape, weights):
    return _keras_app("MobileNetV2", input_shape, weights)


@register_backbone("mobilenetv3small", display_name="MobileNetV3Small", family="mobilenet", native_size=224,
                   min_size=32, preprocessing="builtin",
                   unfreeze_points=("expanded_conv_7_", "expanded_conv_5_", "expanded_conv_2_"), parameters=939_120)
def mobilenetv3small(input_shape, weights):
    return _keras_app("MobileNetV3Small", input_shape, weights, include_preprocessing=True)


@register_backbone("mobilenetv3large", display_name="MobileNetV3Large", family="mobilenet", native_size=224,
                   min_size=32, preprocessing="builtin",
                   unfreeze_points=("expanded_conv_11_", "expanded_conv_9_", "expanded_conv_5_"),
                   parameters=2_996_352)
def mobilenetv3large(input_shape, weights):
    return _keras_app("MobileNetV3Large", input_shape, weights, include_preprocessing=True)


# ----------------------------------------------------------------------------------- tiny CNN


@register_backbone("tinycnn", display_name="TinyCNN", family="plain", native_size=64, min_size=32,
                   preprocessing="unit", unfreeze_points=("block2_", "block1_"), parameters=98_160, imagenet=False,
                   description="4 conv blocks, ~0.1 M parameters, no pretrained weights: for CPU demos and tests")
def tinycnn(input_shape, weights):
    """Four conv-BN-ReLU blocks with max pooling: trains from scratch on a CPU."""
    import keras
    from keras import layers

    inputs = keras.Input(shape=input_shape, name="tinycnn_input")
    # no per-image standardization (LayerNormalization) here although it learns the demo faster: its
    # variance ops quantize badly to INT8, and this network must export cleanly at every precision
    x = inputs
    for i, filters in enumerate((16, 32, 64, 128), start=1):
        x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
        x = layers.BatchNormalization(momentum=0.9, name=f"block{i}_bn")(x)
        x = layers.ReLU(name=f"block{i}_relu")(x)
        if i < 4:
            x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
    return keras.Model(inputs, x, name="tinycnn")

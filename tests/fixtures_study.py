"""A second small backbone for study tests, registrable in any process (a Ray worker included).

``register_studycnn`` is idempotent; Ray runs it in each worker of the test's Ray instance
(``worker_process_setup_hook="fixtures_study.register_studycnn"``) so that jobs there know the backbone.
A second Keras application (MobileNetV3Small at 48 px) took minutes to compile and train on two shared
CPU cores; this one trains in seconds.
"""

from __future__ import annotations

SECOND_BACKBONE = "studycnn"


def register_studycnn() -> str:
    from edgexfer.backbones import registry

    registry.list_backbones()  # the built-in presets first
    if SECOND_BACKBONE in registry._REGISTRY:
        return SECOND_BACKBONE

    @registry.register_backbone(SECOND_BACKBONE, family="plain", native_size=64, min_size=32, preprocessing="unit",
                                unfreeze_points=("block2_", "block1_"), parameters=1_464, imagenet=False)
    def studycnn(input_shape, weights):
        import keras
        from keras import layers

        inputs = keras.Input(shape=input_shape)
        x = inputs
        for i, filters in enumerate((8, 16), start=1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
            x = layers.BatchNormalization(name=f"block{i}_bn")(x)
            x = layers.ReLU(name=f"block{i}_relu")(x)
            x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        return keras.Model(inputs, x, name=SECOND_BACKBONE)

    return SECOND_BACKBONE

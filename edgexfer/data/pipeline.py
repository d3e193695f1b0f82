"""The tf.data input pipeline for training: parallel decode and resize, cache, shuffle, batch, augment, prefetch.

Images are decoded by the same Pillow function bench uses (`images.load_image`, through
`tf.numpy_function`), so training and bench see identical pixels. Augmentation is Keras preprocessing
layers applied inside the dataset, on the train split only, never in the model: the exported model
stays free of random layers. TensorFlow is imported inside the functions, never at module load.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from edgexfer._lazy import require
from edgexfer.contracts import check_known_keys
from edgexfer.data.splits import Split
from edgexfer.errors import EdgexferError

_FLIP_MODES = ("none", "horizontal", "vertical", "horizontal_and_vertical")


@dataclass
class AugmentConfig:
    """Random augmentation of training images (Keras preprocessing layers). A factor of 0 turns one off.

    rotation: fraction of a full turn (Keras `RandomRotation`): 0.03 is up to ±11°.
    flip: "none", "horizontal", "vertical" or "horizontal_and_vertical".
    zoom: up to ± this fraction (`RandomZoom`).
    contrast: contrast factor range 1 ± this (`RandomContrast`).
    brightness: up to ± this fraction of the 0–255 range (`RandomBrightness`).
    fill_mode: how rotation and zoom fill pixels from outside the image (Keras fill modes).
    """

    rotation: float = 0.03
    flip: str = "horizontal"
    zoom: float = 0.1
    contrast: float = 0.1
    brightness: float = 0.1
    fill_mode: str = "constant"

    def __post_init__(self) -> None:
        if self.flip not in _FLIP_MODES:
            raise EdgexferError(f"augmentation flip '{self.flip}' is unknown", f"use one of {', '.join(_FLIP_MODES)}")
        if self.fill_mode not in ("constant", "reflect", "wrap", "nearest"):
            raise EdgexferError(f"augmentation fill_mode '{self.fill_mode}' is unknown", "use constant, reflect, wrap or nearest")
        for name, limit in (("rotation", 0.5), ("zoom", 0.9), ("contrast", 0.9), ("brightness", 1.0)):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= limit:
                raise EdgexferError(f"augmentation {name}={value!r} is out of range", f"use a number from 0 to {limit}")

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> AugmentConfig:
        check_known_keys(cls, values, "augmentation")
        return cls(**values)

    @classmethod
    def off(cls) -> AugmentConfig:
        return cls(rotation=0.0, flip="none", zoom=0.0, contrast=0.0, brightness=0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def is_identity(self) -> bool:
        return self.flip == "none" and not (self.rotation or self.zoom or self.contrast or self.brightness)

    def layers(self, seed: int = 0) -> list:
        """The Keras preprocessing layers, in the order they run (geometry first, then intensity)."""

        keras = require("keras", "augmentation")
        out = []
        if self.flip != "none":
            out.append(keras.layers.RandomFlip(self.flip, seed=seed))
        if self.rotation:
            out.append(keras.layers.RandomRotation(self.rotation, fill_mode=self.fill_mode, seed=seed + 1))
        if self.zoom:
            out.append(keras.layers.RandomZoom(self.zoom, self.zoom, fill_mode=self.fill_mode, seed=seed + 2))
        if self.contrast:
            out.append(keras.layers.RandomContrast(self.contrast, value_range=(0, 255), seed=seed + 3))
        if self.brightness:
            out.append(keras.layers.RandomBrightness(self.brightness, value_range=(0, 255), seed=seed + 4))
        return out


def _image_size(image_size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(image_size, (int, np.integer)):
        return int(image_size), int(image_size)
    height, width = (int(v) for v in image_size)
    return height, width


def make_dataset(
    split: Split,
    name: str,
    image_size: int | tuple[int, int],
    batch_size: int,
    *,
    augment: AugmentConfig | None = None,
    shuffle: bool | None = None,
    seed: int = 0,
    cache: bool | str | os.PathLike[str] = True,
    drop_remainder: bool = False,
    epochs: tuple[int, int] | None = None,
):
    """A `tf.data.Dataset` of ``(float32 images (B, H, W, 3) raw 0–255, int64 labels (B,))`` for one split part.

    - decode + resize: `load_image` on parallel calls (AUTOTUNE), deterministic order;
    - cache: ``True`` in memory (decoded once, for the whole run), a path for a file cache (data sets
      larger than memory), ``False`` for none;
    - shuffle: seeded, reshuffled every epoch; by default only for ``train``;
    - augment: applied only when ``name == "train"`` (val and test are never augmented);
    - prefetch (AUTOTUNE).

    ``epochs=(first, end)``: the train data of epochs ``first..end-1`` one after the other, each
    shuffled and augmented by generators seeded from (``seed``, epoch) alone. Epoch k then sees the
    same images in the same order with the same augmentation whether or not the run was stopped and
    resumed before it (fit it with ``steps_per_epoch``; see :func:`steps_per_epoch`).
    """
    tf = _tensorflow()
    height, width = _image_size(image_size)
    if batch_size < 1:
        raise EdgexferError(f"batch size {batch_size} is not positive", "pass a batch size of 1 or more")
    samples = split.samples(name)
    if not samples:
        raise EdgexferError(f"the {name} split is empty", "check the data and the split fractions")
    source = split.source
    refs = [s.ref for s in samples]
    labels = np.array([s.label for s in samples], dtype=np.int64)

    def decode(index: np.ndarray) -> np.ndarray:
        return source.load(refs[int(index)], (height, width))

    def load(index, label):
        image = tf.numpy_function(decode, [index], tf.uint8, stateful=False)
        image.set_shape((height, width, 3))
        return image, label

    ds = tf.data.Dataset.from_tensor_slices((np.arange(len(refs), dtype=np.int64), labels))
    ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    if cache is True:
        ds = ds.cache()
    elif cache:
        ds = ds.cache(os.fspath(cache))
    do_shuffle = shuffle if shuffle is not None else name == "train"
    augment = augment if augment is not None and name == "train" and not augment.is_identity else None
    if epochs is not None:
        first, end = (int(v) for v in epochs)
        if end <= first:
            raise EdgexferError(f"epoch range {first}..{end} is empty", "pass end > first")
        pieces = [_batches(tf, ds.shuffle(len(refs), seed=_epoch_seed(seed, e), reshuffle_each_iteration=False)
                           if do_shuffle else ds, batch_size, drop_remainder, augment, _epoch_seed(seed, e))
                  for e in range(first, end)]
        out = pieces[0]
        for piece in pieces[1:]:
            out = out.concatenate(piece)
        return out.prefetch(tf.data.AUTOTUNE)
    if do_shuffle:
        ds = ds.shuffle(len(refs), seed=seed, reshuffle_each_iteration=True)
    return _batches(tf, ds, batch_size, drop_remainder, augment, seed).prefetch(tf.data.AUTOTUNE)


def steps_per_epoch(n_images: int, batch_size: int, drop_remainder: bool = False) -> int:
    return n_images // batch_size if drop_remainder else -(-n_images // batch_size)


def _epoch_seed(seed: int, epoch: int) -> int:
    return (int(seed) * 1_000_003 + 7_919 * (int(epoch) + 1)) % (2**31 - 1)


def _batches(tf, ds, batch_size: int, drop_remainder: bool, augment: AugmentConfig | None, seed: int):
    ds = ds.batch(batch_size, drop_remainder=drop_remainder)
    ds = ds.map(_to_float, num_parallel_calls=tf.data.AUTOTUNE)
    if augment is not None:
        layers = augment.layers(seed)

        def apply(x, y):
            for layer in layers:
                x = layer(x, training=True)
            return tf.clip_by_value(x, 0.0, 255.0), y

        ds = ds.map(apply, num_parallel_calls=tf.data.AUTOTUNE)
    return ds


def _to_float(images, labels):
    import tensorflow as tf

    return tf.cast(images, tf.float32), labels


def _tensorflow():
    return require("tensorflow", "the training input pipeline")

"""Run fixtures: a tiny finished fine-tuning run, made once per test session.

- ``tiny_run``: Path of a finished run directory (docs/contracts.md §2: model.keras, labels.json,
  split.json, config.json, history.csv with both phases, metrics.json, plots/, run.json) trained on
  ``demo_data_dir`` with the ``tinycnn`` backbone at 48 px, 2 + 1 epochs. Its accuracy is whatever
  three epochs give (it is a fixture for export/bench plumbing, not a good model). Treat it as
  read-only: copy it before changing anything.
- ``pretrained_backbone``: a stand-in for a pretrained backbone (no download here), saved as a weights file.
"""

from pathlib import Path

import pytest

TINY_RUN_SIZE = 48


def tiny_run_config(data_dir, out, **overrides):
    """The FinetuneConfig of ``tiny_run``; tests reuse it with overrides."""
    from edgexfer.config import FinetuneConfig

    options = dict(data=str(data_dir), backbone="tinycnn", out=str(out), image_size=TINY_RUN_SIZE, epochs=2,
                   fine_tune_epochs=1, batch_size=16, learning_rate=3e-3, fine_tune_learning_rate=1e-3,
                   augment=False, early_stopping_patience=0, seed=0, verbose=0)
    options.update(overrides)
    return FinetuneConfig(**options)


@pytest.fixture(scope="session")
def tiny_run(demo_data_dir, tmp_path_factory) -> Path:
    from edgexfer.train import finetune

    out = tmp_path_factory.mktemp("runs") / "tiny"
    return finetune(tiny_run_config(demo_data_dir, out), log=None).run_dir


def pretrained_backbone(weights_file: Path, backbone: str, *, seed: int, images: int, passes: int, size: int = 32):
    """A backbone that behaves as a pretrained one where training depends on it: random weights whose BatchNorm
    statistics were re-estimated (precise BN over ``passes`` passes of ``images`` uniform images), so activations
    are well scaled and every layer above an unfreeze boundary gets gradients. Saved to ``weights_file`` (a
    ``--weights`` file); returns the model, whose weights are those of the file."""
    import keras
    import numpy as np
    import tensorflow as tf

    from edgexfer.backbones import get_backbone
    from edgexfer.train.batchnorm import _batchnorm_layers, precise_batchnorm

    keras.utils.set_random_seed(seed)
    model = get_backbone(backbone).builder((size, size, 3), None)
    x = np.random.default_rng(0).uniform(-1, 1, (images, size, size, 3)).astype("float32")
    precise_batchnorm(model, tf.data.Dataset.from_tensor_slices((x, np.zeros(images))).batch(16),
                      [layer.name for layer in _batchnorm_layers(model)], passes)
    model.save_weights(weights_file)
    return model

"""The source run's Keras model as a runtime (only where TensorFlow is installed).

TensorFlow is imported inside ``KerasRuntime.__init__`` so importing this module stays light. A run's
model.keras holds stock Keras layers only (docs/contracts.md section 2), so loading it needs nothing of
``edgexfer.backbones``.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from edgexfer._lazy import is_available, require
from edgexfer.errors import EdgexferError
from edgexfer.runtime.base import Artifact, InputSpec, Runtime


def keras_available() -> tuple[bool, str]:
    if not is_available("tensorflow"):
        return False, "TensorFlow is not installed (the bench runs without it; pip install 'edgexfer[train]' for Keras)"
    if not is_available("keras"):
        return False, "Keras is not installed (pip install 'edgexfer[train]')"
    return True, "available"


class KerasRuntime(Runtime):
    """``model.predict_on_batch`` on the run's ``model.keras`` (eager-free, one compiled function)."""

    name = "keras"
    provider = "tensorflow-cpu"

    def __init__(self, artifact: Artifact, threads: int | None = None):
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up logs would bury the bench output
        tf = require("tensorflow", "the Keras runtime")
        keras = require("keras", "the Keras runtime")
        if threads:
            try:  # only possible before TensorFlow has started its thread pools
                tf.config.threading.set_intra_op_parallelism_threads(int(threads))
                tf.config.threading.set_inter_op_parallelism_threads(1)
            except RuntimeError:
                pass
        self.path = Path(artifact.path)
        self.provider = "tensorflow-gpu" if tf.config.list_physical_devices("GPU") else "tensorflow-cpu"
        try:
            self.model = keras.saving.load_model(self.path, compile=False)
        except Exception as exc:  # Keras raises many types for a bad file
            raise EdgexferError(f"Keras cannot load {self.path}: {exc}", "check the run directory") from exc
        shape = tuple(self.model.inputs[0].shape)
        self.input_spec = InputSpec(self.model.inputs[0].name, (None, *[int(d) for d in shape[1:]]), "float32")

    def _run(self, batch: np.ndarray) -> np.ndarray:
        # predict_on_batch returns numpy: TensorFlow has finished (GPU included) when it returns
        return np.asarray(self.model.predict_on_batch(batch))

    def close(self) -> None:
        self.model = None

"""edgexfer: transfer learning for medical-image classifiers, from fine-tuning to a verified edge model.

Importing this package never imports TensorFlow: the bench and runtime path must work on a
Jetson that has only ONNX Runtime and TensorRT. Heavy modules are imported where they are used.
"""

__version__ = "0.1.0"

from edgexfer.errors import EdgexferError, GateFailed  # noqa: E402

__all__ = ["__version__", "EdgexferError", "GateFailed"]

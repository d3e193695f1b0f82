"""The light install in a child process: a Python prelude that makes TensorFlow, Keras and tf2onnx unimportable.

A test puts ``BLOCK_TRAIN_EXTRA`` before its own script and runs it with ``python -c``.
"""

BLOCK_TRAIN_EXTRA = """
import sys

class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx"):
            raise ImportError(f"{name} is blocked for this test")
        return None

sys.meta_path.insert(0, Block())
"""

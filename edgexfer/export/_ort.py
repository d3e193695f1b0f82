"""A minimal ONNX Runtime CPU call for the export's own checks (parity, agreement, sensitivity).

Benchmarking runtimes live in `edgexfer.runtime`; this only needs the CPU provider, which works on
every machine (asking for CUDA where there is no GPU prints a loud error, so we never do).
"""

from __future__ import annotations

import os

import numpy as np


def cpu_session(path: str | os.PathLike[str], *, optimize: bool = True):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(os.fspath(path), sess_options=options, providers=["CPUExecutionProvider"])


def predict(path: str | os.PathLike[str], images: np.ndarray, batch_size: int = 16) -> np.ndarray:
    """Probabilities of ``images`` (uint8 or float, NHWC) from the ONNX file at ``path``."""
    session = cpu_session(path)
    name = session.get_inputs()[0].name
    outputs = [session.run(None, {name: images[i : i + batch_size].astype(np.float32)})[0]
               for i in range(0, len(images), batch_size)]
    return np.concatenate(outputs).astype(np.float32)

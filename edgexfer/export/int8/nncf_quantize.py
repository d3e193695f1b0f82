"""The second INT8 quantizer: NNCF's post-training quantization (``nncf.quantize``, its ONNX backend) of the same
pre-processed FP32 graph, on the same calibration set, writing Q/DQ ONNX (`edgexfer.export.int8.stage` judges it
beside ours).

What NNCF 3.4 writes (checked on a tinycnn and on the graphs of the tests): QuantizeLinear/DequantizeLinear pairs on
activations, weights stored as int8 initializers with a DequantizeLinear, per-channel weight scales, biases left in
float (its fast bias correction changes their float values). Activations whose calibrated minimum is not negative
(the image, 0..255, and every ReLU output) are quantized to UINT8, the others to INT8, symmetric (zero point 0)
under the ``performance`` preset. Its settings (https://docs.openvino.ai/nncf, "Post-training Quantization";
``nncf.quantize(model, calibration_dataset, mode, preset, target_device, subset_size, fast_bias_correction,
model_type, ignored_scope, advanced_parameters)``):

- ``preset=PERFORMANCE``: symmetric weights and activations, NNCF's default for CNNs;
- ``target_device=CPU``: the quantizer placement of OpenVINO's CPU plugin (NNCF's targets are ANY, CPU, GPU, NPU;
  none is TensorRT);
- ``subset_size``: every image of the calibration set, given one image per item, as NNCF's documentation asks
  ("provide a dataloader with batch_size = 1"): its statistics are per sample;
- ``ignored_scope``: the nodes the fallback rounds keep in float (`edgexfer.export.int8.fallback`).

TensorRT: its ONNX parser takes INT8 Q/DQ only (`edgexfer/export/tensorrt_rules.py`, rule ``q-output-type``).
NNCF cannot be told to make every activation signed: ``QuantizationParameters(signedness_to_force=True)`` for
activations is refused by its hardware configs ("Quantization parameter constraints specified in NNCF config are
incompatible with HW capabilities", for every target device; `nncf/common/hardware/qspaces.py`: only weights
force signedness). Every edgexfer model takes raw pixels 0..255, so an NNCF file never passes the ``tensorrt``
rules: `TENSORRT_BLOCKER` says so, and the stage never builds an NNCF candidate for that target.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from edgexfer._lazy import is_available
from edgexfer.errors import EdgexferError
from edgexfer.versions import library_versions

NAME = "nncf"
#: what `ExportConfig.quantizer` accepts: ours, NNCF's, or both judged (the more accurate kept)
QUANTIZERS = ("auto", "edgexfer", "nncf")
#: the calibration "method" an NNCF candidate records: NNCF's own range statistics (min/max per sample)
METHOD = "nncf"
PRESET = "performance"
INSTALL_FIX = "install it with: pip install 'edgexfer[openvino]' (or choose --quantizer edgexfer)"
#: why the ``tensorrt`` target never gets an NNCF file (module docstring)
TENSORRT_BLOCKER = ("NNCF quantizes non-negative activations (the image, ReLU outputs) to UINT8 and cannot be told "
                    "to make them signed, and TensorRT takes INT8 Q/DQ only (rule q-output-type)")


def available() -> bool:
    """True when NNCF can be imported here (without importing it)."""
    return is_available(NAME)


def version() -> str | None:
    return library_versions().get(NAME)


def require() -> None:
    """`--quantizer nncf` where NNCF is missing: the one-line error, before anything is written."""
    if not available():
        raise EdgexferError("--quantizer nncf needs NNCF, which is not installed", INSTALL_FIX)


def settings(target: str, subset_size: int, nodes_to_exclude: Sequence[str]) -> dict[str, Any]:
    """What the INT8 record says about an NNCF quantization (docs/contracts.md section 4)."""
    return {"target": target, "method": METHOD, "format": "QDQ", "quantizer": NAME, "nncf": version(),
            "preset": PRESET, "target_device": "CPU", "subset_size": subset_size, "fast_bias_correction": True,
            "activation_type": "QUInt8 where non-negative, else QInt8", "weight_type": "QInt8",
            "symmetric_activations": True, "symmetric_weights": True, "per_channel": True, "reduce_range": False,
            "op_types": "NNCF's CPU placement", "quantize_bias": False, "fused_add_inputs": None,
            "ignored_scope": sorted(nodes_to_exclude),
            "calibration": "NNCF's statistics, one calibration image per sample"}


def quantize_nncf(float_path: str | os.PathLike[str], out_path: str | os.PathLike[str], *,
                  images: Iterable[np.ndarray], subset_size: int, target: str,
                  nodes_to_exclude: Sequence[str] = ()) -> dict[str, Any]:
    """Quantize the pre-processed FP32 graph ``float_path`` with NNCF on ``images`` (float32 NHWC batches, split
    into single images); write the Q/DQ model to ``out_path`` and return its settings."""
    if target == "tensorrt":
        raise EdgexferError(f"NNCF cannot write a tensorrt-target INT8 file: {TENSORRT_BLOCKER}",
                            "use --quantizer edgexfer (or auto) with --target tensorrt")
    require()
    import nncf
    import onnx

    model = onnx.load(os.fspath(float_path))
    input_name = model.graph.input[0].name
    singles = [np.ascontiguousarray(batch[i : i + 1], dtype=np.float32) for batch in images for i in range(len(batch))]
    dataset = nncf.Dataset(singles, lambda image: {input_name: image})
    scope = nncf.IgnoredScope(names=list(nodes_to_exclude)) if nodes_to_exclude else None
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)  # its INFO lines and progress bars belong to nobody's console
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quantized = nncf.quantize(model, dataset, preset=nncf.QuantizationPreset.PERFORMANCE,
                                      target_device=nncf.TargetDevice.CPU, subset_size=max(1, subset_size),
                                      fast_bias_correction=True, ignored_scope=scope)
    finally:
        logger.setLevel(level)
    onnx.save(quantized, os.fspath(out_path))
    return settings(target, subset_size, nodes_to_exclude)

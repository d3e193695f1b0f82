"""INT8 Q/DQ ONNX with ONNX Runtime's static quantization, calibrated on a calibration set read in batches,
and the per-node sensitivity used by the accuracy-driven fallback.

Two target profiles (docs/architecture.md, "Precision pipeline"):
- ``tensorrt``: int8 activations and weights, symmetric (zero point 0), as TensorRT requires;
- ``cpu``: uint8 activations and int8 weights, what ONNX Runtime runs fastest on x86.
Weights are quantized per channel in both.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import math
import os
import tempfile
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.errors import EdgexferError

PROFILES: dict[str, dict[str, Any]] = {
    "tensorrt": {"activation_type": "QInt8", "weight_type": "QInt8", "symmetric_activations": True},
    "cpu": {"activation_type": "QUInt8", "weight_type": "QInt8", "symmetric_activations": False},
}
METHODS = {"entropy": "Entropy", "minmax": "MinMax", "percentile": "Percentile"}
#: SQNR above this is treated as exact: noise 60 dB below the signal changes no decision
_SQNR_CAP_DB = 60.0
_WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})


class BatchReader:
    """An ONNX Runtime CalibrationDataReader over batches from a factory.

    It also implements ``__len__`` (batches) and ``set_range`` so that ORT's strided calibration
    (``CalibStridedMinMax``) hands it to the calibrator one batch at a time: ORT's histogram
    calibrators otherwise keep every intermediate tensor of every batch in memory before
    histogramming. Sequential ranges continue the same pass over the file; no batch is read twice.
    """

    def __init__(self, batches: Callable[[], Iterator[np.ndarray]], input_name: str, total_batches: int,
                 total_images: int | None = None, desc: str | None = None, progress: bool = False):
        self._factory = batches
        self._input_name = input_name
        self._total_batches = total_batches
        self._iter: Iterator[np.ndarray] | None = None
        self._position = 0  # index of the next batch the live iterator yields
        self._end: int | None = None
        self._bar = None
        self._total_images, self._desc, self._progress = total_images, desc, progress

    def __len__(self) -> int:
        return self._total_batches

    def set_range(self, start_index: int, end_index: int) -> None:
        if self._iter is None or start_index != self._position:
            self._restart()
            for _ in range(start_index):
                next(self._iter_or_start(), None)
                self._position += 1
        self._end = end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._end is not None and self._position >= self._end:
            return None
        batch = next(self._iter_or_start(), None)
        if batch is None:
            self._close_bar()
            return None
        self._position += 1
        if self._bar is not None:
            self._bar.update(len(batch))
        if self._position >= self._total_batches:
            self._close_bar()
        return {self._input_name: np.ascontiguousarray(batch, dtype=np.float32)}

    def rewind(self) -> None:
        self._restart()
        self._end = None

    def _iter_or_start(self) -> Iterator[np.ndarray]:
        if self._iter is None:
            self._iter = self._factory()
            self._position = 0
            if self._progress and self._bar is None:
                from tqdm.auto import tqdm

                self._bar = tqdm(total=self._total_images, desc=self._desc, unit="img", leave=False,
                                 disable=None)  # None: no bar unless stderr is a terminal
        return self._iter

    def _restart(self) -> None:
        self._iter = None
        self._position = 0
        self._iter_or_start()

    def _close_bar(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def preprocess(fp32_path: str | os.PathLike[str], out_path: str | os.PathLike[str]) -> dict[str, Any]:
    """ORT's quantization pre-processing: shape inference and graph optimization (BN folding…).

    Symbolic shape inference needs sympy; without it ONNX shape inference is used (enough for our
    fixed-size CNNs). On failure the plain graph is copied and quantized: returns
    ``{"done": bool, "symbolic_shapes": bool, "error": str | None}``.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgexfer._lazy import is_available

    symbolic = is_available("sympy")
    try:
        quant_pre_process(os.fspath(fp32_path), os.fspath(out_path), skip_symbolic_shape=not symbolic)
        return {"done": True, "symbolic_shapes": symbolic, "error": None}
    except Exception as exc:  # pre-processing is an optimization: quantize the plain graph instead
        import shutil

        shutil.copyfile(fp32_path, out_path)
        return {"done": False, "symbolic_shapes": symbolic, "error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def quantize(
    float_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    reader: Any,
    target: str,
    method: str,
    nodes_to_exclude: Sequence[str] = (),
    cache_path: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Quantize ``float_path`` (pre-processed FP32) to Q/DQ at ``out_path``; returns the settings used.

    ``cache_path``: where ORT keeps the calibrated ranges (JSON), so that a re-quantization with other
    excluded nodes does not calibrate again (ONNX Runtime versions with ``calibration_cache_path``).
    """
    from onnxruntime import quantization as q

    if target not in PROFILES:
        raise EdgexferError(f"unknown INT8 target '{target}'", f"use one of: {', '.join(PROFILES)}")
    if method not in METHODS:
        raise EdgexferError(f"unknown calibration method '{method}'", f"use one of: {', '.join(METHODS)}")
    profile = PROFILES[target]
    extra = {
        "ActivationSymmetric": profile["symmetric_activations"],
        "WeightSymmetric": True,
        "CalibStridedMinMax": 1,  # one batch per calibrator pass: see BatchReader
    }
    cache_kw = {}
    if cache_path is not None and "calibration_cache_path" in inspect.signature(q.quantize_static).parameters:
        cache_kw["calibration_cache_path"] = os.fspath(cache_path)
    # ORT prints a line per calibration pass to stdout (one per batch here, with strided calibration),
    # which belongs to the CLI's summary; our progress bar says the same
    with contextlib.redirect_stdout(io.StringIO()):
        q.quantize_static(
            os.fspath(float_path),
            os.fspath(out_path),
            reader,
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=getattr(q.QuantType, profile["activation_type"]),
            weight_type=getattr(q.QuantType, profile["weight_type"]),
            calibrate_method=getattr(q.CalibrationMethod, METHODS[method]),
            nodes_to_exclude=list(nodes_to_exclude),
            extra_options=extra,
            **cache_kw,
        )
    return {
        "target": target,
        "method": method,
        "format": "QDQ",
        "activation_type": profile["activation_type"],
        "weight_type": profile["weight_type"],
        "symmetric_activations": profile["symmetric_activations"],
        "symmetric_weights": True,
        "per_channel": True,
    }


def node_sensitivity(
    float_path: str | os.PathLike[str],
    qdq_path: str | os.PathLike[str],
    images: np.ndarray,
    *,
    batch_size: int = 4,
    skip: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """Rank the float graph's nodes by how much quantization error each one adds.

    Both graphs are augmented (ORT's ``qdq_loss_debug``) to output every float tensor; per tensor we
    accumulate the signal-to-quantization-noise ratio (SQNR, dB) of the Q/DQ model's value against the
    float model's, batch by batch (nothing kept beyond the running sums). A node's score is the SQNR
    it loses: its worst input's SQNR minus its output's. The node that loses most is where keeping
    float buys the most accuracy. Returns ``[{"name", "op_type", "sqnr_drop_db", "output_sqnr_db"}]``,
    worst first.
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors

    from edgexfer.runtime.ort_runtime import OrtRuntime

    with tempfile.TemporaryDirectory(prefix="edgexfer-sensitivity-") as tmp:
        aug_float, aug_qdq = Path(tmp) / "float.onnx", Path(tmp) / "qdq.onnx"
        modify_model_output_intermediate_tensors(os.fspath(float_path), aug_float)
        modify_model_output_intermediate_tensors(os.fspath(qdq_path), aug_qdq)
        s_float = OrtRuntime(aug_float, optimization="disable").session
        s_qdq = OrtRuntime(aug_qdq, optimization="disable").session
        names_f = [o.name for o in s_float.get_outputs()]
        names_q = [o.name for o in s_qdq.get_outputs()]
        common = sorted(set(names_f) & set(names_q))
        signal = dict.fromkeys(common, 0.0)
        noise = dict.fromkeys(common, 0.0)
        input_name = s_float.get_inputs()[0].name
        for start in range(0, len(images), batch_size):
            feed = {input_name: images[start : start + batch_size].astype(np.float32)}
            out_f = dict(zip(common, s_float.run(common, feed), strict=True))
            out_q = dict(zip(common, s_qdq.run(common, feed), strict=True))
            for name in common:
                ref = np.asarray(out_f[name], dtype=np.float64)
                signal[name] += float(np.sum(ref * ref))
                noise[name] += float(np.sum((ref - np.asarray(out_q[name], dtype=np.float64)) ** 2))
        del s_float, s_qdq

    suffix = "_ReshapedSavedOutput"
    measured = {name[: -len(suffix)] if name.endswith(suffix) else name: _sqnr_db(signal[name], noise[name])
                for name in common}
    model = onnx.load(os.fspath(float_path))
    # A tensor is comparable only when the same op type produces it in both graphs: ORT's Q/DQ pass may
    # drop a node (a Relu folded into its quantization range) and give its output name to another tensor.
    qdq_producer = {out: node.op_type for node in onnx.load(os.fspath(qdq_path), load_external_data=False).graph.node
                    for out in node.output}
    graph_inputs = {i.name for i in model.graph.input}
    sqnr: dict[str, float] = dict.fromkeys(graph_inputs, _SQNR_CAP_DB)
    # nodes whose own output could not be compared: their error shows up at the next comparable tensor
    pending: dict[str, list[Any]] = {name: [] for name in graph_inputs}
    ranked: dict[str, dict[str, Any]] = {}
    for node in model.graph.node:  # topological order: a tensor's SQNR is known before its consumers
        ins = [sqnr[i] for i in node.input if i in sqnr]
        before = min([*ins, _SQNR_CAP_DB])
        inherited = [n for i in node.input for n in pending.get(i, [])]
        outs = []
        for out in node.output:
            if out in measured and qdq_producer.get(out) == node.op_type:
                sqnr[out] = min(measured[out], _SQNR_CAP_DB)
                pending[out] = []
                outs.append(sqnr[out])
            else:  # not comparable: inherit, so its error is charged at the next comparable node
                sqnr[out] = before
                pending[out] = [*inherited, node]
        if not outs:
            continue
        after = min(outs)
        # blame the weighted ops among the uncompared nodes upstream (a Conv whose fused Relu hid its output)
        blamed = [n for n in inherited if n.op_type in _WEIGHTED_OPS] or [node]
        for culprit in blamed:
            if culprit.name in skip:
                continue
            drop = round(float(before - after), 3)
            if culprit.name not in ranked or ranked[culprit.name]["sqnr_drop_db"] < drop:
                ranked[culprit.name] = {"name": culprit.name, "op_type": culprit.op_type, "sqnr_drop_db": drop,
                                        "output_sqnr_db": round(float(after), 3)}
    ranked_list = list(ranked.values())
    ranked_list.sort(key=lambda r: r["sqnr_drop_db"], reverse=True)
    return ranked_list


def _sqnr_db(signal: float, noise: float) -> float:
    if noise <= 0.0:
        return _SQNR_CAP_DB
    if signal <= 0.0:
        return -_SQNR_CAP_DB
    return max(-_SQNR_CAP_DB, min(_SQNR_CAP_DB, 10.0 * math.log10(signal / noise)))

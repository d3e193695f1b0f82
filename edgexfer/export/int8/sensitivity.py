"""Step 4 of the INT8 stage: where quantization loses signal, node by node (the fallback's ranking, and the
layer report saved beside the INT8 file).

Activations: both graphs are augmented with ONNX Runtime's ``qdq_loss_debug.modify_model_output_intermediate_tensors``
to output every tensor, and the signal-to-quantization-noise ratio of each is accumulated batch by batch. It is
the SQNR of ``qdq_loss_debug.compute_activation_error`` (``20 log10(|x| / |x - y|)`` = ``10 log10(Σx² / Σ(x-y)²)``)
without ``collect_activations``'s memory: that keeps every intermediate tensor of every image (ResNet50 at 224 px:
about 100 MB per image and model), which would break the export's 4 GB bound; running sums keep two floats per
tensor. Weights: ``qdq_loss_debug.create_weight_matching`` and ``compute_weight_error`` as they are.
"""

from __future__ import annotations

import math
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.contracts.layers import SQNR_CAP_DB, KeptNode, LayerReport, LayerRow
from edgexfer.runtime.ort_runtime import OrtRuntime

_WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})


@dataclass(frozen=True)
class NodeLoss:
    """One float-graph node: the SQNR (dB) its output keeps after quantization and the SQNR it loses
    (its worst input's minus its output's)."""

    name: str
    op_type: str
    sqnr_drop_db: float
    output_sqnr_db: float


def node_sensitivity(
    float_path: str | os.PathLike[str],
    qdq_path: str | os.PathLike[str],
    images: np.ndarray,
    *,
    batch_size: int = 4,
    skip: Sequence[str] = (),
) -> list[NodeLoss]:
    """Rank the float graph's nodes by how much quantization error each one adds.

    Both graphs are augmented (ORT's ``qdq_loss_debug``) to output every float tensor; per tensor we
    accumulate the signal-to-quantization-noise ratio (SQNR, dB) of the Q/DQ model's value against the
    float model's, batch by batch (nothing kept beyond the running sums). A node's score is the SQNR
    it loses: its worst input's SQNR minus its output's. The node that loses most is where keeping
    float buys the most accuracy. Returns the nodes worst first (ties in graph order).
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import modify_model_output_intermediate_tensors

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
    sqnr: dict[str, float] = dict.fromkeys(graph_inputs, SQNR_CAP_DB)
    # nodes whose own output could not be compared: their error shows up at the next comparable tensor
    pending: dict[str, list[Any]] = {name: [] for name in graph_inputs}
    ranked: dict[str, NodeLoss] = {}
    for node in model.graph.node:  # topological order: a tensor's SQNR is known before its consumers
        ins = [sqnr[i] for i in node.input if i in sqnr]
        before = min([*ins, SQNR_CAP_DB])
        inherited = [n for i in node.input for n in pending.get(i, [])]
        outs = []
        for out in node.output:
            if out in measured and qdq_producer.get(out) == node.op_type:
                sqnr[out] = min(measured[out], SQNR_CAP_DB)
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
            if culprit.name not in ranked or ranked[culprit.name].sqnr_drop_db < drop:
                ranked[culprit.name] = NodeLoss(culprit.name, culprit.op_type, drop, round(float(after), 3))
    return sorted(ranked.values(), key=lambda r: r.sqnr_drop_db, reverse=True)


def _sqnr_db(signal: float, noise: float) -> float:
    if noise <= 0.0:
        return SQNR_CAP_DB
    if signal <= 0.0:
        return -SQNR_CAP_DB
    return max(-SQNR_CAP_DB, min(SQNR_CAP_DB, 10.0 * math.log10(signal / noise)))


def weight_sqnr(float_path: str | os.PathLike[str], qdq_path: str | os.PathLike[str]) -> dict[str, float]:
    """SQNR (dB, capped at `SQNR_CAP_DB`) of every quantized weight of the Q/DQ model against its float value,
    keyed by the float graph's initializer name (ONNX Runtime's ``create_weight_matching``, ``compute_weight_error``)."""
    from onnxruntime.quantization.qdq_loss_debug import compute_weight_error, create_weight_matching

    matched = create_weight_matching(os.fspath(float_path), os.fspath(qdq_path))
    errors = compute_weight_error(matched, _array_sqnr)
    return {name: round(min(float(db), SQNR_CAP_DB), 3) for name, db in errors.items()}


def _array_sqnr(x: np.ndarray, y: np.ndarray) -> float:
    """ONNX Runtime's ``compute_signal_to_quantization_noice_ratio`` on arrays of at least one dimension: a
    scalar weight (a Mul by 1/255) dequantizes to a NumPy scalar, which it cannot take the length of."""
    from onnxruntime.quantization.qdq_loss_debug import compute_signal_to_quantization_noice_ratio

    return compute_signal_to_quantization_noice_ratio(np.atleast_1d(x), np.atleast_1d(y))


def layer_report(float_path: str | os.PathLike[str], qdq_path: str | os.PathLike[str], artifact: str,
                 images: np.ndarray, kept: Sequence[KeptNode], *, weights_matched: bool = True) -> LayerReport:
    """The layer report of the shipped INT8 model ``qdq_path`` (`node_sensitivity` and `weight_sqnr`).

    ``weights_matched=False`` for a file ONNX Runtime's ``create_weight_matching`` cannot read (NNCF names its
    quantized weights ``q_output_<weight>_1``, not ORT's ``<weight>_quantized``, and the matcher logs an error per
    weight): the rows then have no weight SQNR; the activation SQNR needs only the tensor names, which NNCF keeps."""
    import onnx

    losses = node_sensitivity(float_path, qdq_path, images)
    weights = weight_sqnr(float_path, qdq_path) if weights_matched else {}
    weight_of = {node.name: node.input[1] for node in onnx.load(os.fspath(float_path), load_external_data=False).graph.node
                 if node.op_type in _WEIGHTED_OPS and len(node.input) > 1}
    in_float = {k.name for k in kept}
    rows = tuple(LayerRow(loss.name, loss.op_type, loss.output_sqnr_db, loss.sqnr_drop_db,
                          weights.get(weight_of.get(loss.name, "")), loss.name in in_float) for loss in losses)
    return LayerReport(artifact, int(len(images)), rows, tuple(kept))

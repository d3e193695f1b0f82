"""INT8 Q/DQ ONNX with ONNX Runtime's static quantization, calibrated on a calibration set read in batches,
and the per-node sensitivity used by the accuracy-driven fallback.

Two target profiles (docs/architecture.md, "Precision pipeline"):
- ``tensorrt``: int8 activations and weights, symmetric (zero point 0), biases left float, Q/DQ on the inputs of
  the ops TensorRT runs in INT8 and off the Add inputs it fuses: a graph that keeps TensorRT's rules
  (export/tensorrt_rules.py, checked by export);
- ``cpu``: uint8 activations and int8 weights, what ONNX Runtime runs fastest on x86.
Weights are quantized per channel in both.
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.errors import EdgexferError
from edgexfer.export.tensorrt_placement import unquantize_fused_add_inputs

#: the op types the ``tensorrt`` profile quantizes: weighted ops, residual Adds, pooling (TensorRT's Q/DQ placement
#: recommendations; the weighted/pooling/Add part of NVIDIA ModelOpt's INT8 ONNX op list). Not Clip/Relu/BN, which
#: TensorRT folds into the convolution before them (a Q/DQ between would split the fusion).
TENSORRT_OP_TYPES = ("Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "AveragePool", "GlobalAveragePool", "MaxPool")
#: ONNX Runtime extra_options of the ``tensorrt`` profile, as ModelOpt passes them to the same quantizer
#: (modelopt/onnx/quantization/ort_utils.py, configure_ort): no INT32 bias (TensorRT's DequantizeLinear takes
#: int8 only: edgexfer/export/tensorrt_rules.py), Q/DQ on inputs only, weights per output channel.
TENSORRT_EXTRA: dict[str, Any] = {
    "QuantizeBias": False,
    "OpTypesToExcludeOutputQuantization": list(TENSORRT_OP_TYPES),
    "QDQOpTypePerChannelSupportToAxis": {"Conv": 0, "ConvTranspose": 1},
    "DedicatedQDQPair": False,
    "ForceQuantizeNoInputCheck": True,
}
PROFILES: dict[str, dict[str, Any]] = {
    "tensorrt": {"activation_type": "QInt8", "weight_type": "QInt8", "symmetric_activations": True,
                 "op_types": TENSORRT_OP_TYPES, "extra": TENSORRT_EXTRA},
    "cpu": {"activation_type": "QUInt8", "weight_type": "QInt8", "symmetric_activations": False},
}
METHODS = {"entropy": "Entropy", "minmax": "MinMax", "percentile": "Percentile"}
#: SQNR above this is treated as exact: noise 60 dB below the signal changes no decision
_SQNR_CAP_DB = 60.0
_WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "MatMul", "Gemm"})


class BatchReader:
    """An ONNX Runtime CalibrationDataReader over batches from a factory.

    `quantize` reads it once, batch by batch (`calibrate`). It also implements ``__len__`` (batches)
    and ``set_range``, so ORT's own strided calibration (``CalibStridedMinMax``) can use it too:
    sequential ranges continue the same pass over the file; no batch is read twice.
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


#: images per ONNX Runtime call while calibrating: every calibrated activation of one chunk is in memory
#: at once (ResNet50 at 224: about 100 MB per image)
CALIBRATION_CHUNK = 8
_HIST_BLOCK = 1 << 16  # elements per histogram block: the temporaries stay in the CPU cache


@dataclass
class QuantOptions:
    """How to quantize beyond the target profile (the levers `benchmarks/compare_runtimes.py` measures).

    ``op_types``: node types to quantize (None: every type ONNX Runtime can quantize); ``fmt``: "QDQ"
    or "QOperator"; ``extra``: more ONNX Runtime ``extra_options`` (they win over the profile's).
    """

    op_types: Sequence[str] | None = None
    fmt: str = "QDQ"
    per_channel: bool = True
    reduce_range: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"op_types": sorted(self.op_types) if self.op_types else None, "format": self.fmt,
                "per_channel": self.per_channel, "reduce_range": self.reduce_range, "extra": dict(self.extra)}


def quantize(
    float_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    *,
    reader: Any,
    target: str,
    method: str,
    nodes_to_exclude: Sequence[str] = (),
    cache_path: str | os.PathLike[str] | None = None,
    options: QuantOptions | None = None,
) -> dict[str, Any]:
    """Quantize ``float_path`` (pre-processed FP32) to Q/DQ at ``out_path``; returns the settings used.

    Calibration is one pass over ``reader`` (`calibrate`); its ranges are kept at ``cache_path``
    (ONNX Runtime's calibration cache, JSON), so that a re-quantization with other excluded nodes
    does not calibrate again. ``reader`` may be None when ``cache_path`` holds the ranges.
    """
    from onnxruntime import quantization as q

    if target not in PROFILES:
        raise EdgexferError(f"unknown INT8 target '{target}'", f"use one of: {', '.join(PROFILES)}")
    if method not in METHODS:
        raise EdgexferError(f"unknown calibration method '{method}'", f"use one of: {', '.join(METHODS)}")
    options = options or QuantOptions()
    if options.fmt not in ("QDQ", "QOperator"):
        raise EdgexferError(f"unknown quantization format '{options.fmt}'", "use QDQ or QOperator")
    profile = PROFILES[target]
    extra = {"ActivationSymmetric": profile["symmetric_activations"], "WeightSymmetric": True,
             **profile.get("extra", {}), **options.extra}
    chosen_ops = options.op_types or profile.get("op_types")
    op_types = list(chosen_ops) if chosen_ops else None
    with tempfile.TemporaryDirectory(prefix="edgexfer-quantize-") as tmp_dir:
        cache = Path(cache_path) if cache_path is not None else Path(tmp_dir) / "ranges.json"
        if not cache.is_file():
            if reader is None:
                raise EdgexferError("no calibration data and no calibration cache", "pass a calibration set")
            ranges = calibrate(float_path, _reader_batches(reader), method=method, op_types=op_types)
            q.calibrate.save_tensors_data(ranges, cache)
        # ORT prints progress lines to stdout, which belongs to the CLI's summary
        with contextlib.redirect_stdout(io.StringIO()):
            q.quantize_static(
                os.fspath(float_path),
                os.fspath(out_path),
                None,
                quant_format=getattr(q.QuantFormat, options.fmt),
                op_types_to_quantize=op_types,
                per_channel=options.per_channel,
                reduce_range=options.reduce_range,
                activation_type=getattr(q.QuantType, profile["activation_type"]),
                weight_type=getattr(q.QuantType, profile["weight_type"]),
                calibrate_method=getattr(q.CalibrationMethod, METHODS[method]),
                nodes_to_exclude=list(nodes_to_exclude),
                extra_options=extra,
                calibration_cache_path=os.fspath(cache),
            )
    fused = _tensorrt_placement(out_path) if target == "tensorrt" and options.fmt == "QDQ" else None
    return {
        "target": target,
        "method": method,
        "format": options.fmt,
        "activation_type": profile["activation_type"],
        "weight_type": profile["weight_type"],
        "symmetric_activations": bool(extra["ActivationSymmetric"]),
        "symmetric_weights": True,
        "per_channel": options.per_channel,
        "reduce_range": options.reduce_range,
        "op_types": sorted(op_types) if op_types else "all",
        "quantize_bias": bool(extra.get("QuantizeBias", True)),
        "fused_add_inputs": fused,
        "calibration": f"one pass, histograms per tensor in batches of at most {CALIBRATION_CHUNK} images",
    }


def _tensorrt_placement(path: str | os.PathLike[str]) -> int:
    """TensorRT's residual-Add placement on the written graph (edgexfer/export/tensorrt_placement.py);
    returns the Add inputs left in float for TensorRT to fuse."""
    import onnx

    model = onnx.load(os.fspath(path))
    rewired = unquantize_fused_add_inputs(model)
    if rewired:
        onnx.save(model, os.fspath(path))
    return rewired


def _reader_batches(reader: Any) -> Iterator[np.ndarray]:
    """The arrays of a CalibrationDataReader (or any iterable of arrays or {input: array} dicts)."""
    if hasattr(reader, "get_next"):
        while (item := reader.get_next()) is not None:
            yield next(iter(item.values())) if isinstance(item, dict) else item
    else:
        for item in reader:
            yield next(iter(item.values())) if isinstance(item, dict) else item


def calibration_graph(float_path: str | os.PathLike[str], *, with_values: bool,
                      op_types: Sequence[str] | None = None) -> tuple[Any, list[str], list[str]]:
    """The graph `calibrate` runs: ``float_path`` with, for every tensor ONNX Runtime would quantize, its
    ReduceMin and ReduceMax as outputs (and, ``with_values``, the tensor itself). Returns ``(model, tensors
    calibrated, outputs to fetch)``."""
    import onnx
    from onnxruntime.quantization.quant_utils import load_model_with_shape_infer
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    types = set(op_types) if op_types else set(QLinearOpsRegistry) | set(QDQRegistry)
    model = load_model_with_shape_infer(Path(float_path))
    names = _tensors_to_calibrate(model, types)
    input_names = {i.name for i in model.graph.input}
    graph_outputs = {o.name for o in model.graph.output}
    value_infos = {vi.name: vi for vi in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    fetch: list[str] = []
    for name in names:
        for op in ("ReduceMin", "ReduceMax"):
            out = f"{name}__edgexfer_{op}"
            model.graph.node.append(onnx.helper.make_node(op, [name], [out], keepdims=0, name=out))
            model.graph.output.append(onnx.helper.make_tensor_value_info(out, onnx.TensorProto.FLOAT, []))
            fetch.append(out)
        if with_values and name not in input_names:  # a graph input's values are the fed array itself
            if name not in graph_outputs:
                model.graph.output.append(value_infos[name])
            fetch.append(name)
    return model, names, fetch


def calibrate(
    float_path: str | os.PathLike[str],
    batches: Iterable[np.ndarray],
    *,
    method: str = "entropy",
    op_types: Sequence[str] | None = None,
    chunk: int = CALIBRATION_CHUNK,
) -> Any:
    """Activation ranges of every tensor ONNX Runtime would quantize, from one pass over ``batches``.

    Same statistics as ONNX Runtime's calibrators (`onnxruntime.quantization.calibrate`), gathered
    without their memory: one augmented session outputs each tensor and its min/max (ReduceMin and
    ReduceMax inside the graph); each chunk of at most ``chunk`` images is folded into running
    statistics and dropped. ``entropy``: ORT's histogram (128 bins over ±max|x|, widened with the same
    bin width when a later chunk goes further) and ORT's KL-divergence threshold search, vectorized;
    ``percentile``: ORT's own histogram collector fed chunk by chunk; ``minmax``: the running min/max.
    Returns ONNX Runtime's ``TensorsData`` (what ``calibration_cache_path`` stores).
    """
    import onnx
    from onnxruntime.quantization import calibrate as ort_cal

    from edgexfer.runtime.ort_runtime import OrtRuntime

    if method not in METHODS:
        raise EdgexferError(f"unknown calibration method '{method}'", f"use one of: {', '.join(METHODS)}")
    model, names, fetch = calibration_graph(float_path, with_values=method != "minmax", op_types=op_types)

    collector: Any
    if method == "entropy":
        collector = _ValueHistograms(num_bins=128)
    elif method == "percentile":
        collector = ort_cal.HistogramCollector(method="percentile", symmetric=True, num_bins=2048,
                                               num_quantized_bins=2048, percentile=99.999, scenario="same")
    else:
        collector = None
    lows: dict[str, float] = {}
    highs: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="edgexfer-calibrate-") as tmp_dir:
        augmented = Path(tmp_dir) / "augmented.onnx"
        onnx.save(model, os.fspath(augmented))
        input_name = next(i.name for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer})
        del model
        # ORT's calibrators run the augmented graph unoptimized too: optimized kernels would be fused away
        runtime = OrtRuntime(augmented, optimization="disable", spinning=False)
        seen = 0
        for batch in batches:
            for start in range(0, len(batch), chunk):
                part = np.ascontiguousarray(batch[start : start + chunk], dtype=np.float32)
                values = dict(zip(fetch, runtime.session.run(fetch, {input_name: part}), strict=True))
                values[input_name] = part
                seen += len(part)
                for name in names:
                    lo = float(values[f"{name}__edgexfer_ReduceMin"])
                    hi = float(values[f"{name}__edgexfer_ReduceMax"])
                    lows[name] = min(lo, lows.get(name, lo))
                    highs[name] = max(hi, highs.get(name, hi))
                    if collector is None:
                        continue
                    if isinstance(collector, _ValueHistograms):
                        collector.add(name, values[name], lo, hi)
                    else:
                        with contextlib.redirect_stdout(io.StringIO()):
                            collector.collect({name: values[name]})
                del values
        runtime.close()
    if seen == 0:
        raise EdgexferError("the calibration set gave no images", "rebuild the calibration set")

    method_enum = getattr(ort_cal.CalibrationMethod, METHODS[method])
    if method == "minmax":
        data = {n: (np.array(lows[n], dtype=np.float32), np.array(highs[n], dtype=np.float32)) for n in names}
    elif method == "entropy":
        data = collector.entropy_thresholds()
    else:
        with contextlib.redirect_stdout(io.StringIO()):
            data = collector.compute_collection_result()
    return ort_cal.TensorsData(method_enum, data)


def _tensors_to_calibrate(model: Any, op_types: set[str]) -> list[str]:
    """ONNX Runtime's choice (``CalibraterBase.select_tensors_to_calibrate``): float inputs and outputs of
    the nodes of ``op_types`` that are not initializers, in graph order."""
    from onnx import TensorProto

    value_infos = {vi.name: vi for vi in [*model.graph.value_info, *model.graph.output, *model.graph.input]}
    initializers = {i.name for i in model.graph.initializer}
    names: dict[str, None] = {}
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        for name in [*node.input, *node.output]:
            vi = value_infos.get(name)
            if (vi is not None and vi.type.HasField("tensor_type") and name not in initializers
                    and vi.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.FLOAT16)):
                names[name] = None
    return list(names)


class _ValueHistograms:
    """ORT's ``HistogramCollector.collect_value`` / ``merge_histogram`` for the entropy method: a
    histogram over [-T, T] (T = max|x| so far) that keeps its bin width and grows by whole bins on both
    sides when a chunk goes beyond T. Counts come from a blocked bincount instead of ``np.histogram``
    (3-4x faster; a value lying exactly on a bin edge may land in the neighbouring bin)."""

    def __init__(self, num_bins: int = 128, num_quantized_bins: int = 128):
        self.num_bins = num_bins
        self.num_quantized_bins = num_quantized_bins
        self.state: dict[str, tuple[np.ndarray, float, float, float]] = {}  # hist, min, max, threshold

    def add(self, name: str, values: np.ndarray, lo: float, hi: float) -> None:
        flat = values.reshape(-1)
        threshold = max(abs(lo), abs(hi))
        old = self.state.get(name)
        if old is None:
            self.state[name] = (_uniform_histogram(flat, self.num_bins, threshold), lo, hi, threshold)
            return
        hist, old_lo, old_hi, old_threshold = old
        if threshold <= old_threshold:
            hist = hist + _uniform_histogram(flat, len(hist), old_threshold)
            new_threshold = old_threshold
        elif old_threshold == 0:
            hist = hist + _uniform_histogram(flat, len(hist), threshold)
            new_threshold = threshold
        else:
            stride = 2 * old_threshold / len(hist)
            half = int((threshold - old_threshold) // stride + 1)
            new_threshold = half * stride + old_threshold
            grown = _uniform_histogram(flat, len(hist) + 2 * half, new_threshold)
            grown[half : len(grown) - half] += hist
            hist = grown
        self.state[name] = (hist, min(old_lo, lo), max(old_hi, hi), new_threshold)

    def entropy_thresholds(self) -> dict[str, tuple]:
        out = {}
        for name, (hist, lo, hi, threshold) in self.state.items():
            t = np.float32(threshold)
            edges = np.linspace(-t, t, len(hist) + 1, dtype=np.float32) if t > 0 else \
                np.linspace(-0.5, 0.5, len(hist) + 1, dtype=np.float32)
            low, high = entropy_threshold(hist, edges, np.float32(lo), np.float32(hi), self.num_quantized_bins)
            out[name] = (low, high, hist, edges)
        return out


def _uniform_histogram(flat: np.ndarray, bins: int, threshold: float) -> np.ndarray:
    """Counts of ``flat`` in ``bins`` equal bins over [-threshold, threshold] (the last bin closed)."""
    if threshold <= 0:
        counts = np.zeros(bins, dtype=np.int64)
        counts[bins // 2] = flat.size  # numpy's histogram puts an all-zero range's values in the middle bin
        return counts
    scale = np.float32(bins / (2.0 * threshold))
    shift = np.float32(bins / 2.0)
    counts = np.zeros(bins, dtype=np.int64)
    fbuf = np.empty(_HIST_BLOCK, dtype=np.float32)
    ibuf = np.empty(_HIST_BLOCK, dtype=np.intp)
    for start in range(0, flat.size, _HIST_BLOCK):
        block = flat[start : start + _HIST_BLOCK]
        n = block.size
        f, i = fbuf[:n], ibuf[:n]
        np.multiply(block, scale, out=f)
        np.add(f, shift, out=f)
        np.copyto(i, f, casting="unsafe")  # truncation: the values are >= 0 up to rounding
        np.clip(i, 0, bins - 1, out=i)
        counts += np.bincount(i, minlength=bins)
    return counts


def entropy_threshold(hist: np.ndarray, edges: np.ndarray, lo: Any, hi: Any, num_quantized_bins: int = 128):
    """ONNX Runtime's ``HistogramCollector.get_entropy_threshold`` (KL divergence between the clipped
    distribution and its ``num_quantized_bins``-level quantization, for every symmetric clipping
    threshold), with the per-bin Python loops replaced by array operations. Same arithmetic, same result.
    """
    from onnxruntime.quantization.calibrate import entropy
    from onnxruntime.quantization.quant_utils import smooth_distribution

    hist = np.asarray(hist, dtype=np.int64)
    num_bins = hist.size
    zero = num_bins // 2
    half_q = num_quantized_bins // 2
    cumulative = np.concatenate([[0], np.cumsum(hist)])
    total = int(cumulative[-1])
    best_div = np.inf
    best_range: tuple[np.floating, np.floating] | None = None  # numpy scalars: ORT's TensorData wants them
    for i in range(half_q, zero + 1):
        start, end = zero - i, min(zero + i + 1, num_bins)
        sliced = hist[start:end]
        p = sliced.copy()
        p[0] += cumulative[start]
        p[-1] += total - cumulative[end]
        nonzero = (p != 0).astype(np.int64)
        merged = sliced.size // num_quantized_bins
        body = num_quantized_bins * merged
        quantized = sliced[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        quantized[-1] += sliced[body:].sum()
        norm = nonzero[:body].reshape(num_quantized_bins, merged).sum(axis=1)
        level = np.where(norm != 0, quantized / np.maximum(norm, 1), 0.0)
        q = np.zeros(p.size, dtype=np.int64)
        q[:body] = np.repeat(level, merged)  # ORT assigns into an int64 array: truncated
        try:
            ps, qs = smooth_distribution(p), smooth_distribution(q)
        except AssertionError:  # ORT's smoothing refuses an almost empty distribution: not a candidate
            ps = qs = None
        div = np.inf if ps is None or qs is None else float(entropy(ps, qs))
        if best_range is None or div < best_div:
            best_div, best_range = div, (edges[start], edges[end])
    if best_range is None:  # no candidate threshold (fewer bins than quantized levels): keep the full range
        return lo, hi
    low, high = best_range
    if low < lo:
        low = lo
    if high > hi:
        high = hi
    return low, high


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


#: the weight zero point of the convolutions moved to ONNX Runtime's general int8 GEMM (`choose_cpu_kernels`)
SHIFTED_WEIGHT_ZERO_POINT = -1


def choose_cpu_kernels(
    qdq_path: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    image: np.ndarray,
    *,
    iterations: int = 20,
    warmup: int = 3,
    threads: int | None = None,
) -> dict[str, Any]:
    """Pick, per convolution, the faster of ONNX Runtime's two CPU int8 convolution kernels, as measured here.

    ONNX Runtime runs a ``QLinearConv`` whose int8 weights have zero point 0 (symmetric, what `quantize`
    writes) on MLAS's symmetric convolution kernels (AVX-512 VNNI, AVX2), and one with any other weight zero
    point on its general int8 GEMM, which uses AMX tiles on CPUs that have them (Intel Xeon 4th generation and
    later) and then beats the symmetric kernels on the deeper layers. Moving a convolution to the GEMM changes
    no value: its int8 weights ``q`` (all in [-127, 127]) become ``q - 1`` with zero point ``-1``, so
    ``(q - 1) - (-1) = q`` and the integer sums are the same.

    Every eligible convolution is timed under both kernels with ONNX Runtime's profiler at batch 1 (each
    session alone, median over ``iterations`` calls), and those that run faster on the GEMM are moved. On a
    CPU without AMX none usually is, and the model is written unchanged. Returns the record for the manifest:
    ``{"convolutions", "timed", "moved_to_gemm", "symmetric_ms", "chosen_ms", "batch", "threads", "moved", "cpu"}``
    (``cpu``: the processor that chose and its int8 instruction sets: the file is tuned for it).
    """
    import onnx

    from edgexfer.versions import machine_info

    threads = threads or len(os.sched_getaffinity(0))
    model = onnx.load(os.fspath(qdq_path))
    shiftable = _shiftable_convolutions(model)
    machine = machine_info()
    record: dict[str, Any] = {"convolutions": len(shiftable), "timed": 0, "moved_to_gemm": 0, "symmetric_ms": None,
                              "chosen_ms": None, "batch": 1, "threads": threads, "moved": [],
                              "cpu": {"processor": machine["processor"], "int8_instructions": machine["int8_instructions"]}}
    if shiftable:
        batch = np.ascontiguousarray(image[:1], dtype=np.float32)
        with tempfile.TemporaryDirectory(prefix="edgexfer-kernels-") as tmp:
            shifted_path = Path(tmp) / "shifted.onnx"
            every = onnx.ModelProto()
            every.CopyFrom(model)  # the file as read, every eligible convolution moved
            onnx.save(_shift_weights(every, shiftable, shiftable), os.fspath(shifted_path))
            symmetric = _kernel_ms_by_node(qdq_path, batch, threads, iterations, warmup)
            gemm = _kernel_ms_by_node(shifted_path, batch, threads, iterations, warmup)
        timed = [name for name in shiftable if name in symmetric and name in gemm]
        moved = [name for name in timed if gemm[name] < symmetric[name]]
        model = _shift_weights(model, shiftable, moved)
        record.update(moved_to_gemm=len(moved), moved=moved, timed=len(timed),
                      symmetric_ms=round(sum(symmetric[n] for n in timed), 3),
                      chosen_ms=round(sum(min(symmetric[n], gemm[n]) for n in timed), 3))
    onnx.save(model, os.fspath(out_path))
    return record


def _shiftable_convolutions(model: Any) -> dict[str, tuple[str, str]]:
    """Conv name -> (int8 weight initializer, its zero point initializer), for the Conv nodes whose weight comes
    from a DequantizeLinear of an int8 initializer with zero point 0 and no value -128, neither shared."""
    from onnx import TensorProto, numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    uses: dict[str, int] = {}
    for node in model.graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1
    dequantized = {node.output[0]: node for node in model.graph.node
                   if node.op_type == "DequantizeLinear" and len(node.input) == 3}
    out: dict[str, tuple[str, str]] = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or len(node.input) < 2 or node.input[1] not in dequantized:
            continue
        dq = dequantized[node.input[1]]
        weight, zero_point = (initializers.get(dq.input[0]), initializers.get(dq.input[2]))
        if (weight is None or zero_point is None or weight.data_type != TensorProto.INT8
                or uses.get(weight.name) != 1 or uses.get(zero_point.name) != 1 or uses.get(dq.output[0]) != 1):
            continue
        if np.any(numpy_helper.to_array(zero_point) != 0) or numpy_helper.to_array(weight).min() < -127:
            continue
        out[node.name] = (weight.name, zero_point.name)
    return out


def _shift_weights(model: Any, shiftable: dict[str, tuple[str, str]], names: Iterable[str]) -> Any:
    """``model`` with the weights of the Conv nodes ``names`` moved by `SHIFTED_WEIGHT_ZERO_POINT` (same values)."""
    from onnx import numpy_helper

    initializers = {i.name: i for i in model.graph.initializer}
    for name in names:
        weight_name, zero_point_name = shiftable[name]
        weight = numpy_helper.to_array(initializers[weight_name]).astype(np.int16)
        zero_point = numpy_helper.to_array(initializers[zero_point_name])
        initializers[weight_name].CopyFrom(
            numpy_helper.from_array((weight + SHIFTED_WEIGHT_ZERO_POINT).astype(np.int8), weight_name))
        initializers[zero_point_name].CopyFrom(
            numpy_helper.from_array(np.full_like(zero_point, SHIFTED_WEIGHT_ZERO_POINT), zero_point_name))
    return model


def _kernel_ms_by_node(path: str | os.PathLike[str], batch: np.ndarray, threads: int, iterations: int,
                       warmup: int) -> dict[str, float]:
    """Median kernel ms per call of every node of the model at ``path`` that ONNX Runtime's CPU provider
    runs, keyed by the name of the node it came from (ONNX Runtime's layout pass renames ``X`` to
    ``X_token_<n>``)."""
    import re

    from edgexfer.runtime.ort_runtime import kernel_profile

    per_node: dict[str, list[float]] = {}
    for event in kernel_profile(path, batch, threads=threads, iterations=iterations, warmup=warmup):
        name = re.sub(r"_token_\d+$", "", event.node)
        per_node.setdefault(name, []).append(event.ms)
    return {name: float(np.median(times)) for name, times in per_node.items()}


#: INT8 must run at least this much faster than FP32 on the export machine's CPU to be recommended there
INT8_PAYS_AT = 1.2
SLOWER_ADVICE = "INT8 is slower than FP32 here: use FP32/FP16"
BARELY_ADVICE = "INT8 is barely faster than FP32 here: FP32/FP16 keep full accuracy for little lost speed"


def cpu_speed_check(fp32_path: str | os.PathLike[str], int8_path: str | os.PathLike[str], image: np.ndarray, *,
                    iterations: int = 10, warmup: int = 2, rounds: int = 2) -> dict[str, Any]:
    """Time the INT8 and the FP32 model at batch 1 on this machine's CPU, each session alone (the way it
    runs in deployment: an idle session's spinning threads would slow the other), rounds alternating.

    Returns ``{"batch", "fp32_p50_ms", "int8_p50_ms", "speedup", "pays", "advice"}``: ``pays`` when
    INT8 is at least `INT8_PAYS_AT` times faster; ``advice`` is None then, else the line for users.
    """
    from edgexfer.runtime.ort_runtime import OrtRuntime

    batch = np.ascontiguousarray(image[:1], dtype=np.float32)
    times: dict[str, list[float]] = {"fp32": [], "int8": []}
    for _ in range(rounds):
        for name, path in (("fp32", fp32_path), ("int8", int8_path)):
            with OrtRuntime(path, threads=len(os.sched_getaffinity(0))) as runtime:
                for _ in range(warmup):
                    runtime.predict(batch)
                for _ in range(iterations):
                    runtime.predict(batch)
                    times[name].append(runtime.last_latency_ms)
    fp32_ms, int8_ms = float(np.median(times["fp32"])), float(np.median(times["int8"]))
    speedup = fp32_ms / int8_ms if int8_ms > 0 else float("inf")
    pays = speedup >= INT8_PAYS_AT
    advice = None if pays else (SLOWER_ADVICE if speedup < 1.0 else BARELY_ADVICE)
    return {"batch": 1, "threads": len(os.sched_getaffinity(0)), "fp32_p50_ms": round(fp32_ms, 3),
            "int8_p50_ms": round(int8_ms, 3), "speedup": round(speedup, 3), "pays": pays, "advice": advice,
            "measured": "ONNX Runtime CPU provider, each session alone, on the machine that exported"}

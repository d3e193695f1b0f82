"""The INT8 stage of an export, as a sequence of small steps (docs/architecture.md, "INT8 stage"):

1. pre-process the FP32 graph (`edgexfer.export.int8.quantize.preprocess`);
2. gather the judging images: validation images plus train images not in the calibration set (`agreement`);
3. for each quantizer tried (ours; NNCF's too under ``--quantizer auto`` where it is installed and the target is
   ``cpu``: `nncf_quantize`), choose the calibration method and run the fallback rounds (`fallback`, calling
   `calibrate`, `quantize` or `nncf_quantize`, `sensitivity`); keep the file that agrees with FP32 on more judging
   images (ours on ties) and say why;
4. opt-in: the per-convolution kernel choice (`kernels`, ``--kernel-choice``; our quantizer's file only);
5. write the INT8 file with its metadata, and the layer report beside it (`sensitivity.layer_report`);
6. target ``cpu``: the speed check (`speed`), which states what it measured and changes nothing written.

Nothing here depends on timing unless ``--kernel-choice`` is given: the same command on the same machine and
data writes the same bytes.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

import edgexfer.export.int8.nncf_quantize as nncf_quantize
import edgexfer.export.manifest as mf
from edgexfer.contracts.layers import LayerReport, layers_file, write_layer_report
from edgexfer.contracts.manifest import Int8Quantizer, QuantizerCandidate
from edgexfer.export.config import CALIBRATION_METHODS_TRIED, ExportConfig
from edgexfer.export.int8.agreement import (
    SOURCE_NAMES,
    Agreement,
    JudgingImages,
    judge,
    judging_images,
    unseen_train_images,
)
from edgexfer.export.int8.fallback import FallbackResult, Quantizer, Stages, run_fallback
from edgexfer.export.int8.kernels import KernelChoice, choose_cpu_kernels
from edgexfer.export.int8.quantize import preprocess
from edgexfer.export.int8.sensitivity import layer_report
from edgexfer.export.int8.speed import SpeedCheck, cpu_speed_check
from edgexfer.export.keras_onnx import update_metadata
from edgexfer.io import atomic_path, sha256_file
from edgexfer.runtime.ort_runtime import predict_onnx
from edgexfer.versions import library_versions


@dataclass(frozen=True)
class Int8Inputs:
    """What the INT8 stage takes from the export: the FP32 file, the validation images with FP32's probabilities
    on them, the run's split (for train images not in the calibration set), the calibration set and the metadata
    every exported file carries."""

    fp32_path: Path
    out_path: Path
    val_images: np.ndarray
    val_probs: np.ndarray
    split: Any
    image_size: tuple[int, int]
    calset: Any
    metadata: dict[str, str]


@dataclass(frozen=True)
class Int8Result:
    """What the INT8 stage did, step by step; `artifact` turns it into the manifest entry."""

    fallback: FallbackResult
    agreement: Agreement  # of the file written (the kernel choice, when asked for, is checked again)
    preprocessed: dict[str, Any]
    calibration: dict[str, Any]
    judging: dict[str, int]
    kernels: KernelChoice | None
    layers: LayerReport
    layers_path: Path
    speed: SpeedCheck | None
    quantizer: Int8Quantizer

    def artifact(self, path: Path, target: str) -> dict[str, Any]:
        """The manifest entry of the INT8 file ``path`` (docs/contracts.md section 4)."""
        chosen = self.fallback.chosen
        lowest = self.layers.lowest()
        return mf.artifact_record(
            "int8", path, fmt="onnx", precision="int8", target=target,
            parity={**self.agreement.record(), "images": dict(self.judging)},
            excluded_nodes=[{"name": k.name, "op_type": k.op_type, "reason": k.reason, "sqnr_drop_db": k.sqnr_drop_db,
                             "round": k.round} for k in chosen.kept],
            calibration=self.calibration,
            quantization={**chosen.settings, "preprocessed": self.preprocessed, "fallback": self.fallback.record(),
                          "cpu_kernels": self.kernels.record() if self.kernels else None},
            cpu_speed=self.speed.record() if self.speed else None,
            quantizer=self.quantizer.to_dict(),
            layers={"file": self.layers_path.name, "sha256": sha256_file(self.layers_path),
                    "nodes": len(self.layers.nodes), "kept_in_float": len(self.layers.kept_in_float),
                    "lowest_sqnr": None if lowest is None else {"name": lowest.name, "op_type": lowest.op_type,
                                                                  "output_sqnr_db": lowest.output_sqnr_db}},
        )


def judging_set(config: ExportConfig, inputs: Int8Inputs) -> JudgingImages:
    """Step 2: the validation images (up to ``config.agreement_images``) and, to fill the rest, train images not
    in the calibration set, with FP32's probabilities on them."""
    cap = config.agreement_images
    val, val_probs = inputs.val_images[:cap], inputs.val_probs[:cap]
    train = unseen_train_images(inputs.split, inputs.calset, inputs.image_size, cap - len(val), config.calibration_seed)
    train_probs = (predict_onnx(inputs.fp32_path, train, config.batch_size) if len(train)
                   else np.zeros((0, val_probs.shape[1]), dtype=val_probs.dtype))
    return judging_images(val, val_probs, train, train_probs)


def quantizers_to_try(config: ExportConfig, say: Callable[[str], None]) -> tuple[str, ...]:
    """Step 3a: who quantizes. ``auto`` tries ours and NNCF's where NNCF is installed and the target is ``cpu``, and
    says once why NNCF is not tried otherwise; ``nncf`` was checked by `ExportConfig.validate`."""
    target = config.resolved_target
    if config.quantizer != "auto":
        return (config.quantizer,)
    if target == "tensorrt":
        say(f"INT8 ({target}) quantizer: ours; NNCF not tried: {nncf_quantize.TENSORRT_BLOCKER}")
        return ("edgexfer",)
    if not nncf_quantize.available():
        say(f"INT8 ({target}) quantizer: ours; NNCF is not installed ({nncf_quantize.INSTALL_FIX.split(' (')[0]})")
        return ("edgexfer",)
    return ("edgexfer", nncf_quantize.NAME)


@dataclass(frozen=True)
class QuantizerRun:
    """One quantizer's fallback rounds and what they kept."""

    name: str
    version: str | None
    fallback: FallbackResult

    def candidate(self, kept: bool) -> QuantizerCandidate:
        a = self.fallback.chosen.agreement
        return QuantizerCandidate(self.name, self.version, a.rate, a.agreed, a.n, a.interval, self.fallback.outcome,
                                  kept)


def keep_more_accurate(runs: list[QuantizerRun], target: str) -> tuple[QuantizerRun, str]:
    """Step 3c: the run whose file agrees with FP32 on more judging images; ours (``runs[0]`` under ``auto``) on ties:
    its calibration is ours, in a fixed order, and its bytes were shown reproducible. Returns it and the line that
    says why."""
    if len(runs) == 1:
        return runs[0], f"INT8 ({target}) quantizer: {_named(runs[0].name)} (--quantizer {runs[0].name})"
    best = runs[0]
    for other in runs[1:]:
        if other.fallback.chosen.agreement.better_than(best.fallback.chosen.agreement):
            best = other
    rest = [r for r in runs if r is not best]
    scores = "; ".join(f"{_named(r.name)} {r.fallback.chosen.agreement.agreed} of {r.fallback.chosen.agreement.n}"
                       for r in rest)
    mine = best.fallback.chosen.agreement
    if any(r.fallback.chosen.agreement.agreed == mine.agreed for r in rest):
        why = f"as accurate ({mine.agreed} of {mine.n} judging images agree with FP32; {scores}), and the more reproducible"
    else:
        why = f"the more accurate: {mine.agreed} of {mine.n} judging images agree with FP32 ({scores})"
    return best, f"INT8 ({target}) quantizer: kept {_named(best.name)}, {why}"


def _named(name: str) -> str:
    return "ours (edgexfer)" if name == "edgexfer" else "NNCF" if name == nncf_quantize.NAME else name


def run_int8(config: ExportConfig, inputs: Int8Inputs, say: Callable[[str], None], timeline: Stages) -> Int8Result:
    """The INT8 stage: writes ``inputs.out_path`` and its layer report beside it; returns what it did."""
    import onnx

    target = config.resolved_target
    # inside the staging folder (tempfile.tempdir points there): removed with it, whatever happens
    with tempfile.TemporaryDirectory(prefix="int8-") as tmp_dir:
        work = Path(tmp_dir)
        float_path = work / "float_prep.onnx"
        with timeline.stage("int8_preprocess"):
            preprocessed = preprocess(inputs.fp32_path, float_path)
        with timeline.stage("int8_judging_images"):
            judging = judging_set(config, inputs)
        say(f"INT8 ({target}): judging agreement with FP32 on "
            + ", ".join(f"{n} {SOURCE_NAMES[source]} images" for source, n in judging.sources))
        sample = next(inputs.calset.iter_batches(max(1, config.sensitivity_samples)))[0]
        runs = []
        for name in quantizers_to_try(config, say):
            quantizer = Quantizer(float_path, work, inputs.calset, target, judging, config.batch_size, timeline,
                                  config.progress, kind=name)
            if name == nncf_quantize.NAME:
                methods: tuple[str, ...] = (nncf_quantize.METHOD,)
            else:
                methods = (CALIBRATION_METHODS_TRIED if config.calibration_method == "auto"
                           else (config.calibration_method,))
            fallback = run_fallback(quantizer, methods, bar=config.int8_min_agreement,
                                    max_rounds=config.int8_max_rounds, nodes_per_round=config.int8_nodes_per_round,
                                    sample=sample, say=say)
            runs.append(QuantizerRun(name, nncf_quantize.version() if name == nncf_quantize.NAME
                                     else library_versions(("edgexfer",)).get("edgexfer"), fallback))
        kept_run, reason = keep_more_accurate(runs, target)
        say(reason)
        fallback = kept_run.fallback
        chosen = fallback.chosen
        if fallback.outcome != "met":
            say(f"warning: INT8 top-1 agreement {chosen.agreement.text()} does not meet the "
                f"{config.int8_min_agreement * 100:g}% bar with evidence ({fallback.outcome}; {fallback.stopped}); "
                "the artifact is written, the bench gate will judge it")
        source, kernels = chosen.path, None
        if target == "cpu" and config.int8_kernel_choice:
            if kept_run.name == "edgexfer":
                with timeline.stage("int8_kernel_choice"):
                    source = work / "int8_kernels.onnx"
                    kernels = choose_cpu_kernels(chosen.path, source, inputs.val_images[:1])
                say(f"INT8 ({target}) kernels: {len(kernels.moved)} of {kernels.convolutions} convolutions moved to "
                    "ONNX Runtime's int8 GEMM, timed on this CPU (--kernel-choice)")
            else:
                say(f"INT8 ({target}) kernels: --kernel-choice applies to our quantizer's file only; "
                    f"{_named(kept_run.name)}'s file is written as it made it")
        model = onnx.load(os.fspath(source))
        update_metadata(model, {**inputs.metadata, "edgexfer.precision": "int8", "edgexfer.int8_target": target,
                                "edgexfer.calibration_set": inputs.calset.id,
                                "edgexfer.int8_quantizer": kept_run.name})
        with atomic_path(inputs.out_path) as out_tmp:
            onnx.save(model, os.fspath(out_tmp))
        del model
        shipped = chosen.agreement
        if kernels is not None and kernels.moved:  # the same values by construction: the check is what ships
            shipped = judge(judging, predict_onnx(inputs.out_path, judging.images, config.batch_size))
        ours = kept_run.name == "edgexfer"
        with timeline.stage("int8_layer_report"):
            layers = layer_report(float_path, inputs.out_path, inputs.out_path.name, sample, chosen.kept,
                                  weights_matched=ours)
            layers_path = write_layer_report(layers, inputs.out_path.with_name(layers_file(inputs.out_path.name)))
    worst = ", ".join(f"{r.name} ({r.op_type}) {r.output_sqnr_db:.1f} dB" for r in layers.worst(3))
    say(f"INT8 ({target}) layer report {layers_path.name}: {len(layers.nodes)} nodes; most signal lost at {worst}; "
        f"{len(chosen.kept)} node(s) kept in float" + ("" if ours else "; no weight SQNR for NNCF's file"))
    speed = None
    if target == "cpu":  # measured and stated; it changes nothing written
        with timeline.stage("int8_speed_check"):
            speed = cpu_speed_check(inputs.fp32_path, inputs.out_path, inputs.val_images[:1])
        say(f"INT8 ({target}) {speed.line()}")
    record = Int8Quantizer(kept_run.name, kept_run.version, dict(chosen.settings),
                              tuple(r.candidate(r is kept_run) for r in runs), reason)
    return Int8Result(fallback, shipped, preprocessed, calibration_record(inputs.calset, chosen.method),
                      judging.counts, kernels, layers, layers_path, speed, record)


def calibration_record(calset: Any, method: str) -> dict[str, Any]:
    return {"id": calset.id, "file": calset.npz_path.name, "sha256": calset.manifest["sha256"], "size": calset.size,
            "method": method, "seed": calset.manifest.get("seed")}

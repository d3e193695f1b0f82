"""CPU runtimes side by side: ONNX Runtime FP32 and our INT8 against OpenVINO FP32, BF16 and our INT8, per backbone.

    .venv/bin/python benchmarks/compare_cpu_runtimes.py [--backbones resnet50,mobilenetv2]

1. ``prepare`` (a child process, the only one that imports TensorFlow): per backbone a Keras model at 224 px with
   random weights (no training: this measures speed, not a model), written as a run directory and exported with
   ``edgexfer.export.export_run`` (FP32 + INT8 ``cpu`` profile, calibrated on the texture images of
   ``compare_runtimes.py``).
2. ``time`` (a fresh process per round and variant, no TensorFlow): one variant opened through edgexfer's runtime
   table (``ort-cpu``, ``ov-cpu``; the bf16 variant is ov-cpu's derived ``bf16`` artifact), warmed up, timed at
   every batch size, closed; so one model is alive at a time and no thread pool of another runtime lingers.
   Rounds alternate the order of the variants so the load of the shared machine hits all alike. The first round
   also records each variant's top-1 agreement with ONNX Runtime FP32 on the test images (random weights: near
   ties are common, so agreement is a lower bound of what a trained model would show) and, for OpenVINO, what it
   executed (precision hint, layer precisions).
3. Results: ``benchmarks/results/compare_cpu_runtimes.{json,md}``; × = ONNX Runtime FP32's p50 over the variant's.
"""

from __future__ import annotations

import argparse
import json
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
SIZE = 224
NAMES = {"resnet50": "ResNet50", "mobilenetv2": "MobileNetV2", "efficientnetb0": "EfficientNetB0"}
#: variant -> (runtime kind, artifact name)
VARIANTS = {"ort_fp32": ("ort-cpu", "fp32"), "ort_int8": ("ort-cpu", "int8"), "ov_fp32": ("ov-cpu", "fp32"),
            "ov_bf16": ("ov-cpu", "bf16"), "ov_int8": ("ov-cpu", "int8")}
WHAT = {"ort_fp32": "ONNX Runtime CPU, FP32 file", "ort_int8": "ONNX Runtime CPU, our INT8 file (cpu profile)",
        "ov_fp32": "OpenVINO CPU, FP32 file, hint f32", "ov_bf16": "OpenVINO CPU, FP32 file, hint bf16",
        "ov_int8": "OpenVINO CPU, our INT8 file, hint f32"}


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def texture_split(work: Path, per_class: int, seed: int):
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from compare_runtimes import make_texture_split

    return make_texture_split(work, per_class, seed)


# ------------------------------------------------------------------------------------------ prepare (TensorFlow)


def prepare(args: argparse.Namespace) -> int:
    import keras

    from edgexfer.backbones import build_model
    from edgexfer.contracts.run import RunRecord
    from edgexfer.export import ExportConfig, export_run
    from edgexfer.io import sha256_file, write_json

    work = Path(args.work)
    split = texture_split(work, args.per_class, args.seed)
    for backbone in args.backbones:
        run_dir, out = work / "runs" / backbone, work / "exported" / backbone
        if not (run_dir / "run.json").is_file():
            keras.utils.set_random_seed(args.seed)
            model = build_model(backbone, num_classes=len(split.classes), image_size=SIZE, weights="none")
            run_dir.mkdir(parents=True, exist_ok=True)
            model.save(run_dir / "model.keras")
            split.save(run_dir / "split.json")
            write_json(run_dir / "labels.json", split.classes)
            RunRecord(path=run_dir, backbone=backbone, image_size=(SIZE, SIZE), classes=list(split.classes),
                      head="gap", weights="none", model_file="model.keras",
                      model_sha256=sha256_file(run_dir / "model.keras"),
                      split_sha256=sha256_file(run_dir / "split.json"), created=time.strftime("%Y-%m-%dT%H:%M:%S"),
                      extra={"versions": {}}).write()
        if not (out / "manifest.json").is_file():
            start = time.perf_counter()
            export_run(ExportConfig(run_dir=run_dir, out=out, int8=True, target="cpu", calibration=work / "calibration",
                                    calibration_size=args.calibration_size, progress=False))
            log(f"{backbone}: exported in {time.perf_counter() - start:.0f} s")
    return 0


# ------------------------------------------------------------------------------------------ time (no TensorFlow)


def artifact_of(export_dir: Path, runtime: str, name: str):
    from edgexfer.evaluate.exported import load_export
    from edgexfer.runtime import RUNTIMES

    export = load_export(export_dir)
    kind = RUNTIMES[runtime]
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
    predictions on the test images. Prints one JSON line."""
    from edgexfer.evaluate.latency import make_batch

    work = Path(args.work)
    runtime, name = VARIANTS[args.variant]
    kind, artifact = artifact_of(work / "exported" / args.backbone, runtime, name)
    images = np.load(work / "test_images.npy")
    out: dict[str, Any] = {"variant": args.variant, "latency": {}}
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


def measure_backbone(backbone: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from edgexfer.data.splits import Split

    split = Split.load(work / "runs" / backbone / "split.json")
    x, y = split.load_arrays("test", (SIZE, SIZE))
    np.save(work / "test_images.npy", x.astype(np.uint8))
    variants = list(args.variants)
    samples: dict[str, dict[str, list[float]]] = {v: {str(b): [] for b in args.batch_sizes} for v in variants}
    execution: dict[str, Any] = {}
    for r in range(args.rounds):
        order = variants if r % 2 == 0 else list(reversed(variants))
        for variant in order:
            cmd = [sys.executable, os.fspath(Path(__file__).resolve()), "--phase", "time", "--backbone", backbone,
                   "--variant", variant, "--work", os.fspath(work), "--threads", str(args.threads),
                   "--batch-sizes", ",".join(str(b) for b in args.batch_sizes), "--warmup", str(args.warmup),
                   "--iterations", str(max(1, args.iterations // args.rounds))] + (["--agreement"] if r == 0 else [])
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")), None)
            if line is None:
                raise SystemExit(f"{backbone} {variant} failed:\n{proc.stderr[-2000:]}")
            result = json.loads(line[len("RESULT "):])
            for b, times in result["latency"].items():
                samples[variant][b] += times
            execution[variant] = result["execution"]
        log(f"{backbone}: round {r + 1}/{args.rounds} done")
    reference = np.load(work / f"probs-{backbone}-ort_fp32.npy")
    rows = []
    for variant in variants:
        probs = np.load(work / f"probs-{backbone}-{variant}.npy")
        lat = {b: {"p50": round(float(np.median(t)), 3), "min": round(float(np.min(t)), 3), "n": len(t)}
               for b, t in samples[variant].items()}
        ref = {b: float(np.median(t)) for b, t in samples["ort_fp32"].items()}
        layers = (execution[variant] or {}).get("layer_precisions") or {}
        rows.append({
            "variant": variant, "what": WHAT[variant], "latency_ms": lat,
            "speedup_vs_ort_fp32": {b: round(ref[b] / lat[b]["p50"], 2) for b in lat},
            "agreement_with_ort_fp32": round(float((probs.argmax(1) == reference.argmax(1)).mean()), 4),
            "accuracy": round(float((probs.argmax(1) == y).mean()), 4),
            "max_abs_diff_vs_ort_fp32": float(np.abs(probs - reference).max()),
            "precision_hint": (execution[variant] or {}).get("precision_hint"),
            "conv_precisions": layers.get("Convolution"),
        })
    return {"key": backbone, "name": NAMES.get(backbone, backbone), "test_images": int(len(y)), "rows": rows,
            "fp32_answers": np.bincount(reference.argmax(1), minlength=reference.shape[1]).tolist()}


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    sets = ", ".join(m.get("int8_instructions") or []) + "; bf16: " + (", ".join(m.get("bf16_instructions") or []) or "none")
    lines = ["# CPU runtimes side by side: ONNX Runtime vs OpenVINO (FP32, BF16, our INT8)", "",
             f"Command: `{results['command']}`", "",
             f"Machine: {m['processor']} ({sets}), {m['cores_usable']} cores; load average at start "
             f"{m['loadavg_start']}, at end {m.get('loadavg_end')}. onnxruntime {results['libraries'].get('onnxruntime-gpu') or results['libraries'].get('onnxruntime')}, "
             f"openvino {results['libraries'].get('openvino')}.", "",
             "How: random weights (no training), 224 px, our export (FP32 + INT8 `cpu` profile). Every (round, variant) "
             "runs in a fresh process through edgexfer's runtime table: one model alive at a time, "
             f"{results['settings']['threads']} threads (ONNX Runtime intra-op; OpenVINO INFERENCE_NUM_THREADS, "
             f"latency hint), {results['settings']['rounds']} rounds alternating the order; p50 / min wall ms per batch "
             "(inputs in host memory); × = ONNX Runtime FP32's p50 over the variant's, × min the same of the minima. Agreement: top-1 with ONNX "
             "Runtime FP32 on the test images (random weights: near-ties are common, so INT8/BF16 agreement here is a "
             "lower bound of a trained model's).", ""]
    loads = [*(m.get("loadavg_start") or []), *(m.get("loadavg_end") or [])]
    if loads and max(loads) > m["cores_usable"]:
        lines += [f"**Shared machine**: the load average ({max(loads):.1f} at most) was above the {m['cores_usable']} "
                  "cores, so other jobs took CPU time while the clock ran: p50 figures carry that load, min figures "
                  "are closer to the uncontended time; compare variants within a table, not with other machines.", ""]
    for bb in results["backbones"]:
        batches = sorted({b for r in bb["rows"] for b in r["latency_ms"]}, key=int)
        head = "| variant | " + " | ".join(f"p50 ms @{b} | min ms @{b} | × @{b} | × min @{b}" for b in batches) + \
            " | agreement | max abs Δp | precision hint | convolutions ran in | what |"
        lines += [f"## {bb['name']} ({bb['test_images']} test images)", "", head,
                  "|---|" + "---:|" * (4 * len(batches) + 2) + "---|---|---|"]
        ref_min = next(r for r in bb["rows"] if r["variant"] == "ort_fp32")["latency_ms"]
        for r in bb["rows"]:
            cells = " | ".join(f"{r['latency_ms'][b]['p50']:.2f} | {r['latency_ms'][b]['min']:.2f} | "
                               f"{r['speedup_vs_ort_fp32'][b]:.2f} | {ref_min[b]['min'] / r['latency_ms'][b]['min']:.2f}"
                               for b in batches)
            conv = ", ".join(f"{p} {n}" for p, n in sorted((r["conv_precisions"] or {}).items())) or "–"
            lines.append(f"| {r['variant']} | {cells} | {r['agreement_with_ort_fp32'] * 100:.1f}% | "
                         f"{r['max_abs_diff_vs_ort_fp32']:.2g} | "
                         f"{r['precision_hint'] or '–'} | {conv} | {r['what']} |")
        answers = bb.get("fp32_answers")
        if answers is not None and max(answers) == bb["test_images"]:
            lines.append("")
            lines.append(f"Random weights: ONNX Runtime FP32 answers the same class for all {bb['test_images']} "
                         "images, so agreement says nothing about accuracy here; max abs Δp (largest probability "
                         "difference from ONNX Runtime FP32) shows how far each variant's numbers move.")
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--backbones", default="resnet50,mobilenetv2")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--per-class", type=int, default=60, help="texture images per class (half of them are test)")
    parser.add_argument("--calibration-size", type=int, default=64)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--iterations", type=int, default=30, help="timed calls at batch 1 in all rounds (a third at larger batches)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default=str(ROOT / "runs" / "compare_cpu_runtimes"))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "compare_cpu_runtimes"))
    parser.add_argument("--phase", choices=["all", "prepare", "measure", "time", "render"], default="all",
                        help=argparse.SUPPRESS)
    parser.add_argument("--backbone", help=argparse.SUPPRESS)
    parser.add_argument("--variant", help=argparse.SUPPRESS)
    parser.add_argument("--agreement", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.backbones = [b.strip() for b in args.backbones.split(",") if b.strip()]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    args.batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    if args.phase == "prepare":
        return prepare(args)
    if args.phase == "time":
        return time_one(args)
    if args.phase == "render":  # the markdown again from the JSON (after a change to the table, no re-measuring)
        from edgexfer.io import read_json, write_text

        out = Path(args.out)
        write_text(out.with_suffix(".md"), markdown(read_json(out.with_suffix(".json"), "results")))
        return 0
    if "ort_fp32" not in args.variants:
        args.variants.insert(0, "ort_fp32")  # the reference of every speed-up and agreement
    loadavg_start = [round(v, 2) for v in os.getloadavg()]
    given = list(argv if argv is not None else sys.argv[1:])
    if args.phase == "all":  # TensorFlow lives and dies in the child: nothing of it is left while we time
        subprocess.run([sys.executable, os.fspath(Path(__file__).resolve()), *given, "--phase", "prepare"], check=True)

    from edgexfer.io import write_json, write_text
    from edgexfer.versions import library_versions, machine_info

    shown = [a for i, a in enumerate(given) if a not in ("--work", "--out", "--phase")
             and (i == 0 or given[i - 1] not in ("--work", "--out", "--phase"))]
    results: dict[str, Any] = {
        "command": " ".join([".venv/bin/python", "benchmarks/compare_cpu_runtimes.py", *shown]),
        "machine": {**machine_info(), "cores_usable": len(os.sched_getaffinity(0)), "loadavg_start": loadavg_start,
                    "python": platform.python_version()},
        "settings": {k: v for k, v in vars(args).items() if k not in ("work", "out", "phase", "backbone", "variant",
                                                                      "agreement")},
        "libraries": library_versions(),
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

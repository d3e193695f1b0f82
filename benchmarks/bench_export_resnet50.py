"""Export ResNet50 at 224 px (FP32 + FP16 + INT8, 500 calibration images) and measure wall time and peak memory,
this checkout side by side with a baseline checkout, in one run.

    .venv/bin/python benchmarks/bench_export_resnet50.py [--baseline-src DIR] [--work DIR]
        [--calibration-size 500] [--method entropy] [--target cpu]

``--baseline-src``: a checkout of the code to compare with (e.g. ``git worktree add ../base 0ce3ebc``,
the export before this benchmark's changes); without it only this checkout is measured.

ResNet50 is built with weights=None (export cost does not depend on the weight values) around a
synthetic demo data set at 224 px, written as a finished run (in a child process). Each export runs
in a fresh child process (``--child``), one at a time; this process samples the resident memory of
the child's whole process tree (the export and any process it starts) every 20 ms, so the peak is
what the machine had to hold. Stage times come from the manifest's ``timings``. Results:
``benchmarks/results/export_resnet50.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")

ROOT = Path(__file__).resolve().parents[1]
SIZE = 224
TARGET_PEAK_MB = 4096
TARGET_WALL_RATIO = 1 / 3


def make_resnet50_run(work: Path, per_class: int, size: int = SIZE) -> Path:
    from edgexfer.backbones import build_model
    from edgexfer.contracts.run import RunRecord
    from edgexfer.data.sources import discover
    from edgexfer.data.splits import make_split
    from edgexfer.data.synthetic import generate_demo
    from edgexfer.io import sha256_file, write_json

    run_dir = work / "run-resnet50"
    if (run_dir / "run.json").is_file():
        return run_dir
    data = generate_demo(work / "data", per_class=per_class, size=size, seed=0)
    split = make_split(discover(data), fractions=(0.7, 0.2, 0.1), seed=0)
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_model("resnet50", num_classes=len(split.classes), image_size=size, weights="none")
    model.save(run_dir / "model.keras")
    split.save(run_dir / "split.json")
    write_json(run_dir / "labels.json", split.classes)
    RunRecord(path=run_dir, backbone="resnet50", image_size=(size, size), classes=list(split.classes), head="gap",
              weights="none", model_file="model.keras", model_sha256=sha256_file(run_dir / "model.keras"),
              split_sha256=sha256_file(run_dir / "split.json"),
              created=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), extra={"versions": {}}).write()
    return run_dir


def child_export(args: argparse.Namespace) -> int:
    """One export in this process (whichever edgexfer is first on sys.path); writes the manifest's record."""
    import edgexfer
    from edgexfer.export import ExportConfig, export_run

    variant_dir = Path(args.work) / args.child
    config = ExportConfig(run_dir=Path(args.work) / "run-resnet50", out=variant_dir / "exported", fp16=True, int8=True,
                          target=args.target, calibration=variant_dir / "calibration",
                          calibration_size=args.calibration_size, calibration_method=args.method, progress=False)
    started = time.time()
    manifest = export_run(config)
    record = {"edgexfer": str(Path(edgexfer.__file__).parent), "started": started, "seconds": time.time() - started,
              "timings": manifest["timings"],
              "artifacts": [{k: a.get(k) for k in ("name", "file", "size_bytes", "parity", "excluded_nodes")}
                            for a in manifest["artifacts"]],
              "int8_fallback": next((a["quantization"].get("fallback") for a in manifest["artifacts"]
                                     if a["name"] == "int8"), None)}
    (variant_dir / "record.json").write_text(json.dumps(record, indent=1, default=str))
    return 0


def measure(variant: str, src: Path | None, args: argparse.Namespace, work: Path) -> dict:
    """Run one export child and sample its process tree's resident memory."""
    import psutil

    variant_dir = work / variant
    if variant_dir.exists():
        import shutil

        shutil.rmtree(variant_dir)
    variant_dir.mkdir(parents=True)
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = os.fspath(src)
    cmd = [sys.executable, os.fspath(Path(__file__).resolve()), "--child", variant, "--work", os.fspath(work),
           "--calibration-size", str(args.calibration_size), "--method", args.method]
    if args.target:
        cmd += ["--target", args.target]
    import resource

    samples: list[tuple[float, int]] = []
    load_before = os.getloadavg()
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.time()
    with open(variant_dir / "stderr.txt", "wb") as err:
        proc = subprocess.Popen(cmd, env=env, stdout=err, stderr=err)
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            total = 0
            try:
                for p in [root, *root.children(recursive=True)]:
                    try:
                        total += p.memory_info().rss
                    except psutil.Error:
                        pass
            except psutil.Error:
                pass
            samples.append((time.time(), total))
            time.sleep(0.02)
    wall = time.time() - t0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)  # the child and every process it waited for
    cpu_s = (usage.ru_utime + usage.ru_stime) - (usage_before.ru_utime + usage_before.ru_stime)
    if proc.returncode != 0:
        tail = (variant_dir / "stderr.txt").read_text(errors="replace")[-2000:]
        raise SystemExit(f"{variant} export failed (exit {proc.returncode}):\n{tail}")
    record = json.loads((variant_dir / "record.json").read_text())
    stages = []
    for stage in record["timings"]:
        inside = [rss for t, rss in samples if stage["started"] <= t <= stage["started"] + stage["seconds"]]
        stages.append({"stage": stage["stage"], "seconds": stage["seconds"],
                       "peak_rss_mb": round(max(inside) / 2**20, 1) if inside else None})
    return {"variant": variant, "source": _describe(src), "edgexfer": _describe(Path(record["edgexfer"]).parent),
            "process_wall_seconds": round(wall, 1), "export_seconds": round(record["seconds"], 1),
            "cpu_seconds": round(cpu_s, 1),
            "peak_rss_mb": round(max(rss for _, rss in samples) / 2**20, 1), "stages": stages,
            "artifacts": record["artifacts"], "int8_fallback": record["int8_fallback"],
            "loadavg_before": [round(v, 2) for v in load_before], "loadavg_after": [round(v, 2) for v in os.getloadavg()]}


def calibration_profile(export_dir: Path, calibration_dir: Path) -> dict:
    """Where the INT8 calibration pass spends its time, for one chunk of images: ONNX Runtime's kernel profile of
    the calibration graph (the pre-processed FP32 with every calibrated tensor as an output, run unoptimized as
    `edgexfer.export.int8.calibrate.calibrate` runs it) by op type, the session call as a whole (kernels plus copying
    the outputs out), and the numpy histograms of the entropy method on that chunk."""
    import collections

    import numpy as np
    import onnx

    from edgexfer.data.calibration import load_calibration_set
    from edgexfer.export.int8.calibrate import CALIBRATION_CHUNK, _ValueHistograms, calibration_graph
    from edgexfer.export.int8.quantize import preprocess
    from edgexfer.runtime.ort_runtime import OrtRuntime, kernel_profile

    with tempfile.TemporaryDirectory(prefix="edgexfer-calprofile-") as tmp:
        prep, graph = Path(tmp) / "prep.onnx", Path(tmp) / "calibration.onnx"
        preprocess(export_dir / "model_fp32.onnx", prep)
        model, names, fetch = calibration_graph(prep, with_values=True)
        onnx.save(model, os.fspath(graph))
        calset = load_calibration_set(next(calibration_dir.glob("*.npz")))
        chunk = np.ascontiguousarray(next(calset.iter_batches(CALIBRATION_CHUNK))[0], dtype=np.float32)
        by_op: collections.Counter[str] = collections.Counter()
        for event in kernel_profile(graph, chunk, iterations=3, warmup=1, optimization="disable"):
            by_op[event.op_type] += event.ms / 3
        with OrtRuntime(graph, optimization="disable", spinning=False) as runtime:
            feed = {runtime.input_spec.name: chunk}
            runtime.session.run(fetch, feed)
            calls = []
            for _ in range(3):
                t0 = time.perf_counter()
                values = dict(zip(fetch, runtime.session.run(fetch, feed), strict=True))
                calls.append(time.perf_counter() - t0)
        values[runtime.input_spec.name] = chunk
        histograms = _ValueHistograms(num_bins=128)
        t0 = time.perf_counter()
        for name in names:
            histograms.add(name, values[name], float(values[f"{name}__edgexfer_ReduceMin"]),
                           float(values[f"{name}__edgexfer_ReduceMax"]))
        histogram_s = time.perf_counter() - t0
    return {"images": len(chunk), "tensors": len(names),
            "values_per_image": int(sum(values[n].size for n in names) / len(chunk)),
            "session_call_ms": round(float(np.median(calls)) * 1000, 1),
            "kernel_ms_by_op": {op: round(ms, 1) for op, ms in by_op.most_common()},
            "histogram_ms": round(histogram_s * 1000, 1)}


def markdown(result: dict) -> str:
    lines = ["# ResNet50 export at 224 px: FP32 + FP16 + INT8, side by side", "",
             f"Command: `{result['command']}`", "",
             f"Machine: {result['machine']['processor']} ({', '.join(result['machine'].get('int8_instructions') or [])}), "
             f"{result['machine']['cores']} cores (load average "
             f"{result['machine']['loadavg_start']} at start, {result['machine']['loadavg_end']} at end). "
             f"Calibration: {result['calibration']['size']} images, {result['calibration']['method']}. Each export "
             "ran alone in a fresh process; peak = resident memory of its whole process tree, sampled every 20 ms.", "",
             "Wall time depends on what else the cores run; CPU seconds (user + system of the export's "
             "process tree) much less.", "",
             "| variant | export s (wall) | CPU s | peak RSS MB | INT8 agreement | FP32 parity max abs diff |",
             "|---|---:|---:|---:|---:|---:|"]
    for v in result["variants"]:
        int8 = next((a for a in v["artifacts"] if a["name"] == "int8"), {})
        fp32 = next((a for a in v["artifacts"] if a["name"] == "fp32"), {})
        lines.append(f"| {v['variant']} ({v['source']}) | {v['export_seconds']:.1f} | {v['cpu_seconds']:.0f} | "
                     f"{v['peak_rss_mb']:.0f} | "
                     f"{(int8.get('parity') or {}).get('agreement', float('nan')) * 100:.1f}% | "
                     f"{(fp32.get('parity') or {}).get('max_abs_diff', float('nan')):.1e} |")
    lines += ["", "Stages (seconds / peak RSS MB):", "",
              "| stage | " + " | ".join(v["variant"] for v in result["variants"]) + " |",
              "|---|" + "---:|" * len(result["variants"])]
    names: list[str] = []
    for v in result["variants"]:
        names += [s["stage"] for s in v["stages"] if s["stage"] not in names]
    for name in names:
        cells = []
        for v in result["variants"]:
            s = next((s for s in v["stages"] if s["stage"] == name), None)
            cells.append(f"{s['seconds']:.1f} / {s['peak_rss_mb'] or 0:.0f}" if s else "–")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    t = result.get("targets")
    if t:
        lines += ["", "## Targets", "",
                  f"- peak RSS {t['peak_rss_mb']:.0f} MB (target ≤ {TARGET_PEAK_MB} MB): {'met' if t['peak_met'] else 'NOT met'}",
                  f"- wall time {t['export_seconds']:.1f} s = {t['wall_ratio']:.3f} × the baseline's "
                  f"{t['baseline_seconds']:.1f} s (target ≤ 1/3): {'met' if t['wall_met'] else 'NOT met'}",
                  f"- CPU time {t['cpu_seconds']:.0f} s = {t['cpu_ratio']:.3f} × the baseline's {t['baseline_cpu_seconds']:.0f} s "
                  f"(the same comparison with the other jobs' share of the cores taken out): "
                  f"{'≤ 1/3' if t['cpu_ratio'] <= TARGET_WALL_RATIO else 'above 1/3'}"]
    p = result.get("calibration_pass")
    if p:
        stage = next((st["seconds"] for st in result["variants"][-1]["stages"] if st["stage"] == "int8_quantize_round0"), None)
        chunks = result["calibration"]["size"] / p["images"]
        kernels = ", ".join(f"{op} {ms:.0f}" for op, ms in list(p["kernel_ms_by_op"].items())[:5])
        lines += ["", "## Where the INT8 calibration pass goes (this checkout)", "",
                  f"One chunk of {p['images']} images through the calibration graph ({p['tensors']} tensors calibrated, "
                  f"{p['values_per_image'] / 1e6:.1f} M values per image, run unoptimized as `calibrate` runs it): the "
                  f"session call takes {p['session_call_ms']:.0f} ms, its kernels (ONNX Runtime profile, ms) {kernels}; "
                  f"the entropy histograms of those values take {p['histogram_ms']:.0f} ms in numpy. "
                  f"× {chunks:.1f} chunks ≈ {(p['session_call_ms'] + p['histogram_ms']) * chunks / 1000:.0f} s"
                  + (f" of the stage's {stage:.0f} s (the rest: quantizing the graph)." if stage else ".")]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="checkout of the code to compare with (its edgexfer is put first on PYTHONPATH)")
    parser.add_argument("--per-class", type=int, default=240, help="synthetic images per class (3 classes)")
    parser.add_argument("--calibration-size", type=int, default=500)
    parser.add_argument("--method", default="entropy", choices=["entropy", "minmax", "percentile"])
    parser.add_argument("--target", default=None, choices=["cpu", "tensorrt"])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "export_resnet50")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_export(args)

    work = args.work or Path(tempfile.mkdtemp(prefix="edgexfer-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    loadavg_start = [round(v, 2) for v in os.getloadavg()]
    t0 = time.time()
    subprocess.run([sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[1]); import bench_export_resnet50 as b; "
                    "from pathlib import Path; b.make_resnet50_run(Path(sys.argv[2]), int(sys.argv[3]))",
                    os.fspath(Path(__file__).parent), os.fspath(work), str(args.per_class)], check=True)
    setup_s = time.time() - t0

    variants = []
    if args.baseline_src is not None:
        print(f"baseline export ({args.baseline_src}) ...", file=sys.stderr, flush=True)
        variants.append(measure("baseline", args.baseline_src.resolve(), args, work))
        print(f"  {variants[-1]['export_seconds']} s, peak {variants[-1]['peak_rss_mb']} MB", file=sys.stderr, flush=True)
    print("this checkout's export ...", file=sys.stderr, flush=True)
    variants.append(measure("current", None, args, work))
    print(f"  {variants[-1]['export_seconds']} s, peak {variants[-1]['peak_rss_mb']} MB", file=sys.stderr, flush=True)

    print("calibration pass profile ...", file=sys.stderr, flush=True)
    profile = calibration_profile(work / "current" / "exported", work / "current" / "calibration")

    from edgexfer.versions import library_versions, machine_info

    given, shown = list(argv if argv is not None else sys.argv[1:]), []
    while given:  # machine-specific paths are left out of the recorded command
        arg = given.pop(0)
        if arg in ("--baseline-src", "--work", "--out"):
            given = given[1:]
        elif not arg.startswith(("--baseline-src=", "--work=", "--out=")):
            shown.append(arg)
    result = {
        "command": " ".join([".venv/bin/python", "benchmarks/bench_export_resnet50.py",
                             *(["--baseline-src", "BASELINE_CHECKOUT"] if args.baseline_src else []),
                             *shown]),
        "model": "ResNet50 224x224, weights=None, 3 classes",
        "machine": {**machine_info(), "cores": len(os.sched_getaffinity(0)),
                    "python": platform.python_version(), "loadavg_start": loadavg_start,
                    "loadavg_end": [round(v, 2) for v in os.getloadavg()]},
        "calibration": {"size": args.calibration_size, "method": args.method},
        "setup_seconds": round(setup_s, 1),
        "variants": variants,
        "calibration_pass": profile,
        "versions": library_versions(),
    }
    current = variants[-1]
    if len(variants) > 1:
        base = variants[0]
        result["targets"] = {"peak_rss_mb": current["peak_rss_mb"], "peak_met": current["peak_rss_mb"] <= TARGET_PEAK_MB,
                             "export_seconds": current["export_seconds"], "baseline_seconds": base["export_seconds"],
                             "wall_ratio": round(current["export_seconds"] / base["export_seconds"], 3),
                             "wall_met": current["export_seconds"] <= base["export_seconds"] * TARGET_WALL_RATIO,
                             "baseline_peak_rss_mb": base["peak_rss_mb"], "cpu_seconds": current["cpu_seconds"],
                             "baseline_cpu_seconds": base["cpu_seconds"],
                             "cpu_ratio": round(current["cpu_seconds"] / base["cpu_seconds"], 3)}
    from edgexfer.io import write_json, write_text

    write_json(args.out.with_suffix(".json"), result)
    write_text(args.out.with_suffix(".md"), markdown(result))
    print(markdown(result))
    return 0


def _describe(src: Path | None) -> str:
    """A checkout as its commit (machine paths stay out of the results)."""
    where = src if src is not None else ROOT
    try:
        commit = subprocess.run(["git", "-C", os.fspath(where), "rev-parse", "--short", "HEAD"], capture_output=True,
                                text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown commit"
    return f"{'this checkout' if src is None else 'baseline checkout'} at {commit}"



if __name__ == "__main__":
    sys.exit(main())

"""Export ResNet50 at 224 px through every stage and report wall time per stage and peak memory.

    TF_CPP_MIN_LOG_LEVEL=2 .venv/bin/python benchmarks/bench_export_resnet50.py [--work DIR]
        [--calibration-size 500] [--method entropy] [--target cpu] [--engine]

ResNet50 is built with weights=None (random init: no download; export cost does not depend on the
weight values) around a synthetic demo data set at 224 px, written as a finished run; then
`edgexfer.export.export_run` makes FP32, FP16 and INT8 ONNX (and TensorRT engines with --engine
where TensorRT and a GPU exist). Stage times come from the manifest's ``timings``; memory is the
process RSS sampled every 20 ms, its peak per stage and overall. Results: ``<work>/results.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


class RssSampler(threading.Thread):
    """Samples this process's resident memory so each stage's peak can be read afterwards."""

    def __init__(self, interval: float = 0.02):
        super().__init__(daemon=True)
        import psutil

        self._process = psutil.Process()
        self.interval = interval
        self.samples: list[tuple[float, int]] = []
        self._halt = threading.Event()

    def run(self) -> None:
        while not self._halt.is_set():
            self.samples.append((time.time(), self._process.memory_info().rss))
            time.sleep(self.interval)

    def stop(self) -> None:
        self._halt.set()
        self.join()

    def peak_between(self, start: float, end: float) -> int | None:
        inside = [rss for t, rss in self.samples if start <= t <= end]
        return max(inside) if inside else None


def make_resnet50_run(work: Path, per_class: int, size: int = 224) -> Path:
    from edgexfer.backbones import build_model
    from edgexfer.data.sources import discover
    from edgexfer.data.splits import make_split
    from edgexfer.data.synthetic import generate_demo
    from edgexfer.io import sha256_file, write_json

    data = generate_demo(work / "data", per_class=per_class, size=size, seed=0)
    split = make_split(discover(data), fractions=(0.7, 0.2, 0.1), seed=0)
    run_dir = work / "run-resnet50"
    run_dir.mkdir(parents=True, exist_ok=True)
    model = build_model("resnet50", num_classes=len(split.classes), image_size=size, weights="none")
    model.save(run_dir / "model.keras")
    split.save(run_dir / "split.json")
    write_json(run_dir / "labels.json", split.classes)
    write_json(run_dir / "run.json", {
        "schema": "edgexfer.run/1", "backbone": "resnet50", "image_size": [size, size], "classes": split.classes,
        "head": "gap", "weights": "none", "model_file": "model.keras",
        "model_sha256": sha256_file(run_dir / "model.keras"), "split_sha256": sha256_file(run_dir / "split.json"),
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "versions": {},
    })
    return run_dir


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, default=None, help="working folder (default: a temporary one)")
    parser.add_argument("--per-class", type=int, default=240, help="synthetic images per class (3 classes)")
    parser.add_argument("--calibration-size", type=int, default=500)
    parser.add_argument("--method", default="entropy", choices=["entropy", "minmax", "percentile"])
    parser.add_argument("--target", default=None, choices=["cpu", "tensorrt"])
    parser.add_argument("--engine", action="store_true")
    args = parser.parse_args()

    work = args.work or Path(tempfile.mkdtemp(prefix="edgexfer-bench-export-"))
    work.mkdir(parents=True, exist_ok=True)
    sampler = RssSampler()
    sampler.start()
    t0 = time.time()
    run_dir = make_resnet50_run(work, args.per_class)
    setup_s = time.time() - t0

    from edgexfer.export import ExportConfig, export_run
    from edgexfer.export.pipeline import summary_lines

    config = ExportConfig(run_dir=run_dir, out=work / "exported", fp16=True, int8=True, engine=args.engine,
                          target=args.target, calibration=work / "calibration",
                          calibration_size=args.calibration_size, calibration_method=args.method, progress=True)
    started = time.time()
    try:
        manifest = export_run(config)
    finally:
        total_s = time.time() - started
        sampler.stop()

    stages = []
    for stage in manifest["timings"]:
        peak = sampler.peak_between(stage["started"], stage["started"] + stage["seconds"])
        stages.append({"stage": stage["stage"], "seconds": stage["seconds"],
                       "peak_rss_mb": round(peak / 2**20, 1) if peak else None})
    overall_peak = max(rss for _, rss in sampler.samples)
    import resource

    result = {
        "model": "ResNet50 224x224, weights=None, 3 classes",
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                    "python": platform.python_version()},
        "calibration": {"size": args.calibration_size, "method": args.method},
        "setup_seconds": round(setup_s, 1),
        "export_seconds": round(total_s, 1),
        "stages": stages,
        "peak_rss_mb": round(overall_peak / 2**20, 1),
        "peak_rss_mb_getrusage": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "artifacts": [{k: a.get(k) for k in ("name", "file", "size_bytes", "parity", "excluded_nodes")}
                      for a in manifest["artifacts"]],
        "int8_fallback": next((a["quantization"]["fallback"] for a in manifest["artifacts"] if a["name"] == "int8"), None),
        "versions": {k: manifest["versions"].get(k) for k in ("tensorflow", "tf2onnx", "onnx", "onnxruntime-gpu",
                                                               "onnxconverter-common")},
    }
    (work / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nResNet50 @224 export, {os.cpu_count()} cores; work folder {work}")
    print(f"{'stage':<28}{'seconds':>10}{'peak RSS MB':>14}")
    for s in stages:
        print(f"{s['stage']:<28}{s['seconds']:>10.1f}{(s['peak_rss_mb'] or 0):>14.0f}")
    print(f"{'export total':<28}{total_s:>10.1f}{overall_peak / 2**20:>14.0f}")
    for line in summary_lines(manifest, config.export_dir):
        print(line)
    print(f"results: {work / 'results.json'}")


if __name__ == "__main__":
    sys.exit(main())

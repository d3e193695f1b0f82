"""Wall time and peak memory of one small study on ``--executor local`` and on ``--executor ray``.

    .venv/bin/python benchmarks/study_executors.py [--sizes test,larger] [--repeats 1]

The study: two small CNNs (``tinycnn`` and the tests' ``studycnn``) compared on the synthetic demo data
(fine-tune, export FP32/FP16/INT8, bench on ONNX Runtime CPU). ``test`` is the configuration of
tests/studies/test_ray_studies.py (12 images per class, 32 px, one epoch); ``larger`` trains longer on more
images (60 per class, 64 px, 3 + 1 epochs) so that the jobs, not the start-up, take the time.

Each variant runs in a fresh child process (``--child``), one at a time, into a new study folder:
the wall time includes importing TensorFlow (local) or starting Ray and its workers (ray), as a user
would see them. This process samples the resident memory of the child's whole process tree (the
driver, Ray's own processes and its workers) every 100 ms. Variants:

- ``local``: the default, jobs one after another in the driver;
- ``ray``: a local Ray instance with 2 CPUs, 1 CPU per job (the two backbones' jobs side by side);
- ``ray-serial``: the same instance, 2 CPUs per job (one job at a time): Ray's overhead alone.

Results: ``benchmarks/results/study_executors.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
RESULTS = ROOT / "benchmarks" / "results"
VARIANTS = {"local": None, "ray": 1.0, "ray-serial": 2.0}  # variant -> CPUs per Ray job
SIZES = {
    "test": dict(demo_per_class=12, demo_size=32, training=dict(image_size=32, epochs=1, fine_tune_epochs=0)),
    "larger": dict(demo_per_class=60, demo_size=64, training=dict(image_size=64, epochs=3, fine_tune_epochs=1)),
}


def child(variant: str, size: str, out: Path) -> None:
    """One study, in this (fresh) process."""
    sys.path.insert(0, str(TESTS))
    from fixtures_study import SECOND_BACKBONE, register_studycnn

    from edgexfer.studies.compare import CompareConfig, run_compare
    from edgexfer.studies.executors import OBJECT_STORE_BYTES, ExecutorConfig

    register_studycnn()
    spec = SIZES[size]
    executor = ExecutorConfig()
    if VARIANTS[variant] is not None:
        import ray

        path = os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        ray.init(address="local", num_cpus=2, object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
                 logging_level="WARNING", runtime_env={"env_vars": {"PYTHONPATH": path},
                                                       "worker_process_setup_hook": "fixtures_study.register_studycnn"})
        executor = ExecutorConfig(kind="ray", cpus_per_job=float(VARIANTS[variant]))
    config = CompareConfig(
        data="demo", backbones=["tinycnn", SECOND_BACKBONE], out=out, demo_per_class=spec["demo_per_class"],
        demo_size=spec["demo_size"],
        finetune={**spec["training"], "batch_size": 16, "weights": "none", "verbose": 0, "early_stopping_patience": 0},
        export={"calibration_size": 12, "parity_samples": 8, "progress": False},
        bench={"runtimes": ["ort-cpu"], "batch_sizes": (1,), "warmup": 1, "iterations": 5, "end_to_end_images": 2,
               "progress": False},
        executor=executor, log=lambda line: None)
    try:
        run_compare(config)
    except Exception as error:  # a gate the tiny models fail is a result here, not a failure of the run
        if not (out / "results.json").is_file():
            raise
        print(f"note: {error}", file=sys.stderr)


def measure(variant: str, size: str, work: Path) -> dict:
    import psutil

    out = work / f"{size}-{variant}"
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--child", variant, size, str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = [0]

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while proc.poll() is None:
            try:
                tree = [root, *root.children(recursive=True)]
                peak[0] = max(peak[0], sum(p.memory_info().rss for p in tree if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    _, stderr = proc.communicate()
    wall = time.perf_counter() - start
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{size}/{variant} failed:\n{stderr[-3000:]}")
    from edgexfer.contracts.study import read_study_results

    results = read_study_results(out)
    durations = {b["name"]: b.get("durations_s") for b in results["backbones"]}
    return {"variant": variant, "size": size, "wall_s": round(wall, 1), "peak_rss_mb": round(peak[0] / 2**20),
            "stage_seconds": {name: {k: round(v, 1) for k, v in (d or {}).items()} for name, d in durations.items()},
            "accuracy": {r["backbone"] + " " + r["precision"]: r["accuracy"] for r in results["results"]}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("VARIANT", "SIZE", "OUT"), help=argparse.SUPPRESS)
    parser.add_argument("--sizes", default="test,larger")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.child:
        child(args.child[0], args.child[1], Path(args.child[2]))
        return
    runs = []
    with tempfile.TemporaryDirectory(prefix="study-executors-") as tmp:
        for repeat in range(args.repeats):
            for size in args.sizes.split(","):
                for variant in VARIANTS:
                    work = Path(tmp) / f"r{repeat}"
                    work.mkdir(exist_ok=True)
                    run = measure(variant, size, work)
                    run["repeat"] = repeat
                    print(json.dumps(run), flush=True)
                    runs.append(run)
    import psutil

    record = {"command": "python benchmarks/study_executors.py " + " ".join(sys.argv[1:]),
              "machine": {"processor": platform.processor() or platform.machine(), "cores": os.cpu_count(),
                          "memory_gb": round(psutil.virtual_memory().total / 2**30), "load_avg_after": os.getloadavg()},
              "runs": runs}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "study_executors.json").write_text(json.dumps(record, indent=2) + "\n")
    lines = ["| size | executor | wall (s) | peak RSS, process tree (MB) |", "|---|---|---:|---:|"]
    lines += [f"| {r['size']} | {r['variant']} | {r['wall_s']} | {r['peak_rss_mb']} |" for r in runs]
    print("\n".join(lines))


if __name__ == "__main__":
    main()

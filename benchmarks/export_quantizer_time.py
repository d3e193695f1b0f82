"""What `--quantizer auto` (ours and NNCF's, judged alike) costs over `--quantizer edgexfer` on a tinycnn export.

    PYTHONPATH=. .venv/bin/python benchmarks/export_quantizer_time.py [--rounds 3]

A tinycnn run at 48 px (the demo set, 40 images per class, 2 + 1 epochs: the test suite's ``tiny_run``) is exported
FP32 + INT8 (target ``cpu``, 64 calibration images, no fallback rounds) with each quantizer, alternating, in one
process (the first round also pays the imports and is reported apart). Per export: the wall time, the seconds of
the NNCF steps (from the manifest's ``timings``), which quantizer was kept and each candidate's agreement with FP32.
Results: ``benchmarks/results/export_quantizer_time.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

from edgexfer.config import FinetuneConfig
from edgexfer.data.synthetic import generate_demo
from edgexfer.export import ExportConfig, export_run
from edgexfer.io import write_json
from edgexfer.train import finetune
from edgexfer.versions import library_versions, onnxruntime_version

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgexfer-quantizer-time-") as tmp:
        root = Path(tmp)
        data = generate_demo(root / "demo", per_class=40, size=64, seed=0)
        run = finetune(FinetuneConfig(data=str(data), backbone="tinycnn", out=str(root / "run"), image_size=48,
                                      epochs=2, fine_tune_epochs=1, batch_size=16, learning_rate=3e-3,
                                      fine_tune_learning_rate=1e-3, augment=False, early_stopping_patience=0,
                                      seed=0, verbose=0), log=None).run_dir
        for round_no in range(args.rounds):
            for quantizer in ("edgexfer", "auto"):
                out = root / f"out_{quantizer}"
                started = time.perf_counter()
                export_run(ExportConfig(run_dir=run, out=out, int8=True, target="cpu", calibration=root / "cal",
                                        calibration_size=64, int8_max_rounds=0, progress=False, quantizer=quantizer))
                seconds = time.perf_counter() - started
                manifest = json.loads((out / "manifest.json").read_text())
                int8 = next(a for a in manifest["artifacts"] if a["name"] == "int8")
                rows.append({"round": round_no, "quantizer": quantizer, "seconds": round(seconds, 2),
                             "nncf_seconds": round(sum(s["seconds"] for s in manifest["timings"]
                                                       if "nncf" in s["stage"]), 2),
                             "kept": int8["quantizer"]["name"],
                             "candidates": [{k: c[k] for k in ("quantizer", "agreed", "n")}
                                            for c in int8["quantizer"]["candidates"]]})
                print(rows[-1], flush=True)
    timed = [r for r in rows if r["round"] > 0]
    median = {q: statistics.median(r["seconds"] for r in timed if r["quantizer"] == q) for q in ("edgexfer", "auto")}
    versions = {"onnxruntime": onnxruntime_version(), **library_versions(("nncf", "tensorflow"))}
    record = {"machine": {"processor": platform.processor() or platform.machine(), "cpu": _cpu_name()},
              "versions": versions, "rows": rows, "median_seconds_after_round0": median}
    RESULTS.mkdir(exist_ok=True)
    write_json(RESULTS / "export_quantizer_time.json", record)
    lines = ["# Export time: --quantizer edgexfer against auto (tinycnn, 48 px, 64 calibration images)", "",
             f"CPU: {record['machine']['cpu']}; {', '.join(f'{k} {v}' for k, v in versions.items())}.", "",
             "`PYTHONPATH=. .venv/bin/python benchmarks/export_quantizer_time.py --rounds "
             f"{args.rounds}`", "",
             "| round | quantizer | export s | NNCF steps s | kept | candidates (agreed/n) |", "|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['round']} | {r['quantizer']} | {r['seconds']:.2f} | {r['nncf_seconds']:.2f} | {r['kept']} | "
                     + ", ".join(f"{c['quantizer']} {c['agreed']}/{c['n']}" for c in r["candidates"]) + " |")
    lines += ["", f"Median after round 0: edgexfer {median['edgexfer']:.2f} s, auto {median['auto']:.2f} s "
              "(a shared machine: the rounds spread by seconds).",
              "NNCF steps: its quantization and the check of its file on the judging images (timings `int8_*nncf*`)."]
    (RESULTS / "export_quantizer_time.md").write_text("\n".join(lines) + "\n")


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


if __name__ == "__main__":
    main()

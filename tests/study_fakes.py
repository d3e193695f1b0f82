"""Stand-in study stages (no TensorFlow) that write the files of the stage contracts (run.json + model, manifest +
artifacts, bench results.json), so a study's completeness checks run against the real formats."""

from __future__ import annotations

from pathlib import Path

import edgexfer.contracts.bench as bench_contract
from edgexfer.errors import EdgexferError, GateFailed
from edgexfer.io import read_json, sha256_file, write_json
from edgexfer.studies.compare import CompareConfig, Stages


class FakeStages:
    """Stage stand-ins that write contract-shaped outputs and count their calls."""

    def __init__(self, fail_export_for: str | None = None, break_gate_for: str | None = None,
                 recommend: bool | str = False):
        self.calls: dict[str, list[str]] = {"finetune": [], "export": [], "bench": []}
        self.fail_export_for = fail_export_for
        self.break_gate_for = break_gate_for
        # the bench's "recommended": False leaves it out (a bench written before it), True the bench's own rule,
        # an artifact name that artifact's row (as a bench whose rule picked it would)
        self.recommend = recommend

    def finetune(self, cfg):
        out = Path(cfg.out)
        self.calls["finetune"].append(cfg.backbone)
        out.mkdir(parents=True, exist_ok=True)
        (out / "split.json").write_bytes(Path(cfg.split).read_bytes())
        (out / "model.keras").write_bytes(f"{cfg.backbone}-{cfg.weights}-{cfg.split}".encode())
        write_json(out / "metrics.json", {"accuracy": 0.8, "loss": 0.5, "precision_macro": 0.8, "recall_macro": 0.8,
                                          "f1": 0.78, "auc": 0.9, "n": 30, "confusion_matrix": [[5, 0, 0], [0, 5, 0], [0, 0, 5]]})
        (out / "history.csv").write_text("epoch,phase,accuracy,loss,val_accuracy,val_loss\n"
                                         "0,frozen,0.5,1.0,0.5,1.1\n1,finetune,0.7,0.8,0.6,0.9\n")
        write_json(out / "run.json", {"schema": "edgexfer.run/1", "backbone": cfg.backbone, "image_size": [32, 32],
                                      "classes": ["normal", "pneumonia", "covid"],
                                      "weights": cfg.weights, "model_file": "model.keras",
                                      "model_sha256": sha256_file(out / "model.keras")})

    def export(self, cfg):
        self.calls["export"].append(Path(cfg.run_dir).name)
        if self.fail_export_for and self.fail_export_for in str(cfg.run_dir):
            raise EdgexferError("export failed on purpose", "fix it")
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        run = read_json(Path(cfg.run_dir) / "run.json")
        artifacts = []
        for precision in ("fp32", "fp16", "int8"):
            f = out / f"model_{precision}.onnx"
            f.write_bytes(precision.encode() * 10)
            artifacts.append({"name": precision, "file": f.name, "precision": precision, "sha256": sha256_file(f),
                              "size_bytes": f.stat().st_size})
        write_json(out / "manifest.json", {"schema": "edgexfer.export/1", "artifacts": artifacts, "input": {},
                                           "source_run": {"model_sha256": run["model_sha256"], "classes": run["classes"],
                                                          "image_size": run["image_size"]}})

    def bench(self, cfg):
        name = Path(cfg.export_dir).name
        self.calls["bench"].append(name)
        fast = 1.0 if name == "alpha" else 3.0
        rows = []
        for precision, speed in (("fp32", 1.0), ("fp16", 0.9), ("int8", 0.5)):
            broken = precision == "int8" and name == self.break_gate_for
            p50 = fast * speed
            rows.append({"artifact": precision, "precision": precision, "runtime": "ort-cpu", "provider": "cpu",
                         "accuracy": 0.7 if broken else 0.8 + (0.05 if name == "beta" else 0.0),
                         "precision_macro": 0.8, "recall_macro": 0.8, "f1": 0.8, "auc": 0.9, "per_class": {},
                         "agreement": 1.0, "max_abs_diff": 0.0,
                         "latency_ms": {"1": {"p50": p50, "p90": p50, "p99": p50, "mean": p50}},
                         "throughput_ips": {"1": 100.0}, "end_to_end_ms": None, "size_bytes": 1000,
                         "peak_rss_mb": None, "threads": None, "confusion_matrix": [[5, 0, 0], [0, 5, 0], [0, 0, 5]],
                         "gate": {"passed": not broken, "reasons": ["accuracy dropped"] if broken else []}})
        results = {
            "schema": "edgexfer.bench/1", "reference": "fp32", "machine": {}, "data": {}, "skipped": [],
            "thresholds": {"max_accuracy_drop": 0.01, "max_f1_drop": 0.01, "max_recall_drop": 0.02}, "results": rows}
        if self.recommend is not False:
            typed = bench_contract.bench_rows(results)
            if isinstance(self.recommend, str):
                typed = [r for r in typed if r.artifact == self.recommend]
            chosen = bench_contract.recommend(typed)
            results["recommended"] = chosen.to_dict() if chosen is not None else None
        write_json(Path(cfg.out) / "results.json", results)
        if name == self.break_gate_for:
            raise GateFailed("accuracy gate failed for int8", "see the table")

    def tune(self, **kwargs):
        raise AssertionError("not used here")

    def stages(self) -> Stages:
        return Stages(finetune=self.finetune, export=self.export, bench=self.bench, tune=self.tune,
                      check_backbones=lambda names, image_size=None: None,
                      resolve_weights=lambda name, weights: str(weights or "none"))


def config(out: Path, **overrides) -> CompareConfig:
    options = dict(data="demo", backbones=["alpha", "beta"], out=out, demo_per_class=6, demo_size=32,
                   finetune={"epochs": 1, "weights": "none"}, bench={"iterations": 5}, latency_budget_ms=1.2,
                   log=lambda line: None)
    options.update(overrides)
    return CompareConfig(**options)


def mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*")
            if p.is_file() and p.parts[len(root.parts)] in ("runs", "exported", "benchmarks", "state")}


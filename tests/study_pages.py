"""Study and bench results as the stages write them, and a parser of the pages they render: shared by the report,
study and hostile-input tests."""

from __future__ import annotations

from html.parser import HTMLParser

from edgexfer.contracts.study import SCHEMA as STUDY_SCHEMA
from edgexfer.studies.recommend import refresh_decisions

CLASSES = ["normal", "pneumonia", "nodule"]


class PageStructure(HTMLParser):
    """Collects what the tests check: tag balance, headings, tables, images."""

    VOID = {"meta", "img", "br", "hr", "link", "input"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.images: list[dict[str, str]] = []
        self.headings: list[str] = []
        self.tables = 0
        self.doctype = None
        self._heading: list[str] | None = None

    def handle_decl(self, decl):
        self.doctype = decl

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))
        if tag == "table":
            self.tables += 1
        if tag in ("h1", "h2", "h3"):
            self._heading = []
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs))

    def handle_endtag(self, tag):
        if tag in self.VOID:
            return
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()
        if tag in ("h1", "h2", "h3") and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None:
            self._heading.append(data)


def parse_page(text: str) -> PageStructure:
    page = PageStructure()
    page.feed(text)
    page.close()
    return page


def bench_row(backbone, precision, accuracy, p50, passed=True, runtime="ort-cpu"):
    cm = [[8, 1, 1], [1, 8, 1], [0, 1, 9]]
    return {
        "backbone": backbone, "artifact": precision, "precision": precision, "runtime": runtime,
        "provider": "CPUExecutionProvider", "accuracy": accuracy, "loss": 0.4, "precision_macro": accuracy,
        "recall_macro": accuracy, "f1": accuracy - 0.01, "auc": 0.95, "agreement": 1.0,
        "latency_p50_ms": p50, "throughput_ips": 1000.0 / p50, "size_bytes": 2_000_000, "threads": 2,
        "gate_passed": passed, "gate_reasons": [] if passed else ["accuracy dropped 0.05 > 0.01"],
        "confusion_matrix": cm,
    }


def history(n=4):
    return [{"epoch": i, "phase": "frozen" if i < 2 else "finetune", "accuracy": 0.5 + 0.1 * i, "loss": 1.0 - 0.1 * i,
             "val_accuracy": 0.45 + 0.1 * i, "val_loss": 1.1 - 0.1 * i} for i in range(n)]


def study_results(budget=5.0):
    rows = [
        bench_row("tinycnn", "fp32", 0.80, 2.0), bench_row("tinycnn", "fp16", 0.80, 2.5),
        bench_row("tinycnn", "int8", 0.79, 0.9),
        bench_row("resnet50", "fp32", 0.90, 10.0), bench_row("resnet50", "fp16", 0.90, 12.0),
        bench_row("resnet50", "int8", 0.84, 4.0, passed=False),
        bench_row("resnet50", "fp32", 0.90, 80.0, runtime="keras"),
    ]
    results = {
        "schema": STUDY_SCHEMA, "title": "Backbone comparison", "created": "2026-01-01T00:00:00Z",
        "data": {"source": {"root": "/data/cxr"}, "classes": CLASSES, "counts": {"train": 70, "val": 20, "test": 30}},
        "latency_budget_ms": budget, "machine": {"processor": "test cpu"}, "versions": {"edgexfer": "0.1.0"},
        "backbones": [
            {"name": name, "status": "done", "run_dir": f"backbones/{name}/run", "export_dir": f"backbones/{name}/export",
             "bench_dir": f"backbones/{name}/bench", "image_size": [32, 32], "weights": "none",
             "history": history(), "test_metrics": {"accuracy": 0.8, "loss": 0.5, "f1": 0.79, "auc": 0.9},
             "durations_s": {"finetune": 12.0, "export": 3.0, "bench": 2.0}}
            for name in ("tinycnn", "resnet50")
        ],
        "results": rows,
        "tuning": {"tinycnn": {"tuner": "hyperband", "objective": "val_accuracy", "max_trials": 2, "epochs": 1,
                               "trials": [{"trial_id": "0", "status": "COMPLETED", "score": 0.7,
                                           "hyperparameters": {"learning_rate": 1e-3, "dropout": 0.2}},
                                          {"trial_id": "1", "status": "COMPLETED", "score": 0.8,
                                           "hyperparameters": {"learning_rate": 1e-4, "dropout": 0.3}}],
                               "best": {"trial_id": "1", "score": 0.8,
                                        "hyperparameters": {"learning_rate": 1e-4, "dropout": 0.3}}}},
        "limited_data": {"fractions": [0.25, 1.0], "transfer_weights": "weights.h5", "points": [
            {"backbone": "tinycnn", "weights": w, "transfer": w != "none", "fraction": f, "n_train": int(70 * f),
             "accuracy": acc, "f1": acc - 0.02}
            for w, f, acc in (("weights.h5", 0.25, 0.7), ("weights.h5", 1.0, 0.85), ("none", 0.25, 0.5),
                              ("none", 1.0, 0.8))]},
    }
    return refresh_decisions(results)


def bench_results():
    """A bench results.json (contract section 6) of two artifacts, as edgexfer bench writes it."""
    def row(artifact, accuracy, p50):
        return {
            "artifact": artifact, "precision": artifact, "target": "any", "format": "onnx",
            "file": f"model_{artifact}.onnx", "runtime": "ort-cpu", "provider": "CPUExecutionProvider",
            "accuracy": accuracy, "precision_macro": accuracy, "recall_macro": accuracy, "f1": accuracy, "auc": 0.9,
            "loss": 0.5, "per_class": {c: {"precision": 0.8, "recall": 0.8, "specificity": 0.9, "f1": 0.8, "support": 10}
                                       for c in CLASSES},
            "confusion_matrix": [[8, 1, 1], [1, 8, 1], [1, 1, 8]], "n": 30,
            "latency_ms": {"1": {"p50": p50, "p90": p50 * 1.1, "p99": p50 * 1.2, "mean": p50}},
            "throughput_ips": {"1": 1000 / p50}, "end_to_end_ms": p50 + 3, "size_bytes": 400_000,
            "peak_rss_mb": 500.0, "threads": None, "agreement": 1.0, "max_abs_diff": 0.0,
            "gate": {"passed": True, "reasons": []},
        }
    return {
        "schema": "edgexfer.bench/1", "created": "2026-01-01T00:00:00+00:00",
        "export": {"path": "/exports/tinycnn", "name": "tinycnn", "source_run": {"backbone": "tinycnn"}},
        "reference": "fp32", "reference_runtime": "ort-cpu",
        "thresholds": {"max_accuracy_drop": 0.01, "max_f1_drop": 0.01, "max_recall_drop": 0.02},
        "settings": {"batch_sizes": [1], "warmup": 2, "iterations": 10, "threads": None},
        "machine": {"cpu": "test cpu", "cores": 2, "gpu": {"usable": False, "reason": "none", "name": None},
                    "libraries": {}},
        "data": {"kind": "split", "split": "test", "n": 30, "classes": CLASSES}, "skipped": [],
        "results": [row("fp32", 0.8, 1.0), row("int8", 0.8, 0.4)],
    }


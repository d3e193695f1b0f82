"""Study report: Pareto front, recommendation, markdown and the self-contained HTML (TensorFlow-free)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from html.parser import HTMLParser

import pytest

from edgexfer.contracts.study import SCHEMA as STUDY_SCHEMA
from edgexfer.errors import EdgexferError
from edgexfer.io import write_json
from edgexfer.report.html import markdown_to_html
from edgexfer.studies.recommend import mark_pareto, pareto_front, recommend, refresh_decisions
from edgexfer.studies.render import render_report

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


def test_pareto_front_keeps_only_undominated_points():
    points = [(1.0, 0.80), (2.0, 0.85), (2.0, 0.80), (3.0, 0.84), (0.5, 0.70), (4.0, 0.90), (4.0, 0.90)]
    assert pareto_front(points) == [4, 0, 1, 5, 6]


def test_pareto_ignores_gate_failures_and_keras():
    rows = mark_pareto(study_results()["results"])
    on_front = {(r["backbone"], r["precision"], r["runtime"]) for r in rows if r["pareto"]}
    assert on_front == {("tinycnn", "int8", "ort-cpu"), ("tinycnn", "fp32", "ort-cpu"), ("resnet50", "fp32", "ort-cpu")}


def test_recommendation_is_most_accurate_within_budget_that_passes_gate():
    rows = study_results()["results"]
    rec = recommend(rows, 5.0)  # resnet50 int8 (4 ms, 0.84) broke the gate; resnet50 fp32 is 10 ms
    assert (rec["status"], rec["backbone"], rec["precision"]) == ("ok", "tinycnn", "fp32")
    rec = recommend(rows, 20.0)
    assert (rec["backbone"], rec["precision"]) == ("resnet50", "fp32")
    assert recommend(rows, None)["backbone"] == "resnet50"


def test_no_model_qualifies_says_why_and_what_came_closest():
    rec = recommend(study_results()["results"], 0.5)
    assert rec["status"] == "none"
    assert "0.5 ms" in rec["reason"] and "tinycnn int8" in rec["reason"]
    failing = [dict(r, gate_passed=False) for r in study_results()["results"]]
    assert "no artifact passed the accuracy gate" in recommend(failing, 100.0)["reason"]


def test_study_report_markdown_and_self_contained_html(tmp_path):
    write_json(tmp_path / "results.json", study_results())
    paths = render_report(tmp_path)
    md = paths["markdown"].read_text()
    for heading in ("## Recommendation", "## Results by backbone and precision", "## Accuracy versus latency",
                    "## Training curves", "## Confusion matrices", "## Hyperparameter tuning",
                    "## Limited-data study"):
        assert heading in md
    assert "**Recommended: tinycnn · fp32" in md
    for name in ("accuracy_vs_latency", "training_curves", "confusion_matrices", "learning_curves"):
        png = tmp_path / "plots" / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert f"plots/{name}.png" in md

    page_text = paths["html"].read_text()
    page = parse_page(page_text)
    assert page.doctype and page.doctype.lower() == "doctype html"
    assert not page.errors and not page.stack, (page.errors, page.stack)
    assert page.headings[0] == "Backbone comparison"
    assert "Recommendation" in page.headings and "Limited-data study" in page.headings
    assert page.tables >= 5
    assert len(page.images) == 4
    for img in page.images:
        assert img["src"].startswith("data:image/png;base64,")
        assert base64.b64decode(img["src"].split(",", 1)[1])[:4] == b"\x89PNG"
    # self-contained: no reference to another file
    assert 'src="plots' not in page_text and "<link" not in page_text and "<script" not in page_text


def test_report_rerenders_with_a_new_budget_without_running_anything(tmp_path):
    write_json(tmp_path / "results.json", study_results())
    render_report(tmp_path, latency_budget_ms=0.1)
    md = (tmp_path / "report.md").read_text()
    assert "No model qualifies under the 0.1 ms budget" in md
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["latency_budget_ms"] == 0.1 and saved["recommendation"]["status"] == "none"


def test_html_escapes_markup_from_names_and_refuses_missing_images(tmp_path):
    page = markdown_to_html("# T\n\nclass <script>alert(1)</script>\n", tmp_path)
    assert "<script>" not in page and "&lt;script&gt;" in page
    with pytest.raises(EdgexferError, match="missing.png"):
        markdown_to_html("![x](plots/missing.png)\n", tmp_path)


def test_report_rejects_unknown_directory_contents(tmp_path):
    with pytest.raises(EdgexferError, match="does not exist"):
        render_report(tmp_path)
    write_json(tmp_path / "results.json", {"schema": "something/else"})
    with pytest.raises(EdgexferError, match="unknown schema"):
        render_report(tmp_path)


def test_report_cli_is_one_line_errors_and_tensorflow_free(tmp_path):
    write_json(tmp_path / "results.json", study_results())
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('tensorflow', 'keras'):\n"
        "            raise ImportError('blocked: ' + name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "from edgexfer.cli import main\n"
        "try:\n"
        f"    main(['report', {str(tmp_path)!r}, '--latency-budget-ms', '30'])\n"
        "except SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "assert 'tensorflow' not in sys.modules\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "report.html").is_file()
    assert "resnet50 · fp32" in (tmp_path / "report.md").read_text()
    missing = subprocess.run([sys.executable, "-m", "edgexfer", "report", str(tmp_path / "nope")],
                             capture_output=True, text=True, timeout=120)
    assert missing.returncode == 2
    assert missing.stderr.strip().count("\n") == 0 and "nope" in missing.stderr


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


def test_bench_directory_rerendered_with_html(tmp_path):
    write_json(tmp_path / "results.json", bench_results())
    paths = render_report(tmp_path)
    assert paths["markdown"] == tmp_path / "report.md" and "tinycnn" in paths["markdown"].read_text()
    page = parse_page(paths["html"].read_text())
    assert not page.errors and not page.stack
    assert page.images and all(i["src"].startswith("data:image/png;base64,") for i in page.images)
    assert page.tables >= 3  # every markdown table of the bench report is a table in the page
    with pytest.raises(EdgexferError, match="study directory"):
        render_report(tmp_path, latency_budget_ms=5)


def test_consecutive_pictures_flow_side_by_side(tmp_path):
    from PIL import Image

    for name in ("a", "b", "c"):
        Image.new("RGB", (4, 4)).save(tmp_path / f"{name}.png")
    page_text = markdown_to_html("# T\n\n![a](a.png)\n\n![b](b.png)\n\ntext\n\n![c](c.png)\n", tmp_path)
    page = parse_page(page_text)
    assert not page.errors and not page.stack and len(page.images) == 3
    assert page_text.count('<div class="figures">') == 1  # a and b together; c stands alone


def test_the_recommended_mark_covers_no_point_and_every_column_is_named(tmp_path, monkeypatch):
    from edgexfer.report import study_plots

    figures = {}
    saved = study_plots._save
    monkeypatch.setattr(study_plots, "_save", lambda fig, path: figures.setdefault(path.name, fig) and saved(fig, path))
    write_json(tmp_path / "results.json", study_results())
    md = render_report(tmp_path)["markdown"].read_text()
    ax = figures["accuracy_vs_latency.png"].axes[0]
    mark = next(c for c in ax.collections if c.get_label() == "recommended")
    assert len(mark.get_facecolors()) == 0 or mark.get_facecolors()[0][3] == 0  # hollow: points inside stay seen
    assert any("recommended" in t.get_text() for t in ax.texts)  # named beside, not on top
    header = next(line for line in md.splitlines() if line.startswith("| backbone | model |"))
    assert all(cell.strip() for cell in header.strip("|").split("|")), header

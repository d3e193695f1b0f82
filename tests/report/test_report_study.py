"""Study report: Pareto front, recommendation, markdown and the self-contained HTML (TensorFlow-free)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys

import pytest
from study_pages import bench_results, parse_page, study_results

from edgexfer.errors import EdgexferError
from edgexfer.io import write_json
from edgexfer.report.html import markdown_to_html
from edgexfer.studies.recommend import mark_pareto, pareto_front, recommend
from edgexfer.studies.render import render_report


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

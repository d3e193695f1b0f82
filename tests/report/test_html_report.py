"""HTML reports: bench writes a self-contained report.html, and every report's tables fit a 1280–1400 px
window. The layout rules are checked on the CSS everywhere; where a Chromium is installed the pages
are also laid out by it (benchmarks/check_html_width.py) and every table's box is measured."""

from __future__ import annotations

import base64
import copy
import importlib.util
import re
import sys
from pathlib import Path

import pytest
from study_pages import bench_results, study_results

from edgexfer.io import write_json
from edgexfer.report import html as html_report
from edgexfer.report.bench_report import write_bench_report
from edgexfer.studies.render import render_report

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "check_html_width.py"


def _checker():
    spec = importlib.util.spec_from_file_location("check_html_width", _SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_html_width"] = module
    spec.loader.exec_module(module)
    return module


def wide_bench_results(classes: int = 6) -> dict:
    """A bench on a GPU machine: three precisions × four runtimes, TensorRT engines, six classes."""
    results = bench_results()
    names = [f"class_{i}_long_name" for i in range(classes)]
    rows = []
    for runtime in ("ort-cpu", "ort-cuda", "ort-trt", "trt"):
        for artifact in ("fp32", "fp16", "int8_tensorrt"):
            row = copy.deepcopy(results["results"][0])
            row.update(artifact=artifact, precision=artifact.split("_")[0], runtime=runtime,
                       file=f"model_{artifact}.{'engine' if runtime == 'trt' else 'onnx'}",
                       per_class={c: {"precision": 0.8123, "recall": 0.8123, "specificity": 0.9321, "f1": 0.8,
                                      "support": 10} for c in names},
                       confusion_matrix=[[10 if i == j else 0 for j in range(classes)] for i in range(classes)],
                       latency_ms={str(b): {"p50": 123.4567 * b, "p90": 130.0 * b, "p99": 140.0 * b, "mean": 125.0 * b}
                                   for b in (1, 8, 32)},
                       throughput_ips={str(b): 1234.5 for b in (1, 8, 32)}, end_to_end_ms=1234.5,
                       size_bytes=102_400_000, peak_rss_mb=12345.0, max_abs_diff=0.001234,
                       reference={"artifact": "fp32", "runtime": runtime},
                       gate={"passed": artifact != "int8_tensorrt", "reference": artifact == "fp32",
                             "reasons": [] if artifact != "int8_tensorrt" else ["accuracy dropped 2 points"],
                             "breaches": []})
            rows.append(row)
    results["results"] = rows
    results["export"]["source_run"] = {"name": "cxr-efficientnetb3-224-imagenet", "backbone": "efficientnetb3"}
    results["data"]["classes"] = names
    return results


def test_bench_writes_a_self_contained_report_html(tmp_path):
    report = write_bench_report(bench_results(), tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert report == tmp_path / "report.md"
    assert "<title>Bench: tinycnn (tinycnn)</title>" in page  # the source run's name, not the export folder's
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == len(re.findall(r"!\[", report.read_text())) >= 3
    for src in images:
        assert src.startswith("data:image/png;base64,") and base64.b64decode(src.split(",", 1)[1])[:4] == b"\x89PNG"
    assert 'src="plots/' not in page and "<link" not in page and "<script" not in page


def test_layout_rules_that_make_tables_fit():
    css = html_report._STYLE
    page_width = int(re.search(r"main \{ max-width: (\d+)px", css).group(1))
    assert page_width == html_report.MAX_PAGE_WIDTH_PX <= 1400 - 24  # room for the window's scrollbar
    th = re.search(r"\bth \{([^}]*)\}", css).group(1)
    assert "white-space: normal" in th  # headers wrap
    td = re.search(r"\btd \{([^}]*)\}", css).group(1)
    assert "nowrap" not in td
    table = re.search(r"\btable \{([^}]*)\}", css).group(1)
    assert float(re.search(r"font-size: ([\d.]+)px", table).group(1)) <= 13
    assert "table-layout" in table and "max-width: 100%" in table
    # a table still too wide scrolls inside its own box, never the page
    assert ".table-wrap { overflow-x: auto" in css
    assert '<div class="table-wrap"><table>' in html_report.markdown_to_html("| a | b |\n|---|---|\n| 1 | 2 |\n", ".")


chromium = pytest.mark.skipif(_checker().find_browser() is None, reason="no Chromium installed")


@chromium
@pytest.mark.parametrize("width", [1280, 1400])
def test_reports_fit_the_window_in_chromium(tmp_path, width):
    checker = _checker()
    bench_dir, study_dir = tmp_path / "bench", tmp_path / "study"
    write_bench_report(wide_bench_results(), bench_dir)
    write_json(study_dir / "results.json", study_results())
    render_report(study_dir)
    for page in (bench_dir / "report.html", study_dir / "report.html"):
        result = checker.check_width(page, width)
        assert result.fits, (page.name, width, result.page_width, result.overflowing)


@chromium
def test_the_check_catches_a_table_that_does_not_fit(tmp_path):
    """The same wide bench with the old rule (headers and cells on one line, 15 px body) overflows."""
    checker = _checker()
    write_bench_report(wide_bench_results(), tmp_path)
    page = (tmp_path / "report.html").read_text()
    page = page.replace("</style>", "th, td { white-space: nowrap !important; } table { font-size: 15px !important; }"
                                    "</style>")
    (tmp_path / "old.html").write_text(page)
    result = checker.check_width(tmp_path / "old.html", 1400)
    assert not result.fits and "Artifact" in result.overflowing[0]["header"]

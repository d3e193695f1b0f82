"""The end of bench and demo: the summary table and the one-line verdict; the demo's up-front check."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest
from light_install import BLOCK_TRAIN_EXTRA

from edgexfer.report.summary import bench_title, closing_lines, summary_rows, summary_table, verdict


def _row(artifact, runtime, accuracy, recalls, p50, gate):
    return {"artifact": artifact, "precision": artifact if artifact != "keras" else "fp32", "runtime": runtime,
            "accuracy": accuracy, "f1": accuracy - 0.01,
            "per_class": {c: {"recall": r, "specificity": 0.9} for c, r in recalls.items()},
            "latency_ms": {"1": {"p50": p50}, "8": {"p50": p50 * 5}}, "gate": gate}


def _results(int8_passes: bool):
    ref = {"passed": True, "reference": True, "reasons": []}
    ok = {"passed": True, "reasons": []}
    bad = {"passed": False, "reasons": ["recall of pneumonia dropped 4.00 points (0.9000 -> 0.8600, 2 of 50 images), "
                                        "limit 2.00"]}
    return {
        "export": {"name": "exported", "source_run": {"name": "cxr-effb0", "backbone": "efficientnetb0"}},
        "results": [
            _row("fp32", "ort-cpu", 0.95, {"normal": 0.97, "pneumonia": 0.90}, 18.0, ref),
            _row("fp16", "ort-cpu", 0.949, {"normal": 0.97, "pneumonia": 0.90}, 12.0, ok),
            _row("int8", "ort-cpu", 0.93 if not int8_passes else 0.948, {"normal": 0.97, "pneumonia": 0.86}, 6.0,
                 ok if int8_passes else bad),
        ],
    }


def test_table_has_one_row_per_artifact_and_the_worst_class():
    results = _results(int8_passes=False)
    rows = summary_rows(results)
    assert [(r.artifact, r.gate) for r in rows] == [("fp32", "ref"), ("fp16", "pass"), ("int8", "FAIL")]
    assert (rows[2].worst_class, rows[2].worst_recall, rows[2].p50_ms) == ("pneumonia", 0.86, 6.0)
    lines = summary_table(results).splitlines()
    assert lines[0].split() == ["artifact", "precision", "runtime", "accuracy", "%", "F1", "%", "worst-class",
                                "recall", "%", "p50", "ms", "@1", "gate"]
    assert lines[4].split() == ["int8", "int8", "ort-cpu", "93.00", "92.00", "86.00", "(pneumonia)", "6.00", "FAIL"]
    assert len({len(line) for line in lines[:2]}) == 1  # header and rule line up


def test_verdict_is_one_line_and_names_what_broke():
    failed = verdict(_results(int8_passes=False))
    assert "\n" not in failed
    assert failed.startswith("FAILED: int8 on ort-cpu (recall of pneumonia dropped 4.00 points) broke the accuracy gate")
    assert "fastest that passes: fp16 on ort-cpu, 12.00 ms at batch 1, 1.5× FP32 on ort-cpu" in failed
    passed = verdict(_results(int8_passes=True))
    assert passed.startswith("PASSED: fp16, int8 keep FP32's diagnoses within the gate (largest accuracy drop 0.20 pt)")
    assert "int8 on ort-cpu, 6.00 ms at batch 1, 3.0× FP32" in passed
    unusable = dict(_results(True), model_check={"usable": False, "reason": "FP32 does not beat the majority class"})
    assert verdict(unusable).startswith("FAILED: the FP32 model itself is not usable")


def test_closing_lines_and_title(tmp_path):
    results = _results(int8_passes=True)
    (tmp_path / "report.html").write_text("<html></html>")
    text = closing_lines(results, tmp_path)
    assert text.splitlines()[-1] == verdict(results)
    assert f"report: {tmp_path / 'report.md'} and {tmp_path / 'report.html'}" in text
    assert bench_title(results) == "Bench: cxr-effb0 (efficientnetb0)"
    assert bench_title({"export": {"name": "exported"}}) == "Bench: exported"


LIGHT_DEMO = BLOCK_TRAIN_EXTRA + textwrap.dedent(
    """
    import json, os, sys
    from edgexfer.cli import main
    out = sys.argv[1]
    try:
        main([a.replace("OUT", out) for a in sys.argv[2:]])
        code = 0
    except SystemExit as exc:
        code = exc.code
    print("RESULT " + json.dumps({"code": code, "exists": os.path.exists(out)}))
    """
)


@pytest.mark.parametrize("argv, says", [
    (["demo", "--out", "OUT"], ["the demo fine-tunes and exports", "tensorflow, keras, tf2onnx", "pip install -e '.[train]'"]),
    (["compare", "--data", "demo", "--backbones", "tinycnn", "--out", "OUT"], ["export needs tensorflow, keras, tf2onnx",
                                                                             "edgexfer[train]"]),
])
def test_without_the_train_extra_stops_before_writing(tmp_path, argv, says):
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-c", LIGHT_DEMO, str(out), *argv], capture_output=True, text=True,
                          timeout=120)
    result = json.loads(proc.stdout.splitlines()[-1][len("RESULT "):])
    assert result == {"code": 2, "exists": False}, proc.stderr
    error = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(error) == 1 and error[0].startswith("edgexfer: error: ")
    for text in says:
        assert text in error[0]


def test_demo_refuses_bad_options_before_writing(tmp_path):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--per-class", "3"])
    assert result.exit_code == 2 and "--per-class 3 is too few" in result.output
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--backbone", "nosuch"])
    assert result.exit_code == 2 and "tinycnn" in result.output
    assert not out.exists()

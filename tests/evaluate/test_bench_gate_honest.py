"""A gate that cannot be fooled: validated thresholds, strict results.json, absolute floors, the model's own
baseline check, confidence intervals and McNemar's test (checked against scipy), a refused foreign --out,
and the bench folder's lock held against a second real process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_handmade import FAST, LOOSE, LOOSE_DROPS, break_int8, build_export
from scipy import stats as sps

from edgexfer.cli import cli


def _strict_loads(text: str):
    def refuse(token):
        raise ValueError(f"non-standard JSON token {token}")

    return json.loads(text, parse_constant=refuse)


def _bench(args):
    return CliRunner().invoke(cli, ["bench", *args])


@pytest.mark.parametrize("option", ["--max-accuracy-drop", "--max-f1-drop", "--max-recall-drop", "--min-accuracy",
                                    "--min-f1", "--min-recall"])
@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-1", "1.5", "lots"])
def test_every_bad_threshold_is_one_line_exit_2_before_any_work(handmade_export, tmp_path, option, value):
    out = tmp_path / "bench"
    result = _bench([str(handmade_export), "--out", str(out), *FAST, option, value])
    assert result.exit_code == 2, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(errors) == 1 and errors[0].startswith("edgexfer: error:") and option in errors[0], result.stderr
    assert "Traceback" not in result.output
    assert not out.exists() and not list(tmp_path.iterdir())  # nothing written, no lock file either


def test_min_recall_with_class_value_forms(handmade_export, tmp_path):
    from edgexfer.evaluate.gate import Thresholds, parse_min_recall

    t = Thresholds(min_recall=parse_min_recall(["0.5", "pneumonia=0.95"]))
    assert t.recall_floor("pneumonia") == 0.95 and t.recall_floor("covid") == 0.5
    result = _bench([str(handmade_export), "--out", str(tmp_path / "b"), *FAST, "--min-recall", "pneumothorax=0.9"])
    assert result.exit_code == 2
    line = result.stderr.strip()
    assert "unknown class(es) pneumothorax" in line and "covid, normal, pneumonia" in line
    assert not (tmp_path / "b").exists()
    result = _bench([str(handmade_export), "--out", str(tmp_path / "b"), *FAST, "--min-recall", "pneumonia=nan"])
    assert result.exit_code == 2 and "--min-recall pneumonia=" in result.stderr


def test_results_json_is_strict_and_min_recall_floor_fails_a_model_below_it(handmade_export, tmp_path):
    out = tmp_path / "bench"
    result = _bench([str(handmade_export), "--out", str(out), *FAST, "--min-recall", "pneumonia=0.95", "--json"])
    assert result.exit_code == 1, result.output
    text = (out / "results.json").read_text()
    results = _strict_loads(text)
    assert "NaN" not in text and "Infinity" not in text
    _strict_loads(result.stdout)  # what --json prints is strict too
    assert results["thresholds"]["min_recall"] == {"pneumonia": 0.95}
    for row in results["results"]:
        assert row["per_class"]["pneumonia"]["recall"] < 0.95
        assert not row["gate"]["passed"]  # FP32 included: a floor is absolute
        floors = [b for b in row["gate"]["breaches"] if b["kind"] == "floor"]
        assert [b["metric"] for b in floors] == ["recall[pneumonia]"] and floors[0]["limit"] == 0.95
    assert "recall[pneumonia]>=floor" in result.stderr
    assert "below floor" in (out / "report.md").read_text()


def test_chance_level_model_fails_with_the_model_itself_line(tmp_path):
    # all weights zero: every image gets the same probabilities, FP16 and INT8 equal FP32 exactly
    export = build_export(tmp_path, weights=np.zeros((3, 3), np.float32))
    out = tmp_path / "bench"
    result = _bench([str(export), "--out", str(out), *FAST, "--max-accuracy-drop", "1", "--max-f1-drop", "1",
                     "--max-recall-drop", "1"])
    assert result.exit_code == 1, result.output
    error = [ln for ln in result.stderr.splitlines() if ln.startswith("edgexfer: error:")]
    assert len(error) == 1 and "the model itself is not usable" in error[0]
    # balanced classes: the baseline is named as what it is, not as a "majority" class that sorts first
    assert "no better than the baseline 0.3333 (always answering any one class: the 3 classes are equally " \
           "frequent)" in error[0]
    results = _strict_loads((out / "results.json").read_text())
    assert results["model_check"]["usable"] is False and results["model_check"]["verdict"] == "not_usable"
    assert results["model_check"]["baseline_accuracy"] == pytest.approx(1 / 3)
    for row in results["results"]:
        assert row["accuracy"] == pytest.approx(1 / 3) and row["agreement"] == 1.0
        assert row["gate"]["passed"] is False
        assert row["gate"]["reasons"][0].startswith("the model itself is not usable")
    assert "The model itself is not usable" in (out / "report.md").read_text()


def test_sanity_record_saying_nothing_learned_fails_the_gate(export_copy, tmp_path):
    from edgexfer.evaluate.bench import BenchConfig, BenchGateFailed, run_bench
    from edgexfer.evaluate.gate import Thresholds
    from edgexfer.io import write_json

    write_json(export_copy / "metrics.json", {"accuracy": 0.9, "sanity": {
        "verdict": "learned_nothing", "baseline_accuracy": 0.5, "reason": "predicts one class for every image"}})
    with pytest.raises(BenchGateFailed, match="model itself is not usable.*predicts one class"):
        run_bench(BenchConfig(export_copy, out=tmp_path / "b", runtimes=["ort-cpu"], batch_sizes=(1,), warmup=0,
                              iterations=1, progress=False))
    write_json(export_copy / "metrics.json", {"sanity": {"verdict": "ok", "baseline_accuracy": 0.3, "reason": ""}})
    outcome = run_bench(BenchConfig(export_copy, out=tmp_path / "b", runtimes=["ort-cpu"], batch_sizes=(1,), warmup=0,
                                    iterations=1, progress=False, thresholds=Thresholds(*LOOSE_DROPS)))
    assert outcome.results["model_check"]["usable"] and outcome.results["model_check"]["sanity"]["verdict"] == "ok"


def test_intervals_and_mcnemar_match_scipy(export_copy, tmp_path):
    from edgexfer.data.splits import Split
    from edgexfer.runtime.ort_runtime import OrtRuntime

    break_int8(export_copy)
    out = tmp_path / "bench"
    result = _bench([str(export_copy), "--out", str(out), *FAST])
    assert result.exit_code == 1
    results = _strict_loads((out / "results.json").read_text())
    split = Split.load(export_copy / "split.json")
    images, labels = split.load_arrays("test", (32, 32))
    preds = {}
    for row in results["results"]:
        with OrtRuntime(export_copy / row["file"]) as rt:
            preds[row["artifact"]] = rt.predict(images).argmax(1)
    for row in results["results"]:
        pred = preds[row["artifact"]]
        right = int(np.sum(pred == labels))
        ci = sps.binomtest(right, len(labels)).proportion_ci(0.95, method="wilson")
        assert row["ci95"]["accuracy"] == pytest.approx([ci.low, ci.high], abs=1e-9)
        for k, name in enumerate(split.classes):
            mask = labels == k
            ci = sps.binomtest(int(np.sum(pred[mask] == k)), int(mask.sum())).proportion_ci(0.95, method="wilson")
            assert row["ci95"]["recall"][name] == pytest.approx([ci.low, ci.high], abs=1e-9)
    int8 = next(r for r in results["results"] if r["artifact"] == "int8")
    ref_right, cand_right = preds["fp32"] == labels, preds["int8"] == labels
    lost, gained = int(np.sum(ref_right & ~cand_right)), int(np.sum(~ref_right & cand_right))
    assert lost > gained and lost > 3  # the broken INT8 really flips images
    expected_p = sps.binomtest(min(lost, gained), lost + gained, 0.5).pvalue  # McNemar exact = binomial on discordant
    paired = int8["vs_reference"]
    assert (paired["lost"], paired["gained"]) == (lost, gained)
    assert paired["p_value"] == pytest.approx(expected_p, rel=1e-9)
    accuracy_breach = next(b for b in int8["gate"]["breaches"] if b["metric"] == "accuracy")
    assert (accuracy_breach["lost"], accuracy_breach["gained"]) == (lost, gained)
    report = (out / "report.md").read_text()
    assert "McNemar" in report and f"{int8['ci95']['accuracy'][0]:.3f}–{int8['ci95']['accuracy'][1]:.3f}" in report
    p_text = f"{expected_p:.3g}" if expected_p >= 1e-3 else f"{expected_p:.1e}"
    assert f"| {lost} | {gained} | {p_text} |" in report
    # the console table names the flips each way, and the split is called too small for the thresholds
    assert "lost" in result.stderr and "gained" in result.stderr
    assert "one image moves the recall of" in result.stderr and "even with no flipped image it takes" in result.stderr
    assert "too small for the thresholds" in report


def test_bench_refuses_a_foreign_non_empty_out(handmade_export, tmp_path):
    data = tmp_path / "xrays"
    for name in ("normal", "pneumonia"):
        (data / name).mkdir(parents=True)
        (data / name / "a.png").write_bytes(b"not really")
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    result = _bench([str(handmade_export), "--out", str(data), *FAST])
    assert result.exit_code == 2
    assert "is not empty and is not a bench folder" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # nothing written, no lock
    # an earlier bench folder is fine: it is replaced
    out = tmp_path / "bench"
    assert _bench([str(handmade_export), "--out", str(out), *FAST, *LOOSE]).exit_code == 0
    assert _bench([str(handmade_export), "--out", str(out), *FAST, *LOOSE]).exit_code == 0


def test_second_bench_on_the_same_out_exits_2_while_the_first_runs(handmade_export, tmp_path):
    out = tmp_path / "bench"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    slow = [sys.executable, "-m", "edgexfer", "bench", str(handmade_export), "--out", str(out), "--runtimes", "ort-cpu",
            "--batch-sizes", "1", "--warmup", "0", "--iterations", "200000", "--quiet"]
    first = subprocess.Popen(slow, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        lock = tmp_path / ".bench.lock"
        deadline = time.time() + 60
        while time.time() < deadline and not (lock.is_file() and lock.read_text().strip()):
            time.sleep(0.1)
        assert lock.is_file(), "the first bench never took the lock"
        second = subprocess.run(slow[:-2] + ["1", "--quiet"], env=env, capture_output=True, text=True, timeout=120)
        assert second.returncode == 2, second.stderr
        assert f"is in use by process {first.pid} (edgexfer bench" in second.stderr
        assert not (out / "results.json").exists()
    finally:
        first.kill()
        first.wait()
    # the lock dies with its process: the next bench runs
    assert _bench([str(handmade_export), "--out", str(out), *FAST, *LOOSE]).exit_code == 0


def test_only_one_runtime_session_is_alive_while_timing(handmade_export, tmp_path, monkeypatch):
    import edgexfer.evaluate.bench.measure as measure
    from edgexfer.evaluate import bench as bench_module
    from edgexfer.runtime.ort_runtime import OrtRuntime

    alive, seen = [0], []
    real_init, real_close = OrtRuntime.__init__, OrtRuntime.close

    def counting_init(self, *args, **kwargs):
        real_init(self, *args, **kwargs)
        alive[0] += 1

    def counting_close(self):
        if getattr(self, "session", None) is not None:
            alive[0] -= 1
        real_close(self)

    real_time = measure.time_runtime

    def timing(*args, **kwargs):
        seen.append(alive[0])
        return real_time(*args, **kwargs)

    monkeypatch.setattr(OrtRuntime, "__init__", counting_init)
    monkeypatch.setattr(OrtRuntime, "close", counting_close)
    monkeypatch.setattr(measure, "time_runtime", timing)
    from edgexfer.evaluate.gate import Thresholds

    outcome = bench_module.run_bench(bench_module.BenchConfig(
        handmade_export, out=tmp_path / "b", runtimes=["ort-cpu"], batch_sizes=(1, 2), warmup=0, iterations=1,
        progress=False, thresholds=Thresholds(*LOOSE_DROPS)))
    assert len(seen) == 6 and set(seen) == {1}
    assert alive[0] == 0
    assert "one ONNX Runtime session" in outcome.results["settings"]["latency_method"]
    assert "Sessions: one ONNX Runtime session" in (tmp_path / "b" / "report.md").read_text()


@pytest.mark.parametrize(("option", "value"), [("--max-recall-drop", v) for v in ("nan", "-1", "1.5", "inf", "x")]
                         + [("--latency-budget-ms", v) for v in ("nan", "inf", "-5", "0")])
def test_compare_thresholds_and_latency_budget_are_validated_before_anything_is_written(tmp_path, option, value):
    """Recall drops are fractions in [0, 1]; the latency budget is finite and positive. Either is refused in one
    line naming the option, exit 2, and the study folder is never made."""
    out = tmp_path / "study"
    result = CliRunner().invoke(cli, ["compare", "--data", "demo", "--backbones", "tinycnn", "--out", str(out),
                                      option, value])
    assert result.exit_code == 2, result.output
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and option in lines[0] and lines[0].startswith("edgexfer: error:")
    assert not out.exists()

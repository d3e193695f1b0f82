"""Studies never recommend a model that fails the gate or the majority-class baseline check; ties on accuracy
say the pick came down to speed; a study's --out is locked while it runs."""

from __future__ import annotations

import pytest
from study_pages import bench_row, study_results

from edgexfer.contracts.study import study_rows as flatten_bench_rows
from edgexfer.report.study_markdown import _recommendation_text
from edgexfer.studies.recommend import baseline_accuracy, recommend


def _one_class_row(backbone, precision, k, p50):
    # three balanced classes, every image predicted as class k: accuracy 1/3, the majority baseline
    cm = [[0, 0, 0], [0, 0, 0], [0, 0, 0]]
    for true in range(3):
        cm[true][k] = 10
    return dict(bench_row(backbone, precision, 1 / 3, p50), confusion_matrix=cm)


def test_six_chance_level_artifacts_that_pass_the_gate_are_not_recommended():
    rows = [_one_class_row(b, p, k, 1.0 + i) for i, (b, p, k) in enumerate(
        [(b, p, k) for b, k in (("tinycnn", 0), ("resnet50", 2)) for p in ("fp32", "fp16", "int8")])]
    assert all(r["gate_passed"] for r in rows)
    assert baseline_accuracy(rows[0]) == pytest.approx(1 / 3)
    rec = recommend(rows, None)
    assert rec["status"] == "none"
    assert "no model is usable" in rec["reason"] and "majority-class baseline" in rec["reason"]
    text = _recommendation_text(rec)
    assert "No model qualifies" in text and "No model is usable" in text


def test_bench_that_found_the_model_unusable_is_never_recommended():
    bench = {"model_check": {"usable": False, "reason": "the run's sanity check says: learned nothing"},
             "results": [{"artifact": "fp32", "precision": "fp32", "runtime": "ort-cpu", "accuracy": 0.9, "f1": 0.9,
                          "latency_ms": {"1": {"p50": 1.0}}, "confusion_matrix": [[9, 1], [1, 9]],
                          "gate": {"passed": True, "reasons": []}}]}
    rows = flatten_bench_rows("tinycnn", bench)
    assert rows[0]["model_usable"] is False and rows[0]["baseline_accuracy"] == 0.5
    assert recommend(rows, None)["status"] == "none"
    bench["model_check"]["usable"] = True
    assert recommend(flatten_bench_rows("tinycnn", bench), None)["status"] == "ok"


def test_gate_failures_are_never_recommended_even_when_most_accurate():
    rows = [bench_row("a", "fp32", 0.80, 2.0), bench_row("a", "int8", 0.95, 1.0, passed=False)]
    rec = recommend(rows, None)
    assert (rec["status"], rec["precision"]) == ("ok", "fp32")


def test_accuracy_tie_says_the_pick_came_down_to_speed():
    results = study_results(budget=5.0)  # tinycnn fp32 (0.80, 2.0 ms) and fp16 (0.80, 2.5 ms) tie
    rec = results["recommendation"]
    assert (rec["backbone"], rec["precision"], rec["tied"]) == ("tinycnn", "fp32", 2)
    assert "2 artifacts tie at accuracy 0.800, so the pick came down to speed" in rec["reason"]
    assert "came down to speed" in _recommendation_text(rec)
    # no tie: no speed sentence
    rec = recommend([bench_row("a", "fp32", 0.80, 2.0), bench_row("a", "fp16", 0.81, 3.0)], None)
    assert rec["precision"] == "fp16" and rec["tied"] == 1 and "speed" not in rec["reason"]


def test_a_running_study_locks_its_out(tmp_path):
    from study_fakes import FakeStages, config

    from edgexfer.io import FolderBusy, lock_folder
    from edgexfer.studies.compare import run_compare

    out = tmp_path / "study"
    held = lock_folder(out, "edgexfer compare")
    try:
        with pytest.raises(FolderBusy, match="is in use by process"):
            run_compare(config(out), FakeStages().stages())
        assert not out.exists()
    finally:
        held.release()
    outcome = run_compare(config(out), FakeStages().stages())
    assert outcome.results["recommendation"]["status"] == "ok"
    assert not (tmp_path / ".study.lock").exists()


def _undecided(row):
    return dict(row, gate_passed=False, gate_verdict="inconclusive",
                gate_reasons=["recall[a] ...: too few images to tell; about 300 images of class 'a' (have 10)"])


def test_recommendation_says_what_gate_it_rests_on():
    from edgexfer.studies.recommend import gate_evidence

    passing = [bench_row("a", "fp32", 0.80, 2.0), bench_row("a", "int8", 0.79, 1.0)]
    assert recommend(passing, None)["gate"] == "pass" and gate_evidence(passing) == "pass"
    # every device row undecided: no recommendation, and it rests on inconclusive gates
    undecided = [_undecided(r) for r in passing]
    rec = recommend(undecided, None)
    assert (rec["status"], rec["gate"]) == ("none", "inconclusive")
    assert "too few to decide" in rec["reason"] and rec["reason"].count("ort-cpu") == 2
    # one failed and one undecided: still inconclusive (more images may yet pass the undecided one)
    mixed = [bench_row("a", "fp32", 0.80, 2.0, passed=False), _undecided(passing[1])]
    assert gate_evidence(mixed) == "inconclusive"
    failed = [bench_row("a", "fp32", 0.80, 2.0, passed=False), bench_row("a", "int8", 0.79, 1.0, passed=False)]
    assert recommend(failed, None)["gate"] == "fail"


@pytest.mark.parametrize("gate, code", [("pass", 0), ("fail", 1), ("inconclusive", 3), (None, 0)])
def test_compare_exit_code_follows_the_gate_the_recommendation_rests_on(tmp_path, monkeypatch, gate, code):
    from types import SimpleNamespace

    from click.testing import CliRunner

    from edgexfer.cli import cli
    from edgexfer.studies import compare as compare_module

    rec = {"status": "none", "reason": "nothing passed", "gate": gate}
    fake = SimpleNamespace(results={"recommendation": rec},
                           report={"markdown": tmp_path / "report.md", "html": tmp_path / "report.html"})
    monkeypatch.setattr(compare_module, "run_compare", lambda config: fake)
    result = CliRunner().invoke(cli, ["compare", "--data", "demo", "--backbones", "tinycnn", "--out",
                                      str(tmp_path / "s")])
    assert result.exit_code == code, result.output
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("edgexfer: error:")]
    assert len(errors) == (0 if code == 0 else 1)


def _deploy(artifact, runtime="ort-cpu", p50=1.0):
    from edgexfer.contracts.study import BackboneDeploy

    return BackboneDeploy("ok", artifact, artifact, runtime, p50, 1, None, 2.0)


def test_recommendation_takes_each_backbones_bench_pick_or_says_why_not():
    rows = [bench_row("a", "fp32", 0.90, 2.0), bench_row("a", "int8", 0.89, 1.0), bench_row("b", "fp32", 0.88, 1.5)]
    # a's bench recommends its INT8 (the fastest that passed): a's candidate is that, not its more accurate FP32
    rec = recommend(rows, None, {"a": _deploy("int8"), "b": _deploy("fp32", p50=1.5)})
    assert (rec["backbone"], rec["artifact"], rec["bench_recommended"]) == ("a", "int8", True), rec
    assert recommend(rows, None)["artifact"] == "fp32"  # without the bench picks: the old rule over every row
    # a pick no better than always answering one class is not a candidate: the study says so
    chance = [dict(rows[0]), _one_class_row("a", "int8", 0, 1.0)]
    rec = recommend(chance, None, {"a": _deploy("int8")})
    assert (rec["artifact"], rec["bench_recommended"]) == ("fp32", False), rec
    assert "not a's bench recommendation: its bench's pick, int8 on ort-cpu, does not beat the majority" in rec["reason"]
    unrecorded = recommend(rows, None, {"b": _deploy("fp32", p50=1.5)})  # a's bench is older than its pick
    assert unrecorded["backbone"] == "a" and "its bench recorded no recommendation" in unrecorded["reason"]


def test_compare_prints_what_each_backbone_deploys(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from click.testing import CliRunner

    from edgexfer.cli import cli
    from edgexfer.contracts.study import BackboneDeploy
    from edgexfer.studies import compare as compare_module

    backbones = [{"name": "a", "deploy": _deploy("int8", "ov-cpu", 3.21).to_dict()},
                 {"name": "b", "deploy": BackboneDeploy("none", reason="int8 on ort-cpu failed").to_dict()},
                 {"name": "c", "status": "failed"}]
    rec = {"status": "ok", "backbone": "a", "artifact": "int8", "runtime": "ov-cpu", "accuracy": 0.9,
           "latency_p50_ms": 3.21, "bench_recommended": True, "reason": "…", "gate": "pass"}
    fake = SimpleNamespace(results={"recommendation": rec, "backbones": backbones},
                           report={"markdown": tmp_path / "report.md", "html": tmp_path / "report.html"})
    monkeypatch.setattr(compare_module, "run_compare", lambda config: fake)
    result = CliRunner().invoke(cli, ["compare", "--data", "demo", "--backbones", "a,b", "--out", str(tmp_path / "s")])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[:2] == ["a: deploy: int8 on ov-cpu, 3.21 ms", "b: nothing passed: int8 on ort-cpu failed"], lines

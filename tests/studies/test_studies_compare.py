"""Studies with the real stages: a two-backbone compare on the demo data, resume, tuning, learning curves.

Tiny settings (32 px, one epoch, a few dozen images) keep these to about a minute each on two cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fixtures_study import FAST_TRAINING, SECOND_BACKBONE, counting, register_studycnn, study_config
from study_fakes import FakeStages
from study_pages import parse_page

from edgexfer.studies.compare import TuneOptions, default_stages, run_compare

pytestmark = pytest.mark.slow

@pytest.fixture
def second_backbone(monkeypatch):
    """Register SECOND_BACKBONE (fixtures_study) for one test; the registry is restored afterwards."""
    from edgexfer.backbones import registry

    registry.list_backbones()  # the built-in presets first
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return register_studycnn()


def test_two_backbone_compare_report_and_resume(local_compare_study, second_backbone):
    # the study itself ran once for the session (fixtures_study.local_compare_study); the Ray test reads it too
    study, outcome, calls = local_compare_study.out_dir, local_compare_study.outcome, local_compare_study.calls
    assert calls == {"finetune": 2, "export": 2, "bench": 2}

    results = json.loads(local_compare_study.results_text)
    assert json.loads((study / "results.json").read_text()) == results
    assert results["schema"] == "edgexfer.study/1"
    assert [b["status"] for b in results["backbones"]] == ["done", "done"]
    by_backbone = {(r["backbone"], r["precision"]) for r in results["results"] if r["runtime"] == "ort-cpu"}
    assert by_backbone == {(b, p) for b in ("tinycnn", SECOND_BACKBONE) for p in ("fp32", "fp16", "int8")}
    for row in results["results"]:
        assert 0.0 <= row["accuracy"] <= 1.0 and row["latency_p50_ms"] > 0 and row["size_bytes"] > 0
        assert row["confusion_matrix"] and sum(map(sum, row["confusion_matrix"])) == results["data"]["counts"]["test"]
    # every backbone trained and was tested on the study's one split
    study_split = json.loads((study / "split.json").read_text())["splits"]
    for name in ("tinycnn", SECOND_BACKBONE):
        assert json.loads((study / "runs" / name / "split.json").read_text())["splits"] == study_split
    rec = results["recommendation"]
    from edgexfer.studies.recommend import is_deployable

    # one epoch on 12 images per class (seeded, so always the same models) and 3 test images: tinycnn gets 2 of 3
    # right, which cannot show it beats the majority-class baseline, so each of its precisions is inconclusive;
    # the second backbone gets none right and is not usable, so each of its precisions fails saying so. Nothing
    # is recommended, and the recommendation says the test images were too few.
    assert not any(is_deployable(r) for r in results["results"])
    assert rec["status"] == "none" and rec["gate"] == "inconclusive"
    assert rec["reason"].startswith("no artifact passed the accuracy gate: the test images were too few to decide")
    assert not any(r["pareto"] for r in results["results"])
    for r in results["results"]:
        if r["runtime"] == "keras":
            continue
        assert r["gate_passed"] is False
        if r["backbone"] == "tinycnn":
            assert r["gate_verdict"] == "inconclusive", r
            assert any("too few" in str(reason) for reason in r["gate_reasons"]), r
        else:
            assert r["gate_verdict"] == "fail", r
            assert any("the model itself is not usable" in str(reason) for reason in r["gate_reasons"]), r
    assert [len(b["history"]) for b in results["backbones"]] == [1, 1]

    page = parse_page(outcome.report["html"].read_text())
    assert not page.errors and not page.stack
    assert {"Recommendation", "Results by backbone and precision", "Accuracy versus latency", "Training curves",
            "Confusion matrices"} <= set(page.headings)
    assert len(page.images) == 3 and all(i["src"].startswith("data:image/png;base64,") for i in page.images)

    # run again: every stage is found finished and nothing is redone or rewritten
    stage_files = [p for d in ("runs", "exported", "benchmarks") for p in (study / d).rglob("*") if p.is_file()]
    before = {p: p.stat().st_mtime_ns for p in stage_files}
    again: dict[str, int] = {}
    second = run_compare(study_config(study), counting(default_stages(lambda line: None), again))
    assert again == {}
    assert {p: p.stat().st_mtime_ns for p in stage_files} == before
    assert second.results["recommendation"] == rec

    # a tighter budget re-decides from results.json alone
    from edgexfer.cli import main

    with pytest.raises(SystemExit) as done:
        main(["report", str(study), "--latency-budget-ms", "0.000001"])
    assert done.value.code == 0
    assert "No model qualifies under the 1e-06 ms budget" in (study / "report.md").read_text()


def tiny_weights_file(path: Path) -> Path:
    """A tinycnn base weights file: the stand-in for pretrained weights (no download here)."""
    from edgexfer.backbones import build_base, get_backbone

    build_base(get_backbone("tinycnn"), 32, "none").save_weights(path)
    return path


def test_tuning_with_a_tiny_budget_feeds_the_final_finetune(tmp_path):
    weights = tiny_weights_file(tmp_path / "tinycnn.weights.h5")
    fake = FakeStages()
    stages = fake.stages()
    stages.tune = default_stages().tune  # the real KerasTuner search; the other stages are stand-ins
    seen = []
    finetune = stages.finetune

    def record(cfg):
        seen.append(cfg)
        finetune(cfg)

    stages.finetune = record
    config = study_config(tmp_path / "study", backbones=["tinycnn"], finetune={**FAST_TRAINING, "weights": str(weights)},
                          tune=TuneOptions(tuner="hyperband", max_trials=2, epochs=2))
    outcome = run_compare(config, stages)
    tuning = outcome.results["tuning"]["tinycnn"]
    assert len(tuning["trials"]) == 2  # Hyperband repeats its brackets up to the trial budget
    assert all(t["status"] == "COMPLETED" and 0 <= t["score"] <= 1 for t in tuning["trials"])
    best = tuning["best"]
    # pretrained (a weights file): the unfreeze depth is searched too
    assert {"learning_rate", "dropout", "batch_size", "unfreeze_depth"} <= set(best["hyperparameters"])
    for option, value in best["options"].items():
        assert getattr(seen[0], option) == value
    md = (tmp_path / "study" / "report.md").read_text()
    assert "## Hyperparameter tuning" in md and "Used for the final fine-tune" in md

    # the finished search is not run again
    calls: dict[str, int] = {}
    run_compare(config, counting(stages, calls))
    assert "tune" not in calls


def test_limited_data_study_draws_learning_curves(tmp_path):
    weights = tiny_weights_file(tmp_path / "tinycnn.weights.h5")
    fake = FakeStages()
    stages = fake.stages()
    real = default_stages(lambda line: None)
    stages.finetune = real.finetune  # real training
    config = study_config(tmp_path / "study", backbones=["tinycnn"], demo_per_class=16,
                          finetune={**FAST_TRAINING, "weights": str(weights)}, data_fractions=[0.25, 1.0])
    outcome = run_compare(config, stages)
    limited = outcome.results["limited_data"]
    points = {(p["weights"] != "none", p["fraction"]): p for p in limited["points"]}
    assert set(points) == {(True, 0.25), (True, 1.0), (False, 0.25), (False, 1.0)}
    assert points[(True, 0.25)]["n_train"] < points[(True, 1.0)]["n_train"]
    assert all(0 <= p["accuracy"] <= 1 and p["n_test"] == points[(True, 1.0)]["n_test"] for p in points.values())
    # each subset kept the study's validation and test parts
    study_split = json.loads((tmp_path / "study" / "split.json").read_text())["splits"]
    subset = json.loads((tmp_path / "study" / "limited_data" / "splits" / "split-0.25.json").read_text())["splits"]
    assert subset["test"] == study_split["test"] and subset["val"] == study_split["val"]
    assert len(subset["train"]) < len(study_split["train"])
    png = tmp_path / "study" / "plots" / "learning_curves.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    assert "## Limited-data study" in (tmp_path / "study" / "report.md").read_text()

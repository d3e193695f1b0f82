"""Study bookkeeping with stand-in stages (no TensorFlow): what is skipped, redone, refused on resume.

The stand-ins write the files of the stage contracts (run.json + model, manifest + artifacts, bench
results.json) so the study's completeness checks run against the real formats. The real stages are
exercised end to end in tests/studies/test_studies_compare.py; the stand-ins live in tests/study_fakes.py.
"""

from __future__ import annotations

import json

import pytest
from study_fakes import FakeStages, config, mtimes

from edgexfer.errors import EdgexferError
from edgexfer.io import read_json, write_json
from edgexfer.studies.compare import run_compare
from edgexfer.studies.limited_data import parse_fractions, subsample_train


def test_resume_skips_every_finished_stage(tmp_path):
    fake = FakeStages()
    first = run_compare(config(tmp_path / "study"), fake.stages())
    assert fake.calls == {"finetune": ["alpha", "beta"], "export": ["alpha", "beta"], "bench": ["alpha", "beta"]}
    assert first.results["recommendation"]["backbone"] == "alpha"  # beta is more accurate but over 1.2 ms
    before = mtimes(tmp_path / "study")

    again = FakeStages()
    second = run_compare(config(tmp_path / "study"), again.stages())
    assert again.calls == {"finetune": [], "export": [], "bench": []}
    assert second.ran["finetune"] == [] and second.ran["bench"] == []
    assert mtimes(tmp_path / "study") == before
    assert (tmp_path / "study" / "report.html").is_file()


def test_changed_bench_option_redoes_only_the_bench_and_tampered_artifact_redoes_export(tmp_path):
    study = tmp_path / "study"
    run_compare(config(study), FakeStages().stages())
    fake = FakeStages()
    run_compare(config(study, bench={"iterations": 9}), fake.stages())
    assert fake.calls == {"finetune": [], "export": [], "bench": ["alpha", "beta"]}

    (study / "exported" / "beta" / "model_int8.onnx").write_bytes(b"tampered")
    fake = FakeStages()
    run_compare(config(study, bench={"iterations": 9}), fake.stages())
    assert fake.calls == {"finetune": [], "export": ["beta"], "bench": ["beta"]}


def test_changed_training_option_is_refused_not_silently_retrained(tmp_path):
    study = tmp_path / "study"
    run_compare(config(study), FakeStages().stages())
    with pytest.raises(EdgexferError, match="trained with other options"):
        run_compare(config(study, finetune={"epochs": 3, "weights": "none"}), FakeStages().stages())
    with pytest.raises(EdgexferError, match="another split"):
        run_compare(config(study, seed=1), FakeStages().stages())


def test_interrupted_finetune_is_resumed(tmp_path):
    study = tmp_path / "study"
    fake = FakeStages()
    real_finetune = fake.finetune

    def interrupted(cfg):
        if cfg.backbone == "beta":
            raise KeyboardInterrupt
        real_finetune(cfg)

    fake.finetune = interrupted
    with pytest.raises(KeyboardInterrupt):
        run_compare(config(study), fake.stages())
    again = FakeStages()
    run_compare(config(study), again.stages())
    assert again.calls["finetune"] == ["beta"] and again.calls["bench"] == ["beta"]


def test_a_failed_backbone_does_not_stop_the_others_and_gate_failures_are_reported(tmp_path):
    study = tmp_path / "study"
    fake = FakeStages(fail_export_for="alpha", break_gate_for="beta")
    with pytest.raises(EdgexferError, match="1 of 2 job"):
        run_compare(config(study, latency_budget_ms=None), fake.stages())
    results = json.loads((study / "results.json").read_text())
    status = {b["name"]: b["status"] for b in results["backbones"]}
    assert status == {"alpha": "failed", "beta": "done"}
    rec = results["recommendation"]
    assert (rec["backbone"], rec["precision"]) == ("beta", "fp16")  # int8 broke the gate
    md = (study / "report.md").read_text()
    assert "**Incomplete:** alpha: export failed on purpose" in md and "**FAIL**" in md


def test_limited_data_points_reuse_the_comparison_run_and_resume(tmp_path):
    study = tmp_path / "study"
    fake = FakeStages()
    cfg = config(study, backbones=["alpha"], data_fractions=[0.5, 1.0],
                 finetune={"epochs": 1, "weights": str(tmp_path / "w.weights.h5")})
    first = run_compare(cfg, fake.stages())
    # 1 comparison run + (0.5 transfer, 0.5 scratch, 1.0 scratch); 1.0 transfer is the comparison run
    assert fake.calls["finetune"] == ["alpha"] * 4
    points = first.results["limited_data"]["points"]
    assert len(points) == 4 and {p["transfer"] for p in points} == {True, False}
    assert next(p for p in points if p["transfer"] and p["fraction"] == 1.0)["run_dir"] == "comparison run"
    n_train = {p["fraction"]: p["n_train"] for p in points}
    assert n_train[0.5] < n_train[1.0]
    assert (study / "plots" / "learning_curves.png").is_file()
    again = FakeStages()
    run_compare(cfg, again.stages())
    assert again.calls["finetune"] == []


def test_subsample_is_stratified_seeded_nested_and_keeps_val_test(tmp_path):
    from edgexfer.data.sources import discover
    from edgexfer.data.splits import make_split
    from edgexfer.data.synthetic import generate_demo

    split = make_split(discover(generate_demo(tmp_path / "demo", per_class=20, size=32)), seed=0)
    small, medium = subsample_train(split, 0.25, seed=3), subsample_train(split, 0.5, seed=3)
    assert {s.ref for s in small.samples("train")} <= {s.ref for s in medium.samples("train")}
    assert small.samples("test") == split.samples("test") and small.samples("val") == split.samples("val")
    per_class = small.counts()["train"]
    full = split.counts()["train"]
    assert all(per_class[c] == max(1, round(full[c] * 0.25)) for c in full)
    assert subsample_train(split, 0.25, seed=3).samples("train") == small.samples("train")
    assert parse_fractions("1.0,0.1,0.25") == [0.1, 0.25, 1.0]
    with pytest.raises(EdgexferError):
        parse_fractions("0,0.5")


@pytest.mark.parametrize("args, message", [
    (["--backbones", "resnet5O"], "unknown backbone 'resnet5o'"),
    (["--backbones", "tinycnn,tinycnn"], "listed twice"),
    (["--backbones", "tinycnn", "--data-fractions", "0.5,2"], "must be fractions in (0, 1]"),
    (["--backbones", "tinycnn", "--data", "/nonexistent/data"], "data path /nonexistent/data does not exist"),
    (["--backbones", "tinycnn,inceptionv3", "--image-size", "32"], "below the minimum of 75 px for backbone inceptionv3"),
])
def test_compare_bad_input_is_one_line_exit_2(tmp_path, args, message):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    base = ["compare", "--data", "demo", "--out", str(tmp_path / "study")]
    for i in range(0, len(args), 2):  # later options win: replace the default --data
        if args[i] in base:
            base[base.index(args[i]) + 1] = args[i + 1]
        else:
            base += args[i:i + 2]
    result = CliRunner().invoke(cli, base)
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.startswith("edgexfer: error:")]
    assert len(lines) == 1 and message in lines[0], result.output


def test_a_bad_stage_option_fails_before_any_work(tmp_path):
    from edgexfer.studies.compare import default_stages

    stages = default_stages(lambda line: None)
    with pytest.raises(EdgexferError, match="unknown fine-tune option 'epoch'.*did you mean epochs"):
        run_compare(config(tmp_path / "a", backbones=["tinycnn"], finetune={"epoch": 2}), stages)
    with pytest.raises(EdgexferError, match="unknown calibration method"):
        run_compare(config(tmp_path / "b", backbones=["tinycnn"], export={"calibration_method": "median"}), stages)
    with pytest.raises(EdgexferError, match="dropout"):
        run_compare(config(tmp_path / "c", backbones=["tinycnn"], finetune={"dropout": 1.5}), stages)
    assert not any((tmp_path / name).exists() for name in ("a", "b", "c"))


def test_a_study_config_holds_the_stage_configs(tmp_path):
    from edgexfer.config import FinetuneConfig
    from edgexfer.evaluate.bench import BenchConfig
    from edgexfer.export.config import ExportConfig

    c = config(tmp_path / "s", finetune={"epochs": 2}, export={"calibration_size": 10}, seed=3)
    assert isinstance(c.finetune, FinetuneConfig) and (c.finetune.epochs, c.finetune.seed) == (2, 3)
    assert isinstance(c.export, ExportConfig) and c.export.fp16 and c.export.int8 and c.export.calibration_size == 10
    assert isinstance(c.bench, BenchConfig) and c.bench.iterations == 5
    given = config(tmp_path / "s", finetune=FinetuneConfig(data="demo", backbone="alpha", out="elsewhere", epochs=4))
    assert given.finetune.epochs == 4 and given.finetune.out == str(tmp_path / "s" / "runs" / "alpha")
    with pytest.raises(EdgexferError, match=r"the study sets the fine-tune option\(s\) out for each backbone"):
        config(tmp_path / "s", finetune={"out": "elsewhere"})
    with pytest.raises(EdgexferError, match="are a ExportConfig, not a FinetuneConfig"):
        config(tmp_path / "s", finetune=ExportConfig(run_dir="r"))
    with pytest.raises(EdgexferError, match="unknown export option 'calibraton_size' .did you mean calibration_size"):
        config(tmp_path / "s", export={"calibraton_size": 10})
    with pytest.raises(EdgexferError, match="unknown bench option 'iteration'"):
        config(tmp_path / "s", bench={"iteration": 10})
    assert not (tmp_path / "s").exists()


def test_an_unknown_option_in_the_config_file_is_one_line_exit_2(tmp_path):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    (tmp_path / "study.toml").write_text("epoch = 2\nhead = 'gap'\n")
    result = CliRunner().invoke(cli, ["compare", "--data", "demo", "--backbones", "tinycnn", "--out",
                                      str(tmp_path / "study"), "--config", str(tmp_path / "study.toml")])
    lines = [line for line in result.output.splitlines() if line.startswith("edgexfer: error:")]
    assert result.exit_code == 2 and len(lines) == 1, result.output
    assert "unknown fine-tune option 'epoch' (did you mean epochs?)" in lines[0]
    assert not (tmp_path / "study").exists()


def test_a_finetune_recorded_by_the_first_state_format_is_kept_or_refused(tmp_path):
    """Studies begun before study-state/2: a finished fine-tune with the same options is not retrained."""
    study = tmp_path / "study"
    run_compare(config(study), FakeStages().stages())
    model_sha = read_json(study / "runs" / "alpha" / "run.json")["model_sha256"]

    def legacy(options):
        write_json(study / "state" / "alpha.json", {
            "schema": "edgexfer.study-state/1", "finetune": {"fingerprint": "0123", "options": options,
                                                             "model_sha256": model_sha, "finished": "earlier"}})

    legacy({"epochs": 1, "weights": "none", "data": "/elsewhere", "backbone": "alpha", "seed": 0})
    fake = FakeStages()
    run_compare(config(study), fake.stages())
    assert fake.calls == {"finetune": [], "export": ["alpha"], "bench": ["alpha"]}
    assert read_json(study / "state" / "alpha.json")["schema"] == "edgexfer.study-state/2"

    legacy({"epochs": 7, "weights": "none", "data": "/elsewhere", "backbone": "alpha", "seed": 0})
    with pytest.raises(EdgexferError, match="trained with other options"):
        run_compare(config(study), FakeStages().stages())
    assert (study / "runs" / "alpha" / "model.keras").is_file()


def test_each_backbone_bench_pick_reaches_the_study_and_its_recommendation(tmp_path):
    # the bench picked FP16 (as a bench whose rule did would): the study follows it, though its own rule over the
    # rows alone would take alpha's INT8 (as accurate, faster)
    outcome = run_compare(config(tmp_path / "study"), FakeStages(recommend="fp16").stages())
    deploy = {b["name"]: b["deploy"] for b in outcome.results["backbones"]}
    assert deploy["alpha"]["status"] == "ok" and (deploy["alpha"]["artifact"], deploy["alpha"]["runtime"]) == ("fp16", "ort-cpu")
    assert deploy["alpha"]["p50_ms"] == pytest.approx(0.9)
    rec = outcome.results["recommendation"]
    assert (rec["backbone"], rec["artifact"], rec["bench_recommended"]) == ("alpha", "fp16", True), rec
    assert "what alpha's bench recommends" in rec["reason"]
    written = read_json(tmp_path / "study" / "results.json")
    assert written["recommendation"] == rec and written["backbones"][1]["deploy"] == deploy["beta"]
    report = (tmp_path / "study" / "report.md").read_text()
    assert "deploy: fp16 on ort-cpu, 0.9 ms" in report and "over the 1.2 ms budget" in report


def test_a_bench_that_passed_nothing_says_why_in_the_study(tmp_path):
    fake = FakeStages(recommend=True, break_gate_for="beta")
    fake.recommend = "int8"  # beta's INT8 broke its gate: no row left to recommend
    run_compare(config(tmp_path / "study", latency_budget_ms=None), fake.stages())
    study = read_json(tmp_path / "study" / "results.json")
    deploy = {b["name"]: b["deploy"] for b in study["backbones"]}
    assert deploy["alpha"]["artifact"] == "int8"
    assert deploy["beta"]["status"] == "none" and "int8 on ort-cpu failed (accuracy dropped)" in deploy["beta"]["reason"]
    assert "nothing passed: int8 on ort-cpu failed" in (tmp_path / "study" / "report.md").read_text()

"""The one resumable-stage helper every study stage goes through: fingerprint -> skip or redo -> verify -> record."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgexfer.errors import EdgexferError, GateFailed
from edgexfer.io import sha256_file
from edgexfer.studies.resumable import STATE_SCHEMA, Stage, StateFile, changed_options, run_stage


class Maker:
    """A stage that writes out/result.txt; counts its runs and the resume flag it was given."""

    def __init__(self, folder: Path, text: str = "made", fail: BaseException | None = None, write: bool = True):
        self.folder, self.text, self.fail, self.write = folder, text, fail, write
        self.runs: list[bool] = []

    def output(self):
        path = self.folder / "result.txt"
        return (path.read_text(), sha256_file(path)) if path.is_file() else None

    def work(self, resume: bool) -> None:
        self.runs.append(resume)
        self.folder.mkdir(parents=True, exist_ok=True)
        if self.write:
            (self.folder / "result.txt").write_text(self.text)
        if self.fail is not None:
            raise self.fail

    def stage(self, fingerprint: str = "f1", **options) -> Stage:
        return Stage("make", "x: make", fingerprint, {"n": 1}, self.output, self.work, clear=self.folder, **options)


def test_skip_redo_verify_and_record(tmp_path):
    state = StateFile.load(tmp_path / "state.json")
    maker = Maker(tmp_path / "out")
    lines: list[str] = []
    first = run_stage(maker.stage(), state, tmp_path, lines.append)
    assert first.ran and first.value == "made" and maker.runs == [False]
    record = StateFile.load(tmp_path / "state.json").data
    assert record["schema"] == STATE_SCHEMA and record["make"]["fingerprint"] == "f1"
    assert record["make"]["output_sha256"] == sha256_file(tmp_path / "out" / "result.txt")
    assert "make" in record["durations_s"] and record["make"]["finished"]

    # same fingerprint, same output: skipped, nothing written
    before = (tmp_path / "state.json").stat().st_mtime_ns
    again = run_stage(maker.stage(), StateFile.load(tmp_path / "state.json"), tmp_path, lines.append)
    assert not again.ran and again.value == "made" and maker.runs == [False]
    assert (tmp_path / "state.json").stat().st_mtime_ns == before and lines[-1] == "x: make finished before, skipped"

    # an output changed behind the study's back, other options, or a stage before that ran again: redone
    (tmp_path / "out" / "result.txt").write_text("tampered")
    assert run_stage(maker.stage(), StateFile.load(tmp_path / "state.json"), tmp_path, lines.append).ran
    assert run_stage(maker.stage("f2"), StateFile.load(tmp_path / "state.json"), tmp_path, lines.append).ran
    assert run_stage(maker.stage("f2", redo=True), StateFile.load(tmp_path / "state.json"), tmp_path, lines.append).ran
    assert maker.runs == [False, False, False, False]


def test_an_interrupted_stage_resumes_only_with_the_same_options(tmp_path):
    state = StateFile.load(tmp_path / "state.json")
    broken = Maker(tmp_path / "out", fail=KeyboardInterrupt(), write=False)
    with pytest.raises(KeyboardInterrupt):
        run_stage(broken.stage(resumes=True), state, tmp_path, lambda line: None)
    (tmp_path / "out" / "partial").write_text("checkpoint")
    maker = Maker(tmp_path / "out")
    run_stage(maker.stage(resumes=True), StateFile.load(tmp_path / "state.json"), tmp_path, lambda line: None)
    assert maker.runs == [True] and (tmp_path / "out" / "partial").is_file()  # kept: the work carries on from it

    other = Maker(tmp_path / "out2", fail=KeyboardInterrupt(), write=False)
    with pytest.raises(KeyboardInterrupt):
        run_stage(other.stage(resumes=True), StateFile.load(tmp_path / "s2.json"), tmp_path, lambda line: None)
    (tmp_path / "out2" / "partial").write_text("checkpoint of other options")
    fresh = Maker(tmp_path / "out2")
    run_stage(fresh.stage("f2", resumes=True), StateFile.load(tmp_path / "s2.json"), tmp_path, lambda line: None)
    assert fresh.runs == [False] and not (tmp_path / "out2" / "partial").exists()  # cleared: a fresh start


def test_refused_change_incomplete_output_and_tolerated_errors(tmp_path):
    maker = Maker(tmp_path / "out")
    run_stage(maker.stage(), StateFile.load(tmp_path / "state.json"), tmp_path, lambda line: None)
    refuse = ("trained with other options", "use another --out")
    with pytest.raises(EdgexferError, match="trained with other options. use another --out"):
        run_stage(maker.stage("f2", refuse_change=refuse), StateFile.load(tmp_path / "state.json"), tmp_path,
                  lambda line: None)
    assert maker.runs == [False]

    empty = Maker(tmp_path / "empty", write=False)
    with pytest.raises(EdgexferError, match="x: make ended without a complete output"):
        run_stage(empty.stage(), StateFile.load(tmp_path / "e.json"), tmp_path, lambda line: None)
    assert not StateFile.load(tmp_path / "e.json").stage("make").get("finished")

    gate = Maker(tmp_path / "gate", fail=GateFailed("accuracy gate failed", "see the table"))
    lines: list[str] = []
    done = run_stage(gate.stage(tolerate=(GateFailed,)), StateFile.load(tmp_path / "g.json"), tmp_path, lines.append)
    assert done.ran and lines[-1] == "x: make: accuracy gate failed. see the table."
    with pytest.raises(GateFailed):  # not tolerated: it propagates, and the stage is not recorded finished
        run_stage(gate.stage("f3"), StateFile.load(tmp_path / "g.json"), tmp_path, lambda line: None)


def test_a_stage_folder_outside_the_study_is_never_cleared(tmp_path):
    outside = tmp_path / "user-data"
    outside.mkdir()
    (outside / "keep.txt").write_text("precious")
    with pytest.raises(ValueError):
        run_stage(Maker(outside).stage(), StateFile.load(tmp_path / "s.json"), tmp_path / "study", lambda line: None)
    assert (outside / "keep.txt").read_text() == "precious"


def test_changed_options_are_those_that_differ_from_the_defaults():
    from edgexfer.config import FinetuneConfig

    config = FinetuneConfig(data="demo", backbone="tinycnn", out="runs/a", epochs=3, split_fractions=[0.6, 0.2, 0.2])
    assert changed_options(config, skip=("data", "out"), keep=("seed",)) == {
        "backbone": "tinycnn", "epochs": 3, "seed": 0, "split_fractions": [0.6, 0.2, 0.2]}

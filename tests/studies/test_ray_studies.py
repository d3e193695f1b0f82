"""Studies on Ray (``--executor ray``), on one machine: the same results as in-process, failures
reported per job while the others finish, and resume.

One local Ray instance (2 CPUs, a 200 MB object store) serves the module and is shut down at its
end; its workers find the test helpers (and this module) through PYTHONPATH and register the second test backbone
at start-up (``fixtures_study.register_studycnn``). Each job runs in a fresh worker process, so a
real job pays TensorFlow's import (a few seconds) on top of its work.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest
from fixtures_study import register_studycnn, study_config
from study_fakes import FakeStages

from edgexfer.errors import EdgexferError
from edgexfer.studies.compare import CompareConfig, run_compare
from edgexfer.studies.executors import ExecutorConfig

ray = pytest.importorskip("ray")

TESTS = Path(__file__).resolve().parents[1]
RAY = ExecutorConfig(kind="ray")


@pytest.fixture(scope="module")
def ray_instance():
    """A local Ray instance for the module (started once: a few seconds)."""
    # the tests' root (fixtures_study, study_fakes) and this folder (SlowBeta below: jobs unpickle it there)
    path = os.pathsep.join([str(TESTS), str(Path(__file__).parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    ray.init(address="local", num_cpus=2, object_store_memory=200 * 1024**2, include_dashboard=False,
             logging_level="WARNING",
             runtime_env={"env_vars": {"PYTHONPATH": path, "CUDA_VISIBLE_DEVICES": ""},
                          "worker_process_setup_hook": "fixtures_study.register_studycnn"})
    yield
    ray.shutdown()


@pytest.fixture
def studycnn(monkeypatch):
    """SECOND_BACKBONE registered in this process for one test (the registry is restored afterwards)."""
    from edgexfer.backbones import registry

    registry.list_backbones()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return register_studycnn()


def fake_config(out: Path, executor: ExecutorConfig, **overrides) -> CompareConfig:
    options = dict(data="demo", backbones=["alpha", "beta"], out=out, demo_per_class=6, demo_size=32,
                   finetune={"epochs": 1, "weights": "none"}, bench={"iterations": 5}, executor=executor,
                   log=lambda line: None)
    return CompareConfig(**(options | overrides))


# what differs between two runs whoever runs them: clocks, the machine's load, the study's own folder (the
# data root, which split.json records too), and the hash of model.keras (a zip archive stamped with its save time)
VOLATILE = {"created", "study_dir", "durations_s", "latency_p50_ms", "latency_p90_ms", "throughput_ips", "machine",
            "path", "root", "split_sha256", "model_sha256", "pareto", "recommendation"}


def comparable(results: dict) -> dict:
    """results.json without what depends on the clock or the folder; everything the models computed stays."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in VOLATILE}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value

    return strip(results)


def stage_files(study: Path) -> dict[str, int]:
    return {str(p.relative_to(study)): p.stat().st_mtime_ns for d in ("runs", "exported", "benchmarks", "state")
            for p in (study / d).rglob("*") if p.is_file()}


@pytest.mark.slow
def test_ray_study_matches_the_local_one_and_resumes(tmp_path, ray_instance, studycnn, local_compare_study):
    # the same study in-process (run once for the session: fixtures_study.local_compare_study) and on Ray
    local = local_compare_study.outcome
    on_ray = run_compare(study_config(tmp_path / "ray", executor=RAY))
    assert on_ray.ran["finetune"] and sorted(on_ray.ran["bench"]) == ["studycnn", "tinycnn"]
    written = {"local": json.loads(local_compare_study.results_text),
               "ray": json.loads((tmp_path / "ray" / "results.json").read_text())}
    assert [b["status"] for b in written["ray"]["backbones"]] == ["done", "done"]
    assert comparable(written["ray"]) == comparable(written["local"])
    assert on_ray.results["recommendation"]["status"] == local.results["recommendation"]["status"]

    # the driver again: every job is found finished, nothing is redone or rewritten
    before = stage_files(tmp_path / "ray")
    again = run_compare(study_config(tmp_path / "ray", executor=RAY))
    assert not any(again.ran.values())
    assert stage_files(tmp_path / "ray") == before


@pytest.mark.slow  # about 35 s: a Ray instance and four worker processes
def test_a_failed_ray_job_is_reported_while_the_other_finishes_then_resumes(tmp_path, ray_instance):
    study = tmp_path / "study"
    with pytest.raises(EdgexferError, match=r"1 of 2 job\(s\) failed \(alpha: export failed on purpose"):
        run_compare(fake_config(study, RAY), FakeStages(fail_export_for="alpha").stages())
    results = json.loads((study / "results.json").read_text())
    status = {b["name"]: (b["status"], b["error"]) for b in results["backbones"]}
    assert status == {"alpha": ("failed", "export failed on purpose. fix it."), "beta": ("done", None)}
    assert {r["backbone"] for r in results["results"]} == {"beta"}
    assert "alpha: export failed on purpose" in (study / "report.md").read_text()

    # fixed: the next run does only what alpha lacks (its fine-tune is kept) and nothing of beta; the
    # learning-curve points added now are Ray jobs too (at fraction 1 the comparison run is reused)
    beta = {k: v for k, v in stage_files(study).items() if "beta" in k}
    outcome = run_compare(fake_config(study, RAY, data_fractions=[0.5, 1.0]), FakeStages().stages())
    assert outcome.ran["finetune"] == [] and outcome.ran["export"] == ["alpha"] and outcome.ran["bench"] == ["alpha"]
    assert {k: v for k, v in stage_files(study).items() if "beta" in k} == beta
    assert [b["status"] for b in outcome.results["backbones"]] == ["done", "done"]
    assert sorted(outcome.ran["limited_data"]) == ["alpha/none/0.5", "beta/none/0.5"]
    points = outcome.results["limited_data"]["points"]
    assert {(p["backbone"], p["fraction"], p["run_dir"] == "comparison run") for p in points} == {
        (b, f, f == 1.0) for b in ("alpha", "beta") for f in (0.5, 1.0)}


class SlowBeta(FakeStages):
    """beta's fine-tune takes two minutes: long enough to interrupt the driver while it runs."""

    def finetune(self, cfg):
        if cfg.backbone == "beta":
            time.sleep(120)
        super().finetune(cfg)


@pytest.mark.slow  # about 25 s
def test_interrupting_the_driver_cancels_its_jobs_and_the_next_run_resumes(tmp_path, ray_instance):
    study = tmp_path / "study"

    def interrupt_when_alpha_is_done(line: str) -> None:
        if "alpha done" in line:
            raise KeyboardInterrupt  # as Ctrl-C in the driver while beta still trains

    start = time.perf_counter()
    with pytest.raises(KeyboardInterrupt):
        run_compare(fake_config(study, RAY, log=interrupt_when_alpha_is_done), SlowBeta().stages())
    assert time.perf_counter() - start < 60  # beta's task was cancelled, not waited for
    assert not (study / "results.json").exists() and not (study / "runs" / "beta" / "run.json").exists()
    alpha = {k: v for k, v in stage_files(study).items() if "alpha" in k}

    outcome = run_compare(fake_config(study, RAY), FakeStages().stages())
    assert outcome.ran["finetune"] == ["beta"] and outcome.ran["bench"] == ["beta"]  # alpha's job was done
    assert {k: v for k, v in stage_files(study).items() if "alpha" in k} == alpha
    assert [b["status"] for b in outcome.results["backbones"]] == ["done", "done"]

"""`--precision auto` serves what the bench recommends (results.json's ``recommended``) when its bytes are on disk
and its runtime can serve here, so bench, predict and package name the same pair; otherwise today's rule answers
and the reason says why the bench's pick was not taken."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures_handmade import FAST, LOOSE

from edgexfer.cli import cli
from edgexfer.contracts.bench import Recommendation
from edgexfer.evaluate.exported import load_export
from edgexfer.predict import BenchEvidence, GateVerdict, Predictor, choose_artifact


def _evidence(export, recommended: Recommendation | None) -> BenchEvidence:
    """Every artifact passed on ort-cpu; INT8 is the fastest per image (the rule predict had on its own)."""
    verdicts = tuple(GateVerdict(name, "ort-cpu", True, (), ms, sha256=export.artifact(name).sha256)
                     for name, ms in (("fp32", 2.0), ("fp16", 1.0), ("int8", 0.5)))
    return BenchEvidence(Path("results.json"), verdicts, recommended=recommended)


def _rec(export, artifact: str, runtime: str = "ort-cpu", sha256: str | None = None) -> Recommendation:
    return Recommendation(artifact=artifact, precision=artifact, runtime=runtime,
                          sha256=sha256 or export.artifact(artifact).sha256, batch=1, p50_ms=1.0,
                          speedup_vs_reference=2.0, margin=None)


def test_auto_takes_the_bench_recommendation_over_its_own_rule(handmade_export):
    export = load_export(handmade_export)
    own = choose_artifact(export, "auto", "auto", evidence=_evidence(export, None))
    assert own.artifact.name == "int8" and "names none" in own.reason  # results without one: today's rule, said so
    chosen = choose_artifact(export, "auto", "auto", evidence=_evidence(export, _rec(export, "fp16")))
    assert (chosen.artifact.name, chosen.runtime.name) == ("fp16", "ort-cpu")
    assert chosen.reason.startswith("the bench's recommendation"), chosen.reason


@pytest.mark.parametrize("case, expected", [
    ("other bytes", "judged other bytes of model_fp16.onnx"),
    ("runtime predict cannot serve", "edgexfer serves with"),
    ("another runtime asked", "--runtime ort-cpu was asked for"),
])
def test_a_recommendation_that_cannot_be_served_falls_back_and_says_why(handmade_export, case, expected):
    export = load_export(handmade_export)
    rec = {"other bytes": _rec(export, "fp16", sha256="0" * 64),
           "runtime predict cannot serve": _rec(export, "fp16", runtime="ov-gpu"),
           "another runtime asked": _rec(export, "fp16", runtime="ov-cpu")}[case]
    chosen = choose_artifact(export, "auto", "ort-cpu" if case == "another runtime asked" else "auto",
                             evidence=_evidence(export, rec))
    assert chosen.artifact.name == "int8", chosen.reason  # the fastest that passed here
    assert "not the bench's recommendation" in chosen.reason and expected in chosen.reason, chosen.reason
    assert "\n" not in chosen.line()


def test_bench_predict_and_package_name_the_same_pair(export_copy, tmp_path):
    bench = export_copy.parent / "bench"
    result = CliRunner().invoke(cli, ["bench", str(export_copy), "--out", str(bench), *FAST, *LOOSE])
    assert result.exit_code == 0, result.output
    path = bench / "results.json"
    results = json.loads(path.read_text())
    passed = [r for r in results["results"] if r["gate"]["passed"]]
    assert len(passed) >= 2, [r["gate"] for r in results["results"]]
    # a recommendation the old rule would not make: the slowest row that passed (the file stays valid)
    slowest = max(passed, key=lambda r: r["latency_ms"]["1"]["p50"])
    results["recommended"].update(artifact=slowest["artifact"], precision=slowest["precision"],
                                  runtime=slowest["runtime"], sha256=slowest["sha256"],
                                  p50_ms=slowest["latency_ms"]["1"]["p50"])
    path.write_text(json.dumps(results))
    with Predictor(export_copy) as model:
        assert model.artifact == slowest["artifact"], model.choice.reason
        assert "bench's recommendation" in model.choice.reason
    pytest.importorskip("tritonclient.grpc.model_config_pb2", reason="tritonclient (the serve extra) is not installed")
    packaged = CliRunner().invoke(cli, ["package", str(export_copy), "--out", str(tmp_path / "models")])
    assert packaged.exit_code == 0, packaged.output
    assert f"{slowest['artifact']} on {slowest['runtime']}" in packaged.output, packaged.output

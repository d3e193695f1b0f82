"""The on-disk formats are defined once (edgexfer.contracts) and docs/contracts.md cannot drift from them;
their readers refuse foreign and old files in one line; every config refuses unknown option names alike."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from edgexfer.contracts import bench, calibration, check_known_keys, layers, manifest, predictions, run, study
from edgexfer.errors import EdgexferError

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_LITERAL = re.compile(r'"(edgexfer\.[a-z_-]+/[0-9]+)"')
DOC_SCHEMA = re.compile(r"edgexfer\.[a-z_-]+/[0-9]+")
CONTRACT_MODULES = (run, calibration, manifest, bench, study, layers)
#: the dataclasses of each format and the JSON keys they stand for (``extra`` holds keys beyond them)
CONTRACT_CLASSES = (run.RunRecord, run.RunMetrics, calibration.CalibrationRecord, manifest.SourceRun,
                    manifest.ExportManifest, manifest.Int8Quantizer, manifest.QuantizerCandidate, bench.BenchRow,
                    bench.Recommendation, study.StudyRow, layers.LayerReport, layers.LayerRow,
                    layers.KeptNode)


def _sources() -> list[Path]:
    return sorted([*ROOT.glob("edgexfer/**/*.py"), *ROOT.glob("benchmarks/*.py")])


def _docs() -> str:
    return "\n".join(p.read_text() for p in sorted((ROOT / "docs").glob("*.md")))


def test_each_schema_string_is_written_once_in_the_code():
    seen: dict[str, list[str]] = {}
    for path in _sources():
        for literal in SCHEMA_LITERAL.findall(path.read_text()):
            seen.setdefault(literal, []).append(str(path.relative_to(ROOT)))
    repeated = {schema: where for schema, where in seen.items() if len(where) > 1}
    assert not repeated, f"schema strings defined more than once: {repeated}"
    for module in CONTRACT_MODULES:  # and the contract formats are among them, in their contract module
        assert seen[module.SCHEMA] == [f"edgexfer/contracts/{module.__name__.rsplit('.', 1)[1]}.py"]
    for schema in (predictions.PREDICTIONS_SCHEMA, predictions.GRADCAM_SCHEMA):
        assert seen[schema] == ["edgexfer/contracts/predictions.py"]


def test_docs_name_every_schema_of_the_code_and_no_other():
    code = {literal for path in _sources() for literal in SCHEMA_LITERAL.findall(path.read_text())}
    docs = set(DOC_SCHEMA.findall(_docs()))
    assert code - docs == set(), f"schemas the docs do not describe: {sorted(code - docs)}"
    assert docs - code == set(), f"schemas the docs name but the code lacks: {sorted(docs - code)}"


@pytest.mark.parametrize("cls", CONTRACT_CLASSES, ids=lambda c: c.__name__)
def test_docs_name_every_field_of_each_format(cls):
    text = (ROOT / "docs" / "contracts.md").read_text()
    missing = [f.name for f in dataclasses.fields(cls)
               if f.name not in ("extra", "path") and f'"{f.name}"' not in text]
    assert not missing, f"docs/contracts.md does not describe {cls.__name__} field(s) {missing}"


def _record(tmp_path: Path, name: str, data) -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data))
    return path


@pytest.mark.parametrize("module, name", [(run, "run.json"), (calibration, "set.json"), (manifest, "manifest.json")])
def test_readers_refuse_foreign_and_old_files_in_one_line(tmp_path, module, name):
    readers = {run: lambda p: run.load_run(p.parent), calibration: calibration.read_calibration_record,
               manifest: lambda p: manifest.read_manifest(p.parent)}
    read = readers[module]
    family = module.SCHEMA.rsplit("/", 1)[0]
    cases = {"another version of this format": {"schema": f"{family}/0"},
             "not this format": {"schema": "edgexfer.bench/1"}, "no schema": {"classes": []}}
    for why, data in cases.items():
        path = _record(tmp_path, name, data)
        with pytest.raises(EdgexferError) as info:
            read(path)
        line = info.value.line()
        assert "\n" not in line and str(path) in line and why in line, line
        assert info.value.fix, line  # it says what to do


def test_study_and_bench_results_readers(tmp_path):
    _record(tmp_path, "results.json", {"schema": bench.SCHEMA, "results": []})
    with pytest.raises(EdgexferError, match="not an edgexfer study results file.*expected 'edgexfer.study/1'"):
        study.read_study_results(tmp_path)
    with pytest.raises(EdgexferError, match="not a bench results file"):
        bench.load_results(tmp_path)
    assert study.results_schema(tmp_path) == bench.SCHEMA


def test_metrics_of_an_older_run_read_under_todays_names(tmp_path):
    old = {"accuracy": 0.9, "loss": 0.3, "precision": 0.8, "recall": 0.7, "f1": 0.75, "auc": None,
           "confusion_matrix": [[9, 1], [1, 9]], "per_class": {}, "n": 20, "sanity": {"verdict": "ok"}}
    metrics = run.read_metrics(_record(tmp_path, "metrics.json", old))
    assert (metrics.precision_macro, metrics.recall_macro, metrics.sanity) == (0.8, 0.7, {"verdict": "ok"})
    (tmp_path / "new").mkdir()
    written = json.loads(run.write_metrics(tmp_path / "new", metrics).read_text())
    assert "precision" not in written and written["precision_macro"] == 0.8 and written["recall_macro"] == 0.7
    assert run.read_sanity(tmp_path / "absent", tmp_path) == {"verdict": "ok"}
    with pytest.raises(EdgexferError, match="not an edgexfer metrics file"):
        run.read_metrics(_record(tmp_path, "bad.json", {"accuracy": 1.0}))


def test_gradcam_index_round_trip_and_quiet_absence(tmp_path):
    index = predictions.GradcamIndex("runs/a", "abc", ["x", "y"], [predictions.Explanation("i.png", "i.png", "x", 0.9, "x")],
                                     extra={"selection": "misclassified", "n": 10})
    predictions.write_gradcam_index(tmp_path, index)
    assert predictions.read_gradcam_index(tmp_path) == index
    assert json.loads((tmp_path / "index.json").read_text())["schema"] == predictions.GRADCAM_SCHEMA
    assert predictions.read_gradcam_index(tmp_path / "none") is None
    _record(tmp_path, "index.json", {"schema": "edgexfer.bench/1"})
    assert predictions.read_gradcam_index(tmp_path) is None  # another file: the report shows no overlays


def test_history_round_trip_keeps_numbers(tmp_path):
    rows = [{"stage": "head", "epoch": 1, "accuracy": 0.5, "loss": 1.25, "note": ""},
            {"stage": "unfreeze-1", "epoch": -1, "accuracy": float("nan"), "loss": 1e-3, "note": "x"}]
    run.write_history(tmp_path, rows)
    back = run.read_history(tmp_path)
    assert back[0] == rows[0]
    assert back[1]["epoch"] == -1 and back[1]["loss"] == 1e-3 and back[1]["note"] == "x"
    assert back[1]["accuracy"] != back[1]["accuracy"]  # NaN stays a number
    assert run.read_history(tmp_path / "nothing") == []


def test_run_record_round_trip_and_finished_run(tmp_path):
    (tmp_path / "model.keras").write_bytes(b"weights")
    from edgexfer.io import sha256_file

    record = run.RunRecord(path=tmp_path, backbone="tinycnn", image_size=(32, 40), classes=["a", "b"],
                           model_sha256=sha256_file(tmp_path / "model.keras"), extra={"plan": []})
    record.write()
    loaded = run.load_run(tmp_path, require_files=False)
    assert loaded == record and loaded.record["schema"] == run.SCHEMA
    assert run.finished_run(tmp_path) == record
    (tmp_path / "model.keras").write_bytes(b"changed")
    assert run.finished_run(tmp_path) is None  # a replaced model is not the finished run
    with pytest.raises(EdgexferError, match="labels.json is missing"):
        run.load_run(tmp_path)


def test_bench_row_round_trip_and_tolerant_of_older_rows():
    row = bench.BenchRow(artifact="int8", precision="int8", target="cpu", format="onnx", file="m.onnx",
                         runtime="ort-cpu", provider="CPUExecutionProvider", accuracy=0.9, precision_macro=0.88,
                         recall_macro=0.87, f1=0.86, auc=None, loss=0.2, per_class={},
                         confusion_matrix=[[8, 2], [0, 10]], n=20, latency_ms={"1": {"p50": 2.0}},
                         throughput_ips={"1": 500.0}, gate={"passed": True, "reasons": []})
    assert bench.BenchRow.from_dict(row.to_dict()) == row
    assert row.baseline_accuracy == 0.5 and row.latency(1) == {"p50": 2.0}
    older = bench.BenchRow.from_dict({"artifact": "fp32", "precision": "fp32", "runtime": "ort-cpu", "accuracy": 1.0})
    assert older.precision_macro is None and older.per_class == {} and older.gate == {}
    flat = study.StudyRow.from_bench("tinycnn", row, model_usable=True)
    assert (flat.precision, flat.precision_macro, flat.latency_p50_ms, flat.throughput_ips) == ("int8", 0.88, 2.0, 500.0)


def _timed_row(artifact: str, precision: str, runtime: str, p50_at_1: float, verdict: str, reference: bool = False):
    gate = {"passed": verdict == "pass", "verdict": verdict, "reasons": [] if verdict == "pass" else ["drop"]}
    if reference:
        gate["reference"] = True
    return bench.BenchRow(artifact=artifact, precision=precision, target="cpu", format="onnx", file=f"{artifact}.onnx",
                          runtime=runtime, provider="", accuracy=0.9, precision_macro=0.9, recall_macro=0.9, f1=0.9,
                          auc=None, loss=None, per_class={}, confusion_matrix=[], n=10, agreement=1.0, max_abs_diff=0.0,
                          sha256=hashlib.sha256(f"{artifact} {runtime}".encode()).hexdigest(),
                          latency_ms={"1": {"p50": p50_at_1}, "8": {"p50": p50_at_1 / 4}}, gate=gate)


def test_bench_recommends_the_fastest_row_that_passed_its_gate():
    rows = [_timed_row("fp32", "fp32", "ort-cpu", 20.0, "pass", reference=True),
            _timed_row("int8", "int8", "ort-cpu", 6.0, "inconclusive"),  # faster, but not shown to keep FP32's answers
            _timed_row("int8", "int8", "ov-cpu", 5.0, "fail"),
            _timed_row("bf16", "bf16", "ov-cpu", 8.0, "pass"),
            _timed_row("fp32", "fp32", "ov-cpu", 16.0, "pass")]
    chosen = bench.recommend(rows)
    assert chosen is not None
    assert (chosen.artifact, chosen.runtime, chosen.sha256, chosen.batch, chosen.p50_ms) == ("bf16", "ov-cpu", rows[3].sha256, 1, 8.0)
    assert (chosen.speedup_vs_reference, chosen.margin) == (2.5, 2.0)  # 20 / 8 and the next that passed: 16 / 8
    # a tie goes to the wider precision; nothing passed (or nothing timed): no recommendation
    tie = [_timed_row("int8", "int8", "ort-cpu", 8.0, "pass"), _timed_row("fp32", "fp32", "ov-cpu", 8.0, "pass")]
    assert bench.recommend(tie).artifact == "fp32"  # type: ignore[union-attr]
    assert bench.recommend([_timed_row("fp32", "fp32", "ort-cpu", 20.0, "fail", reference=True)]) is None


def test_a_recommendation_must_name_a_row_that_passed(tmp_path):
    rows = [_timed_row("fp32", "fp32", "ort-cpu", 20.0, "pass", reference=True), _timed_row("int8", "int8", "ort-cpu", 6.0, "fail")]
    for row in rows:
        row.throughput_ips = {"1": 50.0, "8": 400.0}
        for stats in row.latency_ms.values():
            stats.update(p90=1.0, p99=1.0, mean=1.0)
    results = {"reference": "fp32", "thresholds": {"max_accuracy_drop": 0.01, "max_f1_drop": 0.01, "max_recall_drop": 0.02},
               "machine": {}, "data": {}, "skipped": [], "results": rows}
    written = bench.write_results(tmp_path, {**results, "recommended": bench.recommend(rows).to_dict()})  # type: ignore[union-attr]
    assert bench.load_results(written)["recommended"]["artifact"] == "fp32"
    wrong = {**bench.recommend(rows).to_dict(), "artifact": "int8"}  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"recommended \(int8 on ort-cpu\) is not a row whose gate passed"):
        bench.write_results(tmp_path, {**results, "recommended": wrong})


def test_unknown_option_names_are_refused_the_same_way_by_every_config(tmp_path):
    from edgexfer.api import make_config
    from edgexfer.config import FinetuneConfig
    from edgexfer.data.pipeline import AugmentConfig
    from edgexfer.evaluate.bench import BenchConfig
    from edgexfer.export.config import ExportConfig
    from edgexfer.export.pipeline import export_run

    attempts = {
        "fine-tune": lambda: FinetuneConfig.from_dict({"data": "demo", "backbone": "tinycnn", "out": "x", "epoch": 3},
                                                      where="cfg.json"),
        "export": lambda: export_run({"run_dir": str(tmp_path), "fp61": True}),
        "bench": lambda: make_config(BenchConfig, None, {"export_dir": tmp_path, "warmpu": 3}, "bench"),
        "augmentation": lambda: AugmentConfig.from_dict({"rotaton": 0.1}),
    }
    for what, attempt in attempts.items():
        with pytest.raises(EdgexferError) as info:
            attempt()
        line = info.value.line()
        assert re.match(rf"unknown {what} option '\w+'.*\(did you mean \w+\?\)\. use options of \w+Config: ", line), line
        assert info.value.exit_code == 2 and "\n" not in line
    assert not any(tmp_path.iterdir())  # refused before anything was written
    check_known_keys(ExportConfig, ["run_dir", "fp16"], "export")  # known names pass


def test_keras_runtime_loads_a_model_without_the_backbones_package(tiny_run):
    """The Keras runtime needs no edgexfer.backbones import: a run's model holds stock Keras layers only."""
    code = ("import sys; from pathlib import Path; from edgexfer.runtime import Artifact; "
            "from edgexfer.runtime.keras_runtime import KerasRuntime; "
            "rt = KerasRuntime(Artifact('keras', Path(sys.argv[1]) / 'model.keras', 'keras', 'fp32', 'any', None, 0)); "
            "import numpy as np; h, w = rt.input_spec.shape[1:3]; "
            "p = rt.predict(np.zeros((2, h, w, 3), np.float32)); "
            "print(p.shape, 'edgexfer.backbones' in sys.modules)")
    proc = subprocess.run([sys.executable, "-c", code, str(tiny_run)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "CUDA_VISIBLE_DEVICES": ""})
    assert proc.returncode == 0, proc.stderr[-2000:]
    shape, imported = proc.stdout.strip().rsplit(" ", 1)
    assert shape.startswith("(2, ") and imported == "False", proc.stdout

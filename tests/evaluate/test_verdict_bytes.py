"""A verdict is bound to the bytes it judged (issue 18): bench rows record the sha256 of the file they ran,
and Predictor, `predict` and `package` use a verdict only for a file with those bytes; bench results are
found from the export, never from the current directory; results without sha256 judge no file."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from fixtures_export import make_run_dir
from fixtures_handmade import BIAS, FAST, SIZE, WEIGHTS, make_images

from edgexfer.cli import cli
from edgexfer.errors import EdgexferError
from edgexfer.io import sha256_file

#: thresholds no INT8 of the linear model breaks: the INT8 verdict of the first bench is "passed"
LOOSE = ["--max-accuracy-drop", "1", "--max-f1-drop", "1", "--max-recall-drop", "1"]
ANOTHER_INT8 = "are for another model_int8_cpu.onnx"


def _artifacts(export: Path) -> dict[str, dict]:
    return {a["name"]: a for a in json.loads((export / "manifest.json").read_text())["artifacts"]}


def _exported(handmade_export: Path, root: Path) -> Path:
    """A copy of the hand-made export at ``root/exported/tiny``: bench's default is then ``root/benchmarks/tiny``."""
    return Path(shutil.copytree(handmade_export, root / "exported" / "tiny"))


@pytest.fixture(scope="module")
def linear_run(tmp_path_factory) -> Path:
    """A finished run whose Keras model is the hand-made linear classifier (mean colour @ W + b, softmax),
    on 60 images split 30/15/15: `edgexfer export` runs on it in seconds, and its INT8 passes a loose gate."""
    import keras

    from edgexfer.data.sources import discover
    from edgexfer.data.splits import make_split

    root = tmp_path_factory.mktemp("linear")
    split = make_split(discover(make_images(root / "data", per_class=20)), fractions=(0.5, 0.25, 0.25), seed=0)
    image = keras.Input((SIZE, SIZE, 3))
    probabilities = keras.layers.Dense(3, activation="softmax")(keras.layers.GlobalAveragePooling2D()(image))
    model = keras.Model(image, probabilities)
    model.layers[-1].set_weights([WEIGHTS, BIAS])
    return make_run_dir(root / "run", split, model)


def _export(run: Path, out: Path, method: str) -> None:
    """Our INT8 quantizer only: the calibration method then decides the INT8 bytes (auto would add NNCF's candidate,
    which the verdict's binding to bytes does not depend on)."""
    from edgexfer.export import ExportConfig, export_run

    export_run(ExportConfig(run_dir=run, out=out, fp16=True, int8=True, target="cpu", calibration=out.parent.parent
                            / "calibration", calibration_size=16, calibration_method=method, int8_min_agreement=0.0,
                            quantizer="edgexfer", progress=False))


def test_reexport_with_other_int8_bytes_is_never_served_as_gate_passed(linear_run, tmp_path, monkeypatch):
    """The reproduction of issue 18: bench an export, re-export the same run into the same folder with other
    INT8 bytes (another calibration method), then Predictor, predict and package must not call the new INT8
    "gate passed": auto falls back with one line naming the file, a named INT8 is refused."""
    from edgexfer.predict import Predictor

    export = tmp_path / "exported" / "tiny"
    _export(linear_run, export, "entropy")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # bench and predict find the results from the export, wherever they run
    benched = CliRunner().invoke(cli, ["bench", str(export), *FAST, *LOOSE])
    assert benched.exit_code == 0, benched.output
    bench = tmp_path / "benchmarks" / "tiny"  # bench's default: beside the export's parent, not in the cwd
    assert (bench / "results.json").is_file() and not (elsewhere / "benchmarks").exists()

    results = json.loads((bench / "results.json").read_text())
    old = _artifacts(export)
    assert {r["artifact"]: r["sha256"] for r in results["results"]} == {n: a["sha256"] for n, a in old.items()}
    assert all(r["gate"]["passed"] for r in results["results"])
    # INT8 the fastest in the evidence (as on the CNNs where it pays), so that "auto" takes it while it counts
    for row in results["results"]:
        if row["artifact"] == "int8":
            row["latency_ms"] = {b: {**v, "p50": 1e-6} for b, v in row["latency_ms"].items()}
            # and so the bench's recommendation, which auto serves
            results["recommended"].update(artifact="int8", precision="int8", runtime=row["runtime"],
                                          sha256=row["sha256"], p50_ms=1e-6)
    (bench / "results.json").write_text(json.dumps(results))
    with Predictor(export) as model:
        assert model.artifact == "int8" and model.choice.verdict.passed is True
        assert model.choice.verdict.sha256 == old["int8"]["sha256"]

    _export(linear_run, export, "percentile")
    new = _artifacts(export)
    assert new["int8"]["sha256"] != old["int8"]["sha256"]  # the same run, another INT8 file in the same folder
    line = f"bench results {bench / 'results.json'} {ANOTHER_INT8} (sha256 {old['int8']['sha256'][:8]}…"

    with Predictor(export) as model:
        assert model.artifact != "int8" and model.choice.verdict.passed is not False
        assert line in model.choice.reason and f"bench again: edgexfer bench {export}" in model.choice.reason
    with pytest.raises(EdgexferError, match=ANOTHER_INT8):
        Predictor(export, precision="int8")
    with Predictor(export, precision="int8", allow_failed=True) as model:
        assert model.artifact == "int8" and "unverified" in model.choice.reason

    image = str(sorted((linear_run.parent / "data" / "covid").glob("*.png"))[0])
    auto = CliRunner().invoke(cli, ["predict", str(export), image])
    assert auto.exit_code == 0, auto.output
    assert line in auto.stderr and not auto.stderr.startswith("int8")
    named = CliRunner().invoke(cli, ["predict", str(export), image, "--precision", "int8"])
    assert named.exit_code == 2 and line in named.stderr and len(named.stderr.strip().splitlines()) == 1

    repo = tmp_path / "models"
    packaged = CliRunner().invoke(cli, ["package", str(export), "--out", str(repo)])
    assert packaged.exit_code == 0, packaged.output
    served = sha256_file(repo / "tiny" / "1" / "model.onnx")
    assert served != new["int8"]["sha256"] and served in {new["fp32"]["sha256"], new["fp16"]["sha256"]}
    assert ANOTHER_INT8 in packaged.stdout
    refused = CliRunner().invoke(cli, ["package", str(export), "--out", str(repo), "--name", "int8",
                                       "--precision", "int8"])
    assert refused.exit_code == 2 and line in refused.stderr and not (repo / "int8").exists()


def test_bench_rows_record_the_bytes_device_and_versions(handmade_export, tmp_path):
    import onnxruntime

    from edgexfer.contracts.bench import SCHEMA, load_results
    from edgexfer.versions import int8_instructions, machine_info

    out = tmp_path / "bench"
    assert CliRunner().invoke(cli, ["bench", str(handmade_export), "--out", str(out), *FAST, *LOOSE]).exit_code == 0
    results = load_results(out)
    assert results["schema"] == SCHEMA
    for row in results["results"]:
        assert row["sha256"] == sha256_file(handmade_export / row["file"])
        assert row["device"].startswith(f"CPU: {machine_info()['processor']}")
        assert all(name in row["device"] for name in int8_instructions())  # e.g. AVX-512 VNNI: INT8 speed rests on it
        assert row["versions"]["onnxruntime"] == onnxruntime.__version__ and row["versions"]["edgexfer"]


def test_bench_and_predictor_refuse_a_file_that_changes_while_loaded(handmade_export, tmp_path, monkeypatch):
    from edgexfer.evaluate.bench import BenchConfig
    from edgexfer.evaluate.bench.measure import bench_one
    from edgexfer.evaluate.bench.plan import BenchJob
    from edgexfer.evaluate.bench_data import load_bench_data
    from edgexfer.evaluate.exported import load_export
    from edgexfer.predict import Predictor
    from edgexfer.runtime import RUNTIMES

    export = load_export(_exported(handmade_export, tmp_path))
    data = load_bench_data(export, progress=False)
    cpu = RUNTIMES["ort-cpu"]

    def open_then_replace(artifact, threads, batch_sizes=None):  # the real session, then another file, same name
        runtime = cpu.open(artifact, threads, batch_sizes)
        artifact.path.write_bytes(artifact.path.read_bytes() + b"\0")
        return runtime

    config = BenchConfig(export_dir=export.path, batch_sizes=(1,), warmup=0, iterations=1, end_to_end_images=1,
                         progress=False)
    fp16 = export.artifact("fp16").path
    original = fp16.read_bytes()
    job = BenchJob(export.artifact("fp16"), dataclasses.replace(cpu, open_fn=open_then_replace))
    with pytest.raises(EdgexferError, match="changed while bench ran it"):
        bench_one(job, export, data, config)
    fp16.write_bytes(original)

    monkeypatch.setitem(RUNTIMES, "ort-cpu", job.kind)
    fp32 = export.artifact("fp32").path
    with pytest.raises(EdgexferError, match="model_fp32.onnx changed while it was loaded"):
        Predictor(export.path, precision="fp32", runtime="ort-cpu")
    assert sha256_file(fp32) != export.artifact("fp32").sha256


def test_results_in_the_current_directory_are_not_used(handmade_export, tmp_path, monkeypatch):
    from edgexfer.predict import Predictor

    export = _exported(handmade_export, tmp_path / "project")
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    # a bench of this very export, written where bench used to write by default: benchmarks/<name> in the cwd
    named = CliRunner().invoke(cli, ["bench", str(export), "--out", "benchmarks/tiny", *FAST, *LOOSE])
    assert named.exit_code == 0, named.output
    with Predictor(export) as model:
        assert model.evidence is None and "no bench results found" in model.choice.reason
    with Predictor(export, bench=cwd / "benchmarks" / "tiny") as model:  # named, it counts
        assert model.evidence is not None and model.choice.verdict.passed is True
    assert CliRunner().invoke(cli, ["bench", str(export), *FAST, *LOOSE]).exit_code == 0  # default: found from the export
    with Predictor(export) as model:
        assert model.evidence is not None
        assert model.evidence.path == tmp_path / "project" / "benchmarks" / "tiny" / "results.json"


def test_results_without_sha256_are_read_but_judge_no_file(handmade_export, tmp_path):
    from edgexfer.contracts.bench import SCHEMA, SCHEMA_UNBOUND, is_bench_dir, load_results
    from edgexfer.predict import Predictor

    export = _exported(handmade_export, tmp_path)
    bench = tmp_path / "benchmarks" / "tiny"
    assert CliRunner().invoke(cli, ["bench", str(export), *FAST, *LOOSE]).exit_code == 0
    results = json.loads((bench / "results.json").read_text())
    # as an earlier version wrote it: no sha256, device or versions in the rows
    results["schema"] = SCHEMA_UNBOUND
    for row in results["results"]:
        for key in ("sha256", "device", "versions"):
            del row[key]
    (bench / "results.json").write_text(json.dumps(results))
    assert load_results(bench)["results"] and is_bench_dir(bench)
    assert CliRunner().invoke(cli, ["report", str(bench)]).exit_code == 0

    line = f"bench results {bench / 'results.json'} ({SCHEMA_UNBOUND}) record no sha256, so they judge no file"
    with Predictor(export) as model:
        assert model.artifact == "fp32" and model.choice.verdict.passed is None
        assert line in model.choice.reason
    with pytest.raises(EdgexferError, match="record no sha256"):
        Predictor(export, precision="int8")
    # a row of the current schema without a sha256 is not a results file at all
    results["schema"] = SCHEMA
    (bench / "results.json").write_text(json.dumps(results))
    with pytest.raises(EdgexferError, match="has no 'sha256'"):
        load_results(bench)


def test_a_verdict_follows_the_bytes_not_the_name(handmade_export):
    from edgexfer.evaluate.exported import load_export
    from edgexfer.predict import BenchEvidence, GateVerdict, choose_artifact

    export = load_export(handmade_export)
    sha = {a.name: str(a.sha256) for a in export.artifacts}
    # rows named after each artifact but holding the other artifacts' bytes: none of them counts by name
    swapped = BenchEvidence(Path("results.json"), (
        GateVerdict("fp32", "ort-cpu", True, (), 2.0, sha256=sha["fp32"], file="model_fp32.onnx"),
        GateVerdict("fp16", "ort-cpu", False, ("recall dropped",), 1.0, sha256=sha["int8"], file="model_fp16.onnx"),
        GateVerdict("int8", "ort-cpu", True, (), 0.5, sha256="f" * 64, file="model_int8_cpu.onnx")))
    int8 = swapped.verdict(export.artifact("int8"), "ort-cpu")  # its bytes failed, in the row named fp16
    assert int8.artifact == "int8" and int8.passed is False and int8.reasons == ("recall dropped",)
    assert swapped.verdict(export.artifact("int8"), "trt").passed is False  # a failure elsewhere follows the bytes
    fp16 = swapped.verdict(export.artifact("fp16"), "ort-cpu")
    assert fp16.passed is None and f"are for another model_fp16.onnx (sha256 {sha['int8'][:8]}…" in fp16.unbound
    choice = choose_artifact(export, "auto", "ort-cpu", evidence=swapped)
    assert choice.artifact.name == "fp32" and choice.verdict.passed is True
    assert "not used: " in choice.reason and "model_fp16.onnx" in choice.reason
    with pytest.raises(EdgexferError, match="recall dropped"):
        choose_artifact(export, "int8", "ort-cpu", evidence=swapped)
    with pytest.raises(EdgexferError, match="are for another model_fp16.onnx"):
        choose_artifact(export, "fp16", "ort-cpu", evidence=swapped)

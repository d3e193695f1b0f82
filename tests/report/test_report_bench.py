"""results.json schema checks and the report/plots drawn from a results file alone."""

from __future__ import annotations

import copy
import json

import pytest
from fixtures_handmade import bench_outcome

from edgexfer.contracts.bench import load_results, validate_results
from edgexfer.errors import EdgexferError
from edgexfer.report.bench_report import write_bench_report


@pytest.fixture(scope="module")
def bench_results(handmade_export, tmp_path_factory):
    from edgexfer.evaluate.bench import BenchConfig

    out = tmp_path_factory.mktemp("bench")
    bench_outcome(BenchConfig(handmade_export, out=out, runtimes=["ort-cpu"], batch_sizes=(1, 2), warmup=0,
                          iterations=2, progress=False, end_to_end_images=2))
    return out


def test_results_file_validates_and_reloads(bench_results):
    results = load_results(bench_results)
    assert results["schema"] == "edgexfer.bench/2" and results["reference"] == "fp32"
    machine = results["machine"]
    assert machine["cores"] >= 1 and "gpu" in machine and machine["libraries"]["onnx"]


@pytest.mark.parametrize("damage, message", [
    (lambda r: r.pop("thresholds"), "results has no 'thresholds'"),
    (lambda r: r["results"][1].pop("gate"), "results[1] (fp16 on ort-cpu) has no 'gate'"),
    (lambda r: r["results"][0]["latency_ms"]["1"].pop("p99"), "latency_ms[1].p99 is missing"),
    (lambda r: r["results"][0].update(accuracy=83.3), "is not a fraction"),
    (lambda r: r.update(schema="other/1"), "expected 'edgexfer.bench/2'"),
    (lambda r: r["results"][2].update(sha256="int8"), "results[2] (int8 on ort-cpu).sha256 = 'int8' is not a sha256"),
])
def test_validate_results_names_the_problem(bench_results, damage, message):
    results = json.loads((bench_results / "results.json").read_text())
    broken = copy.deepcopy(results)
    damage(broken)
    with pytest.raises(ValueError) as info:
        validate_results(broken)
    assert message in str(info.value)


def test_load_results_of_a_non_results_file_is_one_line(tmp_path):
    (tmp_path / "results.json").write_text("{}")
    with pytest.raises(EdgexferError, match="is not a bench results file: results has no 'schema'"):
        load_results(tmp_path)


def test_report_redrawn_from_results(bench_results, tmp_path):
    results = load_results(bench_results)
    report = write_bench_report(results, tmp_path)
    text = report.read_text()
    assert text.startswith("# Bench: tiny")
    header = next(line for line in text.splitlines() if line.startswith("| Artifact | Precision"))
    assert "p50 ms @1" in header and "p50 ms @2" in header and "e2e ms" in header and "Gate" in header
    # each row names the bytes it judged: the first 12 hex of the file's sha256, in its own column
    assert header.split(" | ")[3] == "sha256"
    for row in results["results"]:
        line = next(ln for ln in text.splitlines() if ln.startswith(f"| `{row['artifact']}` | {row['precision']} | "))
        assert line.split(" | ")[3] == f"`{row['sha256'][:12]}`"
    assert text.count("![") == 6  # accuracy vs latency, latency by batch, reliability, three confusion matrices
    for name in ("accuracy_vs_latency", "latency_by_batch", "reliability", "confusion_fp32", "confusion_fp16",
                 "confusion_int8"):
        assert (tmp_path / "plots" / f"{name}.png").read_bytes()[:4] == b"\x89PNG"


"""The bench report shows the export's INT8 layer report: the nodes that lose the most signal and the nodes kept
in float with their reason; a layer report that is not the file the manifest names is said to be so."""

from __future__ import annotations

import json
import shutil

import pytest

from edgexfer.contracts.bench import load_results
from edgexfer.errors import GateFailed, GateInconclusive
from edgexfer.evaluate.bench import BenchConfig, run_bench


def _bench(export_dir, out):
    try:
        run_bench(BenchConfig(export_dir, out=out, runtimes=["ort-cpu"], batch_sizes=(1,), warmup=0, iterations=1,
                              progress=False, end_to_end_images=1, log=lambda line: None))
    except (GateFailed, GateInconclusive):  # the tiny model may fail or not decide the gate: the report is written either way
        pass
    return load_results(out), (out / "report.md").read_text()


@pytest.fixture(scope="module")
def benched(tiny_export, tmp_path_factory):
    return _bench(tiny_export, tmp_path_factory.mktemp("bench-layers"))


def test_the_bench_report_shows_the_worst_nodes_and_those_kept_in_float(tiny_export, benched):
    results, report = benched
    layers = json.loads((tiny_export / "model_int8_cpu.layers.json").read_text())
    (summary,) = results["export"]["int8_layers"]
    assert summary["artifact"] == "int8" and summary["nodes"] == len(layers["nodes"])
    worst = max(layers["nodes"], key=lambda n: n["sqnr_drop_db"])
    assert summary["worst"][0]["name"] == worst["name"]
    section = report[report.index("## INT8 layers"):]
    assert f"| `{worst['name']}` | {worst['op_type']} | {worst['output_sqnr_db']:.1f} |" in section
    assert f"Kept in float by the fallback: {len(layers['kept_in_float'])} node(s)" in section


def test_a_layer_report_that_is_not_the_exported_one_is_named(tiny_export, tmp_path):
    export = tmp_path / "export"
    shutil.copytree(tiny_export, export)
    path = export / "model_int8_cpu.layers.json"
    record = json.loads(path.read_text())
    record["nodes"] = record["nodes"][:1]
    path.write_text(json.dumps(record))
    results, report = _bench(export, tmp_path / "bench")
    (summary,) = results["export"]["int8_layers"]
    assert "sha256 differs" in summary["problem"] and "worst" not in summary
    assert "`model_int8_cpu.layers.json` missing, or not the file the manifest names" in report

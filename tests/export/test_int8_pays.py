"""INT8 where it pays, and only there: the bench report says so when INT8 is not faster than FP32."""

from __future__ import annotations

import copy

from fixtures_handmade import bench_outcome

from edgexfer.report.bench_report import bench_markdown


def test_bench_report_names_an_int8_artifact_slower_than_fp32(handmade_export, tmp_path):
    from edgexfer.contracts.bench import load_results
    from edgexfer.evaluate.bench import BenchConfig

    bench_outcome(BenchConfig(handmade_export, out=tmp_path, runtimes=["ort-cpu"], batch_sizes=(1,), warmup=0,
                          iterations=2, progress=False, end_to_end_images=1))
    results = load_results(tmp_path)
    rows = {r["artifact"]: r for r in results["results"]}
    assert "fp32" in rows and any(r["precision"] == "int8" for r in rows.values())
    slow, fast = copy.deepcopy(results), copy.deepcopy(results)
    for variant, factor in ((slow, 2.0), (fast, 0.25)):
        fp32_ms = next(r for r in variant["results"] if r["artifact"] == "fp32")["latency_ms"]["1"]["p50"]
        for r in variant["results"]:
            if r["precision"] == "int8":
                r["latency_ms"]["1"]["p50"] = fp32_ms * factor
    assert "INT8 is slower than FP32 here: use FP32/FP16" in bench_markdown(slow)
    assert "INT8 is slower than FP32 here" not in bench_markdown(fast)

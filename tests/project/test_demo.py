"""`edgexfer demo` wires every stage together: data → run → export → bench, in one folder."""

import json

import pytest

from edgexfer.errors import GateFailed, GateInconclusive


@pytest.mark.slow
def test_demo_runs_every_stage(tmp_path):
    from edgexfer.demo import DemoConfig, run_demo

    config = DemoConfig(out=tmp_path / "demo", per_class=12, data_size=64, image_size=32, epochs=2,
                        fine_tune_epochs=0, batch_sizes=(1, 4), iterations=3)
    lines: list[str] = []
    try:
        result = run_demo(config, log=lines.append)
        bench_dir = result.bench_dir
    except (GateFailed, GateInconclusive):  # 12 images per class rarely decide a gate; the outputs are written first
        bench_dir = tmp_path / "demo" / "bench"
    out = tmp_path / "demo"
    assert (out / "run" / "run.json").is_file()
    manifest = json.loads((out / "exported" / "manifest.json").read_text())
    assert {a["precision"] for a in manifest["artifacts"]} == {"fp32", "fp16", "int8"}
    assert list((out / "calibration").glob("*.npz"))
    results = json.loads((bench_dir / "results.json").read_text())
    fp32 = next(r for r in results["results"] if r["artifact"] == "fp32" and r["runtime"] == "ort-cpu")
    run_metrics = json.loads((out / "run" / "metrics.json").read_text())
    assert fp32["accuracy"] == pytest.approx(run_metrics["accuracy"])  # ONNX FP32 makes the same diagnoses as Keras
    assert (bench_dir / "report.md").is_file()
    assert any(line.startswith("[4/4]") for line in lines)
    # Grad-CAM of misclassified test images (edgexfer.explain), shown in the bench report
    gradcam = json.loads((bench_dir / "gradcam" / "index.json").read_text())
    assert gradcam["selection"] == "misclassified" and "## Grad-CAM" in (bench_dir / "report.md").read_text()
    # the last line: what predict/package would serve, chosen by the verdicts of the bytes bench just judged
    serve = lines[-1]
    if not results["model_check"]["usable"]:  # a two-epoch model may not beat the majority class: nothing is served
        fp32_sha = next(a["sha256"] for a in manifest["artifacts"] if a["name"] == "fp32")
        assert serve.startswith(f"serve: nothing from {out / 'exported'}: no artifact passed the gate"), serve
        assert f"sha256 {fp32_sha[:12]}…" in serve
        return
    assert serve.startswith(f"serve: edgexfer predict {out / 'exported'} IMAGES runs "), serve
    name = serve.split(" runs ", 1)[1].split(" ", 1)[0]
    artifact = next(a for a in manifest["artifacts"] if a["name"] == name)
    assert f"sha256 {artifact['sha256'][:12]}…" in serve
    assert {r["sha256"] for r in results["results"] if r["artifact"] == name} == {artifact["sha256"]}


def test_the_demo_says_its_128_px_images_are_trained_at_64_px():
    from edgexfer.demo import DemoConfig, _size_note

    assert "the 128 px images are resized to 64 px" in _size_note(DemoConfig())
    assert _size_note(DemoConfig(image_size=128)) == ""

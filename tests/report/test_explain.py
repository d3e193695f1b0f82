"""Grad-CAM (`edgexfer explain`): the heat map finds a synthetic lesion far more often than chance, overlays
are written for images and for a bench's misclassified test images, and the bench report shows them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_export import make_run_dir
from PIL import Image

from edgexfer.cli import cli

SIZE = 48
RADIUS = 5
MARGIN = 4  # the lesion region: the disc and a margin of one feature-map half cell


def _lesion_set(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gray textured images; class 1 has one bright disc at a random place. Returns images, labels, centres."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    images, labels, centres = [], [], []
    for i in range(n):
        coarse = rng.normal(0, 18, (6, 6))
        texture = np.kron(coarse, np.ones((SIZE // 6, SIZE // 6)))
        img = 100 + texture + rng.normal(0, 10, (SIZE, SIZE))
        label = i % 2
        cy, cx = rng.integers(RADIUS + 2, SIZE - RADIUS - 2, size=2)
        if label:
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= RADIUS ** 2] += 90
        images.append(np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=-1))
        labels.append(label)
        centres.append((cy, cx))
    return np.stack(images), np.array(labels), np.array(centres)


@pytest.fixture(scope="module")
def lesion_run(tmp_path_factory):
    """A tinycnn trained briefly to tell 'lesion' from 'clear', saved as a finished run directory."""
    import keras

    from edgexfer.backbones.build import build_model
    from edgexfer.data.sources import discover
    from edgexfer.data.splits import make_split

    keras.utils.set_random_seed(0)
    x, y, _ = _lesion_set(320, seed=1)
    model = build_model("tinycnn", 2, SIZE, weights="none")
    model.compile(optimizer=keras.optimizers.Adam(3e-3), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x.astype("float32"), y, epochs=8, batch_size=32, verbose=0)
    root = tmp_path_factory.mktemp("lesion")
    data = root / "data"
    for i, (img, label) in enumerate(zip(x[:60], y[:60], strict=True)):
        folder = data / ("lesion" if label else "clear")
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"img_{i:03d}.png")
    split = make_split(discover(data), fractions=(0.6, 0.2, 0.2), seed=0)
    return make_run_dir(root / "run", split, model, backbone="tinycnn")


@pytest.mark.slow
def test_gradcam_peaks_inside_the_lesion_far_more_often_than_chance(lesion_run):
    from scipy.stats import binomtest

    from edgexfer.explain import gradcam, load_run_model

    run = load_run_model(lesion_run)
    x, y, centres = _lesion_set(200, seed=7)
    lesion = y == 1
    heat, probs = gradcam(run.model, x[lesion], class_indices=[1] * int(lesion.sum()))
    accuracy = float((probs.argmax(1) == 1).mean())
    assert accuracy > 0.9, f"the model did not learn the lesion (recall {accuracy:.2f})"
    assert heat.shape == (int(lesion.sum()), SIZE, SIZE) and heat.min() >= 0 and heat.max() <= 1

    yy, xx = np.mgrid[0:SIZE, 0:SIZE]
    hits, chance = [], []
    for h, (cy, cx) in zip(heat, centres[lesion], strict=True):
        region = (yy - cy) ** 2 + (xx - cx) ** 2 <= (RADIUS + MARGIN) ** 2
        py, px = np.unravel_index(np.argmax(h), h.shape)
        hits.append(bool(region[py, px]))
        chance.append(region.mean())  # where a peak drawn at random would land inside the region
    rate, p_chance = float(np.mean(hits)), float(np.mean(chance))
    assert rate > 3 * p_chance and rate > 0.6, (rate, p_chance)
    assert binomtest(int(sum(hits)), len(hits), p_chance, alternative="greater").pvalue < 1e-6


@pytest.mark.slow
def test_explain_cli_writes_overlays_and_refuses_bad_input(lesion_run, tmp_path):
    images = lesion_run.parent / "data"
    out = tmp_path / "overlays"
    (tmp_path / "extra").mkdir()
    (tmp_path / "extra" / "broken.png").write_bytes(b"nope")
    result = CliRunner().invoke(cli, ["explain", str(lesion_run), str(images / "lesion"), str(tmp_path / "extra"),
                                      "--out", str(out), "--class", "lesion"])
    assert result.exit_code == 0, result.output
    assert "skipped" in result.stderr and "broken.png" in result.stderr
    index = json.loads((out / "index.json").read_text())
    assert index["schema"] == "edgexfer.gradcam/1" and index["layer"] == "backbone"
    written = sorted(p.name for p in out.glob("*_gradcam.png"))
    assert written == sorted(e["file"] for e in index["images"]) and len(written) == len(list(images.glob("lesion/*")))
    assert all(e["explained_class"] == "lesion" for e in index["images"])
    with Image.open(out / written[0]) as overlay:
        assert overlay.size[0] > 400  # drawn at display size, not at 48 px

    def fails(args, expected):
        r = CliRunner().invoke(cli, ["explain", *args])
        assert r.exit_code == 2 and expected in r.stderr, r.output

    fails([str(tmp_path / "no-run"), str(images), "--out", str(out)], "no-run does not exist")
    fails([str(images), str(images), "--out", str(out)], "has no run.json, so it is not a finished run")
    fails([str(lesion_run), "--out", str(out)], "no images to explain")
    fails([str(lesion_run), str(images)], "--out is required")
    fails([str(lesion_run), str(images), "--misclassified", str(tmp_path)], "--misclassified takes no IMAGES")
    fails([str(lesion_run), str(images), "--out", str(out), "--class", "tumour"], "not one of the model's classes")
    tampered = shutil.copytree(lesion_run, tmp_path / "run")
    with open(tampered / "model.keras", "ab") as f:
        f.write(b"\0")
    fails([str(tampered), str(images), "--out", str(tmp_path / "o2")], "does not match run.json")
    assert not (tmp_path / "o2").exists()


@pytest.mark.slow
def test_misclassified_overlays_appear_in_the_bench_report(tiny_export, export_run_dir, tmp_path):
    bench = tmp_path / "bench"
    result = CliRunner().invoke(cli, ["bench", str(tiny_export), "--out", str(bench), "--runtimes", "ort-cpu",
                                      "--batch-sizes", "1", "--warmup", "0", "--iterations", "2", "--quiet"])
    assert result.exit_code in (0, 1, 3), result.output  # any verdict: the report exists
    assert "Grad-CAM" not in (bench / "report.md").read_text()

    done = CliRunner().invoke(cli, ["explain", str(export_run_dir), "--misclassified", str(bench), "--limit", "3"])
    assert done.exit_code == 0, done.output
    index = json.loads((bench / "gradcam" / "index.json").read_text())
    assert index["selection"] == "misclassified" and index["n"] > 0
    entries = index["images"]
    assert len(entries) == min(3, index["misclassified"])
    assert all(e["true_class"] != e["predicted_class"] for e in entries)
    report = (bench / "report.md").read_text()
    assert "## Grad-CAM: misclassified test images" in report
    for e in entries:
        assert f"(gradcam/{e['file']})" in report and (bench / "gradcam" / e["file"]).stat().st_size > 1000
    if entries:
        assert "data:image/png;base64" in (bench / "report.html").read_text()
    # `edgexfer report BENCH_DIR` redraws from results.json and keeps the section
    (bench / "report.md").unlink()
    assert CliRunner().invoke(cli, ["report", str(bench)]).exit_code == 0
    assert "## Grad-CAM: misclassified test images" in (bench / "report.md").read_text()
    assert not [p for p in Path(bench).iterdir() if p.name.startswith(".gradcam")]

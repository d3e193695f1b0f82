"""The synthetic demo set: byte-identical for a seed, classes distinguishable but not trivially, CLI."""

import hashlib

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from edgexfer.data.sources import discover
from edgexfer.data.synthetic import DEMO_CLASSES, generate_demo, render_image
from edgexfer.errors import EdgexferError


def digests(folder):
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*.png"))}


def test_same_seed_byte_identical_files(tmp_path):
    a = generate_demo(tmp_path / "a", per_class=4, size=32, seed=11)
    b = generate_demo(tmp_path / "b", per_class=4, size=32, seed=11)
    c = generate_demo(tmp_path / "c", per_class=4, size=32, seed=12)
    assert digests(a) == digests(b)
    assert len(digests(a)) == 12
    assert set(digests(a).values()).isdisjoint(digests(c).values())


def test_fewer_per_class_is_a_subset(tmp_path):
    small = digests(generate_demo(tmp_path / "s", per_class=3, size=32, seed=0))
    large = digests(generate_demo(tmp_path / "l", per_class=5, size=32, seed=0))
    assert small.items() <= large.items()


def test_layout_and_format(demo_data_dir):
    source = discover(demo_data_dir)
    assert source.classes == list(DEMO_CLASSES)
    with Image.open(demo_data_dir / "pneumonia" / "pneumonia_00000.png") as img:
        assert img.mode == "L" and img.size == (64, 64)


def test_existing_demo_reused_other_arguments_replaced_foreign_folder_refused(tmp_path):
    out = generate_demo(tmp_path / "d", per_class=3, size=32)
    marker_time = (out / "demo.json").stat().st_mtime_ns
    generate_demo(out, per_class=3, size=32)
    assert (out / "demo.json").stat().st_mtime_ns == marker_time  # nothing rewritten
    generate_demo(out, per_class=4, size=32)
    assert len(list((out / "normal").glob("*.png"))) == 4
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(EdgexferError, match="not empty"):
        generate_demo(foreign, per_class=3, size=32)
    assert (foreign / "notes.txt").read_text() == "keep me"


@pytest.mark.parametrize("kwargs,match", [({"per_class": 2}, "--per-class 2"), ({"size": 8}, "--size 8")])
def test_bad_arguments(tmp_path, kwargs, match):
    with pytest.raises(EdgexferError, match=match):
        generate_demo(tmp_path / "x", **({"per_class": 3, "size": 32} | kwargs))


def test_classes_distinguishable_but_not_trivially():
    """A linear classifier on coarse pixels and intensity quantiles beats chance (1/3) clearly, but is far
    from perfect: the findings vary in size, place and density, some are faint, anatomy varies."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    n = 60
    images = np.stack([render_image(c, 32, 0, i) for c in DEMO_CLASSES for i in range(n)]).astype(np.float32)
    labels = np.repeat(np.arange(len(DEMO_CLASSES)), n)
    z = (images - images.mean((1, 2), keepdims=True)) / images.std((1, 2), keepdims=True)
    coarse = z.reshape(len(z), 16, 2, 16, 2).mean((2, 4)).reshape(len(z), -1)
    quantiles = np.quantile(z.reshape(len(z), -1), np.linspace(0.5, 1.0, 21), axis=1).T
    features = np.hstack([coarse, quantiles])
    classifier = make_pipeline(StandardScaler(), LogisticRegression(max_iter=3000, C=0.1))
    accuracy = cross_val_score(classifier, features, labels, cv=5).mean()
    assert 0.5 < accuracy < 0.95, accuracy


def test_findings_only_add_density_pneumonia_diffuse_nodules_small():
    """The same image drawn without its finding differs only by the finding: brighter pixels, never darker;
    pneumonia covers a larger area than nodules; normal images have nothing to remove."""
    areas = {}
    for name in DEMO_CLASSES:
        changed = []
        for i in range(12):
            with_finding = render_image(name, 64, 0, i).astype(int)
            without = render_image(name, 64, 0, i, with_finding=False).astype(int)
            assert (with_finding >= without).all()
            changed.append(((with_finding - without) >= 8).mean())
        areas[name] = float(np.median(changed))
    assert areas["normal"] == 0.0
    assert 0.0 < areas["nodule"] < 0.02
    assert areas["pneumonia"] > 2 * areas["nodule"]


def test_cli_demo(tmp_path):
    from edgexfer.cli import cli

    runner = CliRunner()
    result = runner.invoke(cli, ["data", "demo", str(tmp_path / "demo"), "--per-class", "3", "--size", "32", "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert "wrote 9 images" in result.output
    assert digests(tmp_path / "demo") == digests(generate_demo(tmp_path / "again", per_class=3, size=32, seed=5))
    bad = runner.invoke(cli, ["data", "demo", str(tmp_path / "x"), "--per-class", "2"])
    assert bad.exit_code == 2 and "--per-class 2 is too small" in bad.output

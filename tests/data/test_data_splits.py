"""Splits: stratified, seeded, no leakage, saved and reloaded exactly; class weights; bad fractions and sizes."""

import numpy as np
import pytest

from edgexfer.data.images import load_image
from edgexfer.data.sources import DataSource, Sample, discover
from edgexfer.data.splits import Split, class_weights, make_split
from edgexfer.errors import EdgexferError


def fake_source(counts, root="/nowhere"):
    """A DataSource over made-up refs (splitting never reads images)."""
    from pathlib import Path

    samples = [Sample(f"c{label}/{i:04d}.png", label) for label, n in enumerate(counts) for i in range(n)]
    return DataSource("folders", Path(root), [f"class{i}" for i in range(len(counts))], samples)


def refs(split, name):
    return [s.ref for s in split.samples(name)]


def test_same_seed_same_split_other_seed_other_split():
    source = fake_source([50, 30, 20])
    a, b = make_split(source, seed=7), make_split(source, seed=7)
    assert all(refs(a, n) == refs(b, n) for n in ("train", "val", "test"))
    c = make_split(source, seed=8)
    assert refs(a, "test") != refs(c, "test")


def test_split_does_not_depend_on_listing_order():
    source = fake_source([20, 20])
    shuffled = DataSource(source.kind, source.root, source.classes, list(reversed(source.samples)))
    assert refs(make_split(source, seed=1), "test") == refs(make_split(shuffled, seed=1), "test")


def test_no_image_in_two_splits_and_none_lost():
    source = fake_source([50, 31, 7])
    split = make_split(source, seed=0)
    parts = [set(refs(split, n)) for n in ("train", "val", "test")]
    assert not (parts[0] & parts[1] or parts[0] & parts[2] or parts[1] & parts[2])
    assert set.union(*parts) == {s.ref for s in source.samples}
    assert sum(len(p) for p in parts) == len(source.samples)


def test_stratified_counts():
    split = make_split(fake_source([100, 50, 10]), fractions=(0.7, 0.2, 0.1))
    assert split.counts() == {
        "train": {"class0": 70, "class1": 35, "class2": 7},
        "val": {"class0": 20, "class1": 10, "class2": 2},
        "test": {"class0": 10, "class1": 5, "class2": 1},
    }


def test_custom_fractions_and_small_classes_still_reach_every_part():
    split = make_split(fake_source([3, 4]), fractions=(0.8, 0.1, 0.1))
    for name in ("train", "val", "test"):
        assert set(split.labels(name).tolist()) == {0, 1}


@pytest.mark.parametrize("fractions", [(0.7, 0.3), (0.7, 0.2, 0.2), (1.0, 0.0, 0.0), (0.8, -0.1, 0.3), ("a", 1, 2)])
def test_bad_fractions(fractions):
    with pytest.raises(EdgexferError, match="fractions"):
        make_split(fake_source([10, 10]), fractions=fractions)


def test_class_with_too_few_images():
    with pytest.raises(EdgexferError, match="class 'class1' has 2 image"):
        make_split(fake_source([10, 2]))


def test_presplit_part_with_fewer_images_than_classes():
    source = fake_source([5, 5, 5])
    presplit = {
        "train": [s for s in source.samples if int(s.ref[-8:-4]) < 3],
        "val": [s for s in source.samples if int(s.ref[-8:-4]) == 3],
        "test": [s for s in source.samples if int(s.ref[-8:-4]) == 4 and s.label == 0],
    }
    source.presplit = presplit
    with pytest.raises(EdgexferError, match="the test split has 1 image.*for 3 classes"):
        make_split(source)


def test_save_load_roundtrip(tmp_path, demo_split):
    path = demo_split.save(tmp_path / "split.json")
    loaded = Split.load(path)
    assert loaded.classes == demo_split.classes
    assert loaded.splits == demo_split.splits
    assert (loaded.seed, loaded.fractions) == (demo_split.seed, demo_split.fractions)
    assert loaded.source.root == demo_split.source.root


def test_load_rejects_other_files(tmp_path):
    (tmp_path / "x.json").write_text('{"schema": "something/else"}')
    with pytest.raises(EdgexferError, match="not an edgexfer split file"):
        Split.load(tmp_path / "x.json")
    with pytest.raises(EdgexferError, match="does not exist"):
        Split.load(tmp_path / "absent.json")


def test_iter_batches_match_load_image(demo_split):
    batches = list(demo_split.iter_batches("test", (24, 32), batch_size=5))
    samples = demo_split.samples("test")
    assert sum(len(y) for _, y in batches) == len(samples)
    assert [len(y) for _, y in batches][:-1] == [5] * (len(batches) - 1)
    x0, y0 = batches[0]
    assert x0.shape == (5, 24, 32, 3) and x0.dtype == np.uint8 and y0.dtype == np.int64
    np.testing.assert_array_equal(x0[2], load_image(demo_split.source.path_of(samples[2].ref), (24, 32)))
    images, labels = demo_split.load_arrays("test", (24, 32), limit=7)
    assert images.shape == (7, 24, 32, 3)
    np.testing.assert_array_equal(labels, demo_split.labels("test")[:7])


def test_class_weights_balanced():
    split = make_split(fake_source([100, 50, 10]))
    weights = class_weights(split)
    n_train = {0: 70, 1: 35, 2: 7}
    total = sum(n_train.values())
    for label, n in n_train.items():  # sklearn "balanced": n_samples / (n_classes * count)
        assert weights[label] == pytest.approx(total / (3 * n))
    assert weights[2] > weights[1] > weights[0]
    assert class_weights(make_split(fake_source([30, 30]))) == {0: 1.0, 1: 1.0}


def test_demo_split_fixture(demo_split, demo_data_dir):
    assert demo_split.classes == ["nodule", "normal", "pneumonia"]
    assert demo_split.counts()["test"] == {"nodule": 4, "normal": 4, "pneumonia": 4}
    assert discover(demo_data_dir).classes == demo_split.classes


def test_load_without_the_data(tmp_path):
    split = make_split(fake_source([5, 5], root=str(tmp_path / "gone")))
    split.save(tmp_path / "split.json")
    with pytest.raises(EdgexferError, match="does not exist here"):
        Split.load(tmp_path / "split.json")
    record_only = Split.load(tmp_path / "split.json", require_data=False)
    assert record_only.counts() == split.counts()

"""The tf.data pipeline: same pixels as bench, seeded shuffling, augmentation on train only; and the data
modules other than pipeline work without TensorFlow."""

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edgexfer.data.pipeline import AugmentConfig, make_dataset
from edgexfer.errors import EdgexferError


def collect(ds):
    xs, ys = [], []
    for x, y in ds:
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def test_pixels_identical_to_bench_reader(demo_split):
    images, labels = collect(make_dataset(demo_split, "val", 48, batch_size=7))
    expected_images, expected_labels = demo_split.load_arrays("val", (48, 48))
    assert images.dtype == np.float32 and images.shape == (len(expected_labels), 48, 48, 3)
    np.testing.assert_array_equal(images, expected_images.astype(np.float32))
    np.testing.assert_array_equal(labels, expected_labels)


def test_train_shuffle_seeded_and_reshuffled_each_epoch(demo_split):
    def epochs(seed):
        ds = make_dataset(demo_split, "train", (32, 40), batch_size=16, seed=seed)
        return [collect(ds)[1] for _ in range(2)]

    first, again, other = epochs(5), epochs(5), epochs(6)
    np.testing.assert_array_equal(first[0], again[0])
    np.testing.assert_array_equal(first[1], again[1])
    assert not np.array_equal(first[0], first[1])  # a new order every epoch
    assert not np.array_equal(first[0], other[0])
    assert sorted(first[0].tolist()) == sorted(demo_split.labels("train").tolist())


def test_augmentation_on_train_only(demo_split):
    strong = AugmentConfig(rotation=0.1, flip="horizontal_and_vertical", zoom=0.2, contrast=0.3, brightness=0.2)
    plain_val = collect(make_dataset(demo_split, "val", 32, 8))[0]
    augmented_val = collect(make_dataset(demo_split, "val", 32, 8, augment=strong))[0]
    np.testing.assert_array_equal(plain_val, augmented_val)

    plain = collect(make_dataset(demo_split, "train", 32, 8, shuffle=False))[0]
    augmented = collect(make_dataset(demo_split, "train", 32, 8, shuffle=False, augment=strong))[0]
    assert augmented.shape == plain.shape and augmented.dtype == np.float32
    assert augmented.min() >= 0.0 and augmented.max() <= 255.0
    assert np.abs(augmented - plain).mean() > 5.0


def test_file_cache(demo_split, tmp_path):
    ds = make_dataset(demo_split, "test", 32, 4, cache=tmp_path / "cache")
    first = collect(ds)[0]
    np.testing.assert_array_equal(collect(ds)[0], first)
    assert any(tmp_path.iterdir())


def test_augment_config_validation():
    assert AugmentConfig.off().is_identity and not AugmentConfig().is_identity
    assert AugmentConfig.from_dict(AugmentConfig().to_dict()) == AugmentConfig()
    assert [type(layer).__name__ for layer in AugmentConfig().layers()] == [
        "RandomFlip", "RandomRotation", "RandomZoom", "RandomContrast", "RandomBrightness"]
    with pytest.raises(EdgexferError, match="unknown augmentation option"):
        AugmentConfig.from_dict({"rotate": 0.1})
    with pytest.raises(EdgexferError, match="flip 'sideways'"):
        AugmentConfig(flip="sideways")
    with pytest.raises(EdgexferError, match="zoom=2"):
        AugmentConfig(zoom=2)


def test_bad_arguments(demo_split):
    with pytest.raises(EdgexferError, match="batch size 0"):
        make_dataset(demo_split, "train", 32, 0)
    with pytest.raises(EdgexferError, match="no 'holdout' part"):
        make_dataset(demo_split, "holdout", 32, 4)


def test_data_readers_work_without_tensorflow(demo_data_dir, tmp_path):
    script = textwrap.dedent(
        f"""
        import sys
        sys.modules["tensorflow"] = None  # any import of TensorFlow now fails
        sys.modules["keras"] = None
        from edgexfer.data import images, scan, sources, splits, synthetic, pipeline
        split = splits.make_split(scan.scan_source(sources.discover({str(demo_data_dir)!r})).source)
        split.save({str(tmp_path / "split.json")!r})
        x, y = splits.Split.load({str(tmp_path / "split.json")!r}).load_arrays("test", (16, 16))
        synthetic.generate_demo({str(tmp_path / "demo")!r}, per_class=3, size=16)
        print(x.shape, splits.class_weights(split)[0])
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "(12, 16, 16, 3) 1.0" in done.stdout

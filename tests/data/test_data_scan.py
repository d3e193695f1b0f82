"""Corrupt files are found before training, counted and listed; a class with no readable image is an error."""

import numpy as np
import pytest
from PIL import Image

from edgexfer.data.scan import scan_source
from edgexfer.data.sources import discover
from edgexfer.data.splits import make_split
from edgexfer.errors import EdgexferError


def make_tree(root, counts):
    for c, (name, n) in enumerate(sorted(counts.items())):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.fromarray(np.full((16, 16), 30 * c + i, np.uint8)).save(root / name / f"img_{i:03d}.png")


def test_corrupt_files_skipped_counted_and_listed(tmp_path):
    data = tmp_path / "data"
    make_tree(data, {"a": 5, "b": 5})
    (data / "a" / "broken.png").write_bytes(b"not a png")
    good = (data / "b" / "img_000.png").read_bytes()
    (data / "b" / "truncated.png").write_bytes(good[: len(good) // 2])
    (data / "b" / "empty.jpg").write_bytes(b"")

    result = scan_source(discover(data))
    assert len(result.kept) == 10
    assert sorted(ref for ref, _ in result.skipped) == ["a/broken.png", "b/empty.jpg", "b/truncated.png"]
    assert all(reason for _, reason in result.skipped)

    out = result.write_skipped(tmp_path / "run" / "skipped.txt")
    lines = out.read_text().splitlines()
    assert len(lines) == 3 and all(len(line.split("\t")) == 2 for line in lines)

    split = make_split(result.source, seed=0)  # the split only holds readable images
    every = {s.ref for name in ("train", "val", "test") for s in split.samples(name)}
    assert not every & {ref for ref, _ in result.skipped}
    images, _ = split.load_arrays("train", (8, 8))
    assert len(images) == len(split.samples("train"))


def test_nothing_skipped_writes_nothing(tmp_path, demo_data_dir):
    result = scan_source(discover(demo_data_dir))
    assert result.skipped == [] and len(result.kept) == 120
    assert result.write_skipped(tmp_path / "skipped.txt") is None
    assert not (tmp_path / "skipped.txt").exists()


def test_class_without_a_readable_image(tmp_path):
    make_tree(tmp_path, {"a": 4})
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x.png").write_bytes(b"junk")
    with pytest.raises(EdgexferError, match="none of the 1 image.*class 'b'"):
        scan_source(discover(tmp_path))

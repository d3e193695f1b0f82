"""Data sources: class folders, pre-split folders, CSV, MedMNIST .npz, and the errors for bad layouts."""

import shutil

import numpy as np
import pytest
from PIL import Image

from edgexfer.data.sources import DataSource, Sample, discover
from edgexfer.data.splits import Split, make_split
from edgexfer.errors import EdgexferError


def write_png(path, value=128, size=(12, 12)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full(size, value, np.uint8), mode="L").save(path)
    return path


def make_tree(root, counts):
    """counts: {class: n} → root/class/img_i.png with a per-class grey value."""
    for c, (name, n) in enumerate(sorted(counts.items())):
        for i in range(n):
            write_png(root / name / f"img_{i:03d}.png", value=40 * c + i)
    return root


def test_class_folders(demo_data_dir):
    source = discover(demo_data_dir)
    assert source.kind == "folders" and source.presplit is None
    assert source.classes == ["nodule", "normal", "pneumonia"]
    assert len(source.samples) == 120
    assert all(s.ref.startswith(source.classes[s.label] + "/") for s in source.samples)
    image = source.load(source.samples[0].ref, (32, 48))
    assert image.shape == (32, 48, 3) and image.dtype == np.uint8
    record = source.describe()
    assert record["class_counts"] == {"nodule": 40, "normal": 40, "pneumonia": 40}


def test_class_folder_images_in_subfolders_and_other_files_ignored(tmp_path):
    make_tree(tmp_path, {"a": 3, "b": 3})
    write_png(tmp_path / "a" / "patient7" / "view1.png")
    (tmp_path / "a" / "notes.txt").write_text("not an image")
    (tmp_path / "b" / ".hidden.png").write_bytes(b"")
    (tmp_path / "README.md").write_text("root files are ignored")
    source = discover(tmp_path)
    assert sorted(s.ref for s in source.samples if s.label == 0) == [
        "a/img_000.png", "a/img_001.png", "a/img_002.png", "a/patient7/view1.png"]
    assert len([s for s in source.samples if s.label == 1]) == 3


def test_presplit_layout_is_respected(tmp_path):
    for split, n in (("train", 6), ("val", 3), ("test", 3)):
        make_tree(tmp_path / split, {"benign": n, "malignant": n})
    source = discover(tmp_path)
    assert source.kind == "presplit" and source.classes == ["benign", "malignant"]
    split = make_split(source, seed=3)
    for name in ("train", "val", "test"):
        refs = {s.ref for s in split.samples(name)}
        assert refs == {s.ref for s in source.presplit[name]}
        assert all(ref.startswith(name + "/") for ref in refs)
    assert split.presplit


def test_presplit_without_val_carves_it_from_train(tmp_path):
    make_tree(tmp_path / "train", {"x": 10, "y": 10})
    make_tree(tmp_path / "test", {"x": 2, "y": 2})
    split = make_split(discover(tmp_path), fractions=(0.7, 0.2, 0.1), seed=0)
    assert {s.ref for s in split.samples("test")} == {s.ref for s in discover(tmp_path).presplit["test"]}
    assert all(s.ref.startswith("train/") for s in split.samples("val"))
    assert split.counts()["val"] == {"x": 2, "y": 2}  # 0.2 / (0.7 + 0.2) of 10 per class
    assert not {s.ref for s in split.samples("val")} & {s.ref for s in split.samples("train")}


def test_presplit_class_missing_from_train_is_an_error(tmp_path):
    make_tree(tmp_path / "train", {"x": 4, "y": 4})
    make_tree(tmp_path / "test", {"x": 2, "y": 2, "z": 2})
    with pytest.raises(EdgexferError, match="classes not in"):
        discover(tmp_path)


def test_csv_with_and_without_header(tmp_path):
    make_tree(tmp_path / "img", {"a": 3, "b": 3})
    rows = [f"img/{c}/img_{i:03d}.png,{label}" for c, label in (("a", "healthy"), ("b", "sick")) for i in range(3)]
    (tmp_path / "with.csv").write_text("path,label\n" + "\n".join(rows) + "\n")
    (tmp_path / "without.csv").write_text("\n".join(rows) + "\n")
    for name in ("with.csv", "without.csv"):
        source = discover(tmp_path / name)
        assert source.kind == "csv" and source.classes == ["healthy", "sick"]
        assert len(source.samples) == 6
        assert source.load("img/b/img_000.png", (8, 8)).shape == (8, 8, 3)
        assert Sample("img/b/img_002.png", 1) in source.samples


def test_csv_numeric_labels_sort_as_numbers(tmp_path):
    make_tree(tmp_path, {"a": 3})
    rows = [f"a/img_{i:03d}.png,{label}" for i, label in enumerate(("10", "2", "2"))]
    (tmp_path / "l.csv").write_text("file,class\n" + "\n".join(rows))
    assert discover(tmp_path / "l.csv").classes == ["2", "10"]


def test_csv_with_unknown_paths_names_them(tmp_path):
    make_tree(tmp_path, {"a": 2})
    (tmp_path / "l.csv").write_text("path,label\na/img_000.png,x\nmissing/one.png,y\na/img_001.png,y\n")
    with pytest.raises(EdgexferError, match=r"1 file\(s\) that do not exist: missing/one.png"):
        discover(tmp_path / "l.csv")


def test_csv_conflicting_labels_and_short_rows(tmp_path):
    make_tree(tmp_path, {"a": 2})
    (tmp_path / "dup.csv").write_text("a/img_000.png,x\na/img_000.png,y\na/img_001.png,y\n")
    with pytest.raises(EdgexferError, match="twice with different labels"):
        discover(tmp_path / "dup.csv")
    (tmp_path / "short.csv").write_text("a/img_000.png\n")
    with pytest.raises(EdgexferError, match="line 1 has 1 column"):
        discover(tmp_path / "short.csv")


def write_medmnist(path, n=(12, 4, 4), shape=(28, 28), classes=3, label_names=None):
    rng = np.random.default_rng(0)
    arrays = {}
    for name, count in zip(("train", "val", "test"), n, strict=True):
        arrays[f"{name}_images"] = rng.integers(0, 256, size=(count, *shape), dtype=np.uint8)
        arrays[f"{name}_labels"] = (np.arange(count) % classes).reshape(-1, 1).astype(np.uint8)
    if label_names is not None:
        arrays["label_names"] = np.array(label_names)
    np.savez(path, **arrays)
    return arrays


def test_medmnist_npz(tmp_path):
    arrays = write_medmnist(tmp_path / "derma.npz")
    source = discover(tmp_path / "derma.npz")
    assert source.kind == "npz" and source.classes == ["0", "1", "2"]
    assert len(source.presplit["train"]) == 12 and source.presplit["val"][1] == Sample("val:1", 1)
    image = source.load("test:2", (28, 28))
    np.testing.assert_array_equal(image[..., 1], arrays["test_images"][2])
    split = make_split(source)
    assert {s.ref for s in split.samples("test")} == {f"test:{i}" for i in range(4)}


def test_medmnist_rgb_and_names(tmp_path):
    write_medmnist(tmp_path / "c.npz", shape=(28, 28, 3), classes=2, label_names=["benign", "malignant"])
    source = discover(tmp_path / "c.npz")
    assert source.classes == ["benign", "malignant"]
    assert source.load("train:0", (64, 64)).shape == (64, 64, 3)


def test_npz_without_splits_is_an_error(tmp_path):
    np.savez(tmp_path / "x.npz", images=np.zeros((3, 4, 4)), labels=np.zeros(3))
    with pytest.raises(EdgexferError, match="MedMNIST style"):
        discover(tmp_path / "x.npz")


def test_split_reopens_moved_data(tmp_path, demo_split):
    demo_split.save(tmp_path / "split.json")
    moved = shutil.copytree(demo_split.source.root, tmp_path / "moved")
    reopened = Split.load(tmp_path / "split.json", data_root=moved)
    assert reopened.source.root == moved
    ref = reopened.samples("test")[0].ref
    np.testing.assert_array_equal(reopened.source.load(ref, (16, 16)), demo_split.source.load(ref, (16, 16)))


def test_split_record_pointing_to_missing_data(tmp_path, demo_split):
    record = demo_split.source.describe() | {"root": str(tmp_path / "gone")}
    with pytest.raises(EdgexferError, match="does not exist here"):
        DataSource.from_record(record)


# ---------------------------------------------------------------------------------------------- bad input


def test_missing_path(tmp_path):
    with pytest.raises(EdgexferError, match="does not exist"):
        discover(tmp_path / "nope")


def test_empty_class_folder(tmp_path):
    make_tree(tmp_path, {"a": 3, "b": 3})
    (tmp_path / "c").mkdir()
    with pytest.raises(EdgexferError, match=r"class folder .*c holds no images"):
        discover(tmp_path)


def test_single_class(tmp_path):
    make_tree(tmp_path, {"only": 5})
    with pytest.raises(EdgexferError, match="only the class 'only'.*at least two classes"):
        discover(tmp_path)


def test_images_without_class_folders(tmp_path):
    write_png(tmp_path / "a.png")
    with pytest.raises(EdgexferError, match="no class folders"):
        discover(tmp_path)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(EdgexferError, match="no class folders and no images"):
        discover(empty)


def test_unsupported_file(tmp_path):
    (tmp_path / "data.json").write_text("{}")
    with pytest.raises(EdgexferError, match="not a .csv or .npz"):
        discover(tmp_path / "data.json")


def test_dicom_class_folders(tmp_path):
    from test_data_images import write_dicom

    for c, name in enumerate(("effusion", "normal")):
        (tmp_path / name).mkdir()
        for i in range(3):
            pixels = np.full((24, 20), 500 + 1000 * c + 100 * i, np.uint16)
            pixels[:12] = 0
            write_dicom(tmp_path / name / f"im{i}.dcm", pixels, photometric="MONOCHROME1" if i == 0 else "MONOCHROME2")
    source = discover(tmp_path)
    assert source.classes == ["effusion", "normal"] and len(source.samples) == 6
    split = make_split(source, seed=0)
    images, labels = split.load_arrays("train", (12, 10))
    assert images.shape == (len(labels), 12, 10, 3) and images.dtype == np.uint8
    mono1 = source.load("normal/im0.dcm", (24, 20))
    mono2 = source.load("normal/im1.dcm", (24, 20))
    assert mono1[0, 0, 0] == 255 and mono2[0, 0, 0] == 0  # MONOCHROME1 shown inverted

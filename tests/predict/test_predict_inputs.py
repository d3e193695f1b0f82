"""How `edgexfer predict` expands its inputs: CSV/TSV lists of paths (header or not, BOM, blank rows, the
``path`` column or the first), folders, and the one-line errors (written from the list's documented rules)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edgexfer.errors import EdgexferError
from edgexfer.predict import collect_inputs


@pytest.fixture
def images(tmp_path) -> Path:
    folder = tmp_path / "scans"
    (folder / "sub").mkdir(parents=True)
    for name in ("a.png", "b.png", "sub/c.png"):
        (folder / name).write_bytes(b"png")
    (folder / ".hidden").mkdir()
    (folder / ".hidden" / "d.png").write_bytes(b"png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def _list(tmp_path: Path, name: str, text: str, encoding: str = "utf-8") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding=encoding)
    return path


def test_lists_with_and_without_headers(tmp_path, images):
    a, b = images / "a.png", images / "b.png"
    plain = _list(tmp_path, "plain.csv", "scans/a.png\n\n , \nscans/b.png\n")
    assert collect_inputs([plain]).paths == [a, b]  # relative to the list, blank rows ignored
    named = _list(tmp_path, "named.csv", "id,Path \n1,scans/b.png\n2,scans/missing.png\n3\n")
    found = collect_inputs([named])
    assert found.paths == [b] and [s.path for s in found.skipped] == [str(images / "missing.png")]
    assert "listed in named.csv but no such file" in found.skipped[0].reason
    other_header = _list(tmp_path, "other.csv", "file,label\nscans/a.png,x\n")
    assert collect_inputs([other_header]).paths == [a]  # a header without "path": the first column
    tsv = _list(tmp_path, "list.tsv", "path\tlabel\nscans/b.png\tx\n")
    assert collect_inputs([tsv]).paths == [b]
    bom = _list(tmp_path, "bom.csv", "path\nscans/a.png\n", encoding="utf-8-sig")
    assert collect_inputs([bom]).paths == [a]
    absolute = _list(tmp_path, "abs.csv", f"{b}\n")
    assert collect_inputs([absolute]).paths == [b]


def test_folders_files_and_errors(tmp_path, images):
    assert collect_inputs([images]).paths == [images / "a.png", images / "b.png", images / "sub" / "c.png"]
    assert collect_inputs([images / "notes.txt"]).paths == [images / "notes.txt"]  # tried, skipped if unreadable
    for inputs, words in [([], "no input images given"), ([tmp_path / "nope"], "does not exist"),
                          ([_list(tmp_path, "empty.csv", "\n , \n")], "is empty"),
                          ([_list(tmp_path, "header.csv", "path\n")], "names no files"),
                          ([_list(tmp_path, "latin.csv", "é\n", encoding="latin-1")], "cannot read the list")]:
        with pytest.raises(EdgexferError, match=words):
            collect_inputs(inputs)
    (tmp_path / "bare").mkdir()
    with pytest.raises(EdgexferError, match="holds no image files"):
        collect_inputs([tmp_path / "bare"])

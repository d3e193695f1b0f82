"""Hostile or careless input that used to give a wrong answer with exit 0 (issue 20, first section):
class names that cannot round-trip through the files edgexfer writes, a manifest whose classes disagree with
the model's own record, report images outside the report folder, markdown injection, non-finite pixels."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_handmade import CLASSES, write_manifest
from PIL import Image
from study_pages import bench_results, study_results

from edgexfer.cli import cli
from edgexfer.contracts.manifest import SourceRun
from edgexfer.data.names import class_name_problem
from edgexfer.data.sources import discover
from edgexfer.errors import EdgexferError
from edgexfer.io import write_json
from edgexfer.report.formats import md, md_code
from edgexfer.report.html import markdown_to_html
from edgexfer.studies.render import render_report

BAD_NAMES = {
    "newline": "new\nline",
    "carriage return": "a\rb",
    "tab": "a\tb",
    "escape": "red\x1b[31m",
    "line separator": "a\u2028b",
    "paragraph separator": "a\u2029b",
    "next line": "a\x85b",
    "right-to-left override": "abc\u202edcba",
    "byte order mark": "\ufeffnormal",
    "lone surrogate": "caf\udce9",
    "trailing space": "normal ",
    "leading space": " normal",
    "slash": "a/b",
    "backslash": "a\\b",
    "dot dot": "..",
    "too long": "x" * 256,
}
GOOD_NAMES = ["normal", "COVID-19", "pneumonia (viral)", "a, b", "x|y", "50$ bill", "![x](y)", "Ärzte",
              "می\u200cخواهم", "x" * 255, "*bold*"]


def _png(path: Path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12), value, np.uint8), mode="L").save(path)


def _class_folders(root: Path, names: list[str]) -> Path:
    for k, name in enumerate(names):
        folder = os.path.join(os.fsencode(root), os.fsencode(name))  # bytes: a lone surrogate is a raw byte
        os.makedirs(folder)
        for i in range(3):
            _png(Path(os.fsdecode(folder)) / f"{i}.png", (25 * k + i) % 256)
    return root


@pytest.mark.parametrize("name", BAD_NAMES.values(), ids=BAD_NAMES.keys())
def test_a_class_name_that_cannot_round_trip_is_refused(name):
    assert class_name_problem(name) is not None


@pytest.mark.parametrize("name", GOOD_NAMES)
def test_ordinary_class_names_are_accepted(name):
    assert class_name_problem(name) is None


@pytest.mark.parametrize("name", ["new\nline", "a\u2028b", "abc\u202edcba", "caf\udce9", "normal "],
                         ids=["newline", "line separator", "rtl override", "not utf-8", "trailing space"])
def test_class_folders_with_such_names_are_refused(tmp_path, name):
    data = _class_folders(tmp_path / "data", ["alpha", name, "zeta"])
    with pytest.raises(EdgexferError, match="class name"):
        discover(data)


def test_csv_and_npz_labels_are_checked_too(tmp_path):
    for i in range(4):
        _png(tmp_path / f"{i}.png", i * 40)
    with open(tmp_path / "labels.csv", "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows([["path", "label"], ["0.png", "a"], ["1.png", "a"], ["2.png", "b\nc"], ["3.png", "b\nc"]])
    with pytest.raises(EdgexferError, match=r"labels.csv.*class name 'b\\nc'"):
        discover(tmp_path / "labels.csv")
    images = np.zeros((4, 8, 8), np.uint8)
    labels = np.array([0, 1, 0, 1])
    np.savez(tmp_path / "d.npz", train_images=images, train_labels=labels, test_images=images, test_labels=labels,
             label_names=np.array(["ok", "not\u2028ok"]))
    with pytest.raises(EdgexferError, match="label_names"):
        discover(tmp_path / "d.npz")


def test_records_that_carry_classes_are_checked(tmp_path):
    with pytest.raises(EdgexferError, match="manifest"):
        SourceRun.from_dict({"image_size": [8, 8], "classes": ["a", "b\nc"]})


def test_cli_refuses_a_newline_class_folder_in_one_line_exit_2(tmp_path):
    data = _class_folders(tmp_path / "data", ["nodule", "new\nline", "normal"])
    result = CliRunner().invoke(cli, ["finetune", "--data", str(data), "--out", str(tmp_path / "run"),
                                      "--backbone", "tinycnn", "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert result.output.strip().count("\n") == 0 and "U+000A" in result.output
    assert not (tmp_path / "run").exists()


def test_good_names_travel_from_folders_unchanged(tmp_path):
    names = sorted(GOOD_NAMES[:9])
    data = _class_folders(tmp_path / "data", names)
    assert discover(data).classes == names
    assert json.loads(json.dumps(names)) == names


def _record_classes(export: Path, classes: list[str]) -> None:
    """Give every ONNX file of ``export`` the ``edgexfer.classes`` metadata a real export writes."""
    import onnx

    for model_path in export.glob("*.onnx"):
        model = onnx.load(str(model_path))
        entry = model.metadata_props.add()
        entry.key, entry.value = "edgexfer.classes", json.dumps(classes)
        onnx.save(model, str(model_path))
    write_manifest(export)


def _swap_manifest_classes(export: Path) -> list[str]:
    manifest = json.loads((export / "manifest.json").read_text())
    swapped = [CLASSES[1], CLASSES[0], *CLASSES[2:]]
    manifest["source_run"]["classes"] = swapped
    (export / "manifest.json").write_text(json.dumps(manifest))
    return swapped


def test_predict_and_package_refuse_a_manifest_whose_classes_disagree_with_the_model(export_copy, tmp_path):
    from edgexfer.predict import Predictor

    _record_classes(export_copy, CLASSES)
    image = export_copy.parent / "data" / "covid" / "covid_000.png"
    with Predictor(export_copy, precision="fp32") as model:  # the model's own record agrees: accepted
        honest = model.predict([image])[0]
    assert honest.classes == tuple(CLASSES)
    _swap_manifest_classes(export_copy)
    out = tmp_path / "p.csv"
    predicted = CliRunner().invoke(cli, ["predict", str(export_copy), str(image), "--out", str(out)])
    assert predicted.exit_code == 2 and "was exported for" in predicted.stderr, predicted.output
    assert predicted.stderr.strip().count("\n") == 0 and not out.exists()
    repo = tmp_path / "models"
    packaged = CliRunner().invoke(cli, ["package", str(export_copy), "--out", str(repo), "--precision", "fp32"])
    assert packaged.exit_code == 2 and "was exported for" in packaged.stderr, packaged.output
    assert not repo.exists() or not any(repo.iterdir())


def _png_file(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (4, 4), (200, 10, 10)).save(path)
    return path


def test_report_html_embeds_only_files_inside_the_report_folder(tmp_path):
    report = tmp_path / "report"
    _png_file(report / "plots" / "ok.png")
    secret = _png_file(tmp_path / "secret.png")
    (report / "plots" / "link.png").symlink_to(secret)
    page = markdown_to_html("![ok](plots/ok.png)\n", report)
    assert page.count("data:image/png;base64,") == 1
    for src in ("../secret.png", str(secret), "plots/link.png", "plots/%2E%2E/../secret.png"):
        with pytest.raises(EdgexferError, match="outside its folder"):
            markdown_to_html(f"![x]({src})\n", report)


HOSTILE = "*b* [l](http://e) ![i](../secret.png) `c` a|b <u> &amp; #"


def _hostile_bench(tmp_path: Path) -> Path:
    results = bench_results()
    classes = ["good", HOSTILE, "other"]
    for row in results["results"]:
        row["per_class"] = dict(zip(classes, row["per_class"].values(), strict=True))
    results["data"]["classes"] = classes
    results["data"]["class_counts"] = {c: 10 for c in classes}
    results["export"]["path"] = "/exports/`x` ![p](../secret.png) | y"
    results["export"]["source_run"]["name"] = HOSTILE
    write_json(tmp_path / "results.json", results)
    return tmp_path


def _hostile_study(tmp_path: Path) -> Path:
    results = study_results()
    results["title"] = HOSTILE
    results["data"]["classes"] = ["good", HOSTILE, "other"]
    results["data"]["source"]["root"] = "/data/`![p](../secret.png)`|"
    results["backbones"][0]["run_dir"] = "runs/![p](../secret.png)|`x`"
    write_json(tmp_path / "results.json", results)
    return tmp_path


@pytest.mark.parametrize("make", [_hostile_bench, _hostile_study], ids=["bench", "study"])
def test_user_strings_in_reports_stay_text(tmp_path, make):
    import html

    folder = make(tmp_path / "out")
    _png_file(tmp_path / "out" / ".." / "secret.png")
    paths = render_report(folder)
    page = paths["html"].read_text()
    report_md = paths["markdown"].read_text()
    # only the plots are pictures, each embedded: no picture, link, emphasis or code came from the strings
    assert page.count("<img ") == report_md.count("](plots/") >= 1
    assert "<a href" not in page and "<em>" not in page
    assert html.escape(HOSTILE, quote=False) in page  # the name reads back as it was written


def test_markdown_escapes_read_back_as_the_same_text():
    """md() mid-line and in a cell, md_code() in a cell: the rendered text is the input, nothing else."""
    import html

    from markdown_it import MarkdownIt

    parser = MarkdownIt("commonmark", {"html": False}).enable("table")
    for text in [HOSTILE, "a\\|b", "``x`", "\\", "_a_", "1. x", "x\\", "a  b", "<http://x>"]:
        shown = html.escape(text, quote=False)
        assert parser.render(f"A: {md(text)} .").strip() == f"<p>A: {shown} .</p>"
        assert f"<td>{shown}</td>" in parser.render(f"| h |\n|---|\n| {md(text)} |\n")
    for text in [HOSTILE, "a\\|b", "``x`", " x ", "`", "\\"]:
        shown = html.escape(text, quote=False)
        assert f"<td><code>{shown}</code></td>" in parser.render(f"| h |\n|---|\n| {md_code(text, table=True)} |\n")
        assert f"<p>A: <code>{shown}</code></p>" in parser.render(f"A: {md_code(text)}")


@pytest.mark.parametrize("fill", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_predictor_refuses_non_finite_pixels(handmade_export, fill):
    from edgexfer.predict import Predictor

    image = np.full((32, 32, 3), 120.0, dtype=np.float32)
    with Predictor(handmade_export, precision="fp32") as model:
        assert len(model.predict(image)) == 1  # finite floats are fine
        spoiled = image.copy()
        spoiled[3, 4, 1] = fill
        for bad in (np.full_like(image, fill), spoiled):
            with pytest.raises(EdgexferError, match="NaN or infinite"):
                model.predict(bad)
            with pytest.raises(EdgexferError, match="NaN or infinite"):
                model.predict([image, bad[None]])
            with pytest.raises(EdgexferError, match="NaN or infinite"):
                model.predict_batch(bad[None])


def test_predictor_refuses_arrays_that_are_not_numbers(handmade_export):
    from edgexfer.predict import Predictor

    with Predictor(handmade_export, precision="fp32") as model:
        with pytest.raises(EdgexferError, match=r"dtype <U1, not numbers\. pass a numeric array of pixels"):
            model.predict(np.full((32, 32, 3), "x"))
        with pytest.raises(EdgexferError, match=r"NaN or infinite value\(s\)\. pass finite pixel values"):
            model.predict_batch(np.full((1, 32, 32, 3), np.nan, dtype=np.float64))

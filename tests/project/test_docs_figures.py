"""Every measured figure in the docs comes from a results file in ``benchmarks/results/`` and names it.

The convention (docs/architecture.md, "Measuring"): a measured figure is written as the text of a link to
its results file, inline ``[3.18×](benchmarks/results/compare_runtimes_zen4.md)`` or by reference
``[3.18×][zen4]`` with ``[zen4]: benchmarks/results/compare_runtimes_zen4.md`` below the section. This file
checks that

- every ``benchmarks/results/...`` a doc links to or names in a code span exists;
- every number in a figure link's text appears in the file it links to: in a Markdown file as written
  there (``3,182``, ``25.66``); in a JSON file as a number that rounds to it (a fraction counts as a
  percentage too: 0.9777 is "97.8");
- no figure with a unit that only a measurement has (ms, ×, MB, GB, GFLOP, min) stands outside such a link,
  except the few below, which are settings, targets or bounds, not measurements.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
RESULTS = "benchmarks/results/"

# (doc, the figure's text as written): figures with a measurement's unit that are not measurements.
NOT_MEASUREMENTS = {
    ("docs/architecture.md", "4 GB"),  # the bound calibration must stay under (a target)
    ("docs/contracts.md", "10 ms"),  # the memory sampler's period (a setting)
    ("docs/contracts.md", "1.2×"),  # the INT8 speed check's threshold for "pays"
    ("docs/contracts.md", "1×"),  # ... and for "slower"
    ("docs/predict.md", "3×"),  # a test's threshold: more than 3× chance
    ("docs/studies.md", "200 MB"),  # Ray's object store size (a setting)
}

# results files the docs name as what a command writes, not as a source of figures
WRITTEN_ELSEWHERE = {"benchmarks/results/gpu_check.json"}  # `make gpu-check`, on a GPU machine only

_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_INLINE_LINK = re.compile(r"\[([^\]\n]+)\]\(([^)\s]+)\)")
_REF_LINK = re.compile(r"\[([^\]\n]+)\]\[([^\]\n]+)\]")
_REF_DEF = re.compile(r"^\s*\[([^\]\n]+)\]:\s*(\S+)", re.M)
_CODE_PATH = re.compile(r"`[^`\n]*?(benchmarks/results/[\w./*<>-]+)[^`\n]*`")
_NUMBER = re.compile(r"(?<![\w.])[-−]?\d[\d,]*(?:\.\d+)?")
# a number followed by a unit only a measurement carries (not "56×56": no digit after ×)
_MEASURED = re.compile(r"(?<![\w.−-])(\d[\d,]*(?:\.\d+)?)\s?(ms|×(?!\s?\d)|MB|GB|GFLOP|min)\b|(\d[\d,]*(?:\.\d+)?×)(?!\d)")


def _rel(doc: Path) -> str:
    return doc.relative_to(ROOT).as_posix() if doc.is_relative_to(ROOT) else doc.name


def _prose(doc: Path) -> str:
    """The doc without its fenced code blocks (commands and sample output quote no results)."""
    return _FENCE.sub("", doc.read_text())


def figure_links(doc: Path) -> list[tuple[str, Path]]:
    """(link text, resolved target) for every link from ``doc`` into benchmarks/results/, inline or by reference."""
    text = _prose(doc)
    refs = {name.lower(): target for name, target in _REF_DEF.findall(text)}
    links = [(label, target) for label, target in _INLINE_LINK.findall(text)]
    links += [(label, refs[ref.lower()]) for label, ref in _REF_LINK.findall(text) if ref.lower() in refs]
    return [(label, (doc.parent / target.split("#")[0]).resolve()) for label, target in links
            if RESULTS in target]


def numbers(text: str) -> list[str]:
    return [n.replace("−", "-").replace(",", "").lstrip("-") for n in _NUMBER.findall(text)]


def _file_numbers(path: Path) -> set[str]:
    return {n.replace(",", "").lstrip("-") for n in _NUMBER.findall(path.read_text())}


def _json_numbers(value) -> list[float]:
    if isinstance(value, bool):
        return []
    if isinstance(value, (int, float)):
        return [float(value)]
    if isinstance(value, dict):
        return [n for v in value.values() for n in _json_numbers(v)]
    if isinstance(value, list):
        return [n for v in value for n in _json_numbers(v)]
    return []


def in_results(figure: str, path: Path) -> bool:
    """Whether the number ``figure`` (as the doc writes it) is one the results file holds."""
    if figure in _file_numbers(path):
        return True
    if path.suffix != ".json":
        return False
    decimals = len(figure.partition(".")[2])
    wanted = float(figure)
    return any(round(abs(n) * scale, decimals) == wanted
               for n in _json_numbers(json.loads(path.read_text())) for scale in (1, 100))


def test_the_convention_reads_links_and_numbers(tmp_path):
    doc = tmp_path / "doc.md"
    doc.write_text("Ran [3.18×](benchmarks/results/a.md) and [90.2 → 89.8 %][a]; [not a figure](x.md).\n\n"
                   "```\n[1 ms](benchmarks/results/in_code.md)\n```\n[a]: benchmarks/results/a.md\n")
    target = (tmp_path / "benchmarks/results/a.md").resolve()
    assert figure_links(doc) == [("3.18×", target), ("90.2 → 89.8 %", target)]
    assert numbers("90.2 → 89.8 %, 2,265 images, −0.89 pt") == ["90.2", "89.8", "2265", "0.89"]
    results = tmp_path / "r.json"
    results.write_text('{"agreement": 0.9777777, "ms": 25.662, "images": 2265}')
    assert [in_results(f, results) for f in ("97.8", "25.66", "25.7", "2265", "97.7", "25.67")] == \
        [True, True, True, True, False, False]
    results_md = tmp_path / "r.md"
    results_md.write_text("| 25.66 | 3,182 |")
    assert [in_results(f, results_md) for f in ("25.66", "3182", "25.7", "3.18")] == [True, True, False, False]


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_every_results_file_a_doc_names_exists(doc):
    text = _prose(doc)
    missing = [str(target.relative_to(ROOT)) for _, target in figure_links(doc) if not target.exists()]
    missing += [path for path in _CODE_PATH.findall(text)
                if not any(c in path for c in "*<>") and path not in WRITTEN_ELSEWHERE
                and not list(ROOT.glob(path.rstrip("/") + "*"))]  # a file, or the prefix a script's --out takes
    missing += [target for _, target in _REF_DEF.findall(text)
                if RESULTS in target and not (doc.parent / target).resolve().exists()]
    assert not missing, f"{_rel(doc)} names results files that do not exist: {missing}"


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_every_linked_figure_is_in_its_results_file(doc):
    wrong = [f"{label!r}: {figure} not in {target.relative_to(ROOT)}"
             for label, target in figure_links(doc) if target.exists()
             for figure in numbers(label) if not in_results(figure, target)]
    assert not wrong, f"{_rel(doc)} quotes figures its results files do not hold:\n" + "\n".join(wrong)


def unlinked_measurements(doc: Path) -> list[str]:
    text = _INLINE_LINK.sub(lambda m: "" if RESULTS in m.group(2) else m.group(0), _prose(doc))
    refs = {name.lower() for name, target in _REF_DEF.findall(text) if RESULTS in target}
    text = _REF_LINK.sub(lambda m: "" if m.group(2).lower() in refs else m.group(0), text)
    text = re.sub(r"`[^`\n]*`", "", text)  # option values and code
    found = [m.group(0).strip() for m in _MEASURED.finditer(text)]
    return [f for f in found if (_rel(doc), f) not in NOT_MEASUREMENTS]


def test_an_unlinked_measurement_is_found(tmp_path):
    doc = tmp_path / "README.md"
    doc.write_text("INT8 ran in 7.65 ms, [3.36×](benchmarks/results/a.md) FP32, 2.9× alone, 56×56 layers, "
                   "3.2 GB peak, `--threshold 5 ms`.\n")
    assert unlinked_measurements(doc) == ["7.65 ms", "2.9×", "3.2 GB"]


@pytest.mark.parametrize("doc", DOCS, ids=_rel)
def test_no_measurement_without_its_results_file(doc):
    assert not unlinked_measurements(doc), (
        f"{_rel(doc)} quotes measurements that name no results file (write each as a link to the "
        f"benchmarks/results/ file that holds it): {unlinked_measurements(doc)}")


def test_every_exception_is_still_in_its_doc():
    """A figure let through as a setting or bound is named where it stands; one no doc holds any more goes."""
    stale = [(doc, figure) for doc, figure in sorted(NOT_MEASUREMENTS)
             if figure not in [m.group(0).strip() for m in _MEASURED.finditer(_prose(ROOT / doc))]]
    assert not stale, f"not in their docs any more (remove them from NOT_MEASUREMENTS): {stale}"

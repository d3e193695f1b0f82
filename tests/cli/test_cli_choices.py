"""Options whose values come from a registry take their choices from it, in every command alike."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgexfer.backbones.registry import backbone_names
from edgexfer.cli import cli
from edgexfer.runtime import RUNTIMES


@pytest.mark.parametrize("argv", [
    ["bench", "EXPORT", "--runtimes", "ort-cpu,nosuch"],
    ["compare", "--data", "demo", "--backbones", "tinycnn", "--out", "OUT", "--runtimes", "nosuch"],
])
def test_unknown_runtime_lists_the_runtime_table(tmp_path, argv):
    argv = [str(tmp_path / a) if a in ("EXPORT", "OUT") else a for a in argv]
    result = CliRunner().invoke(cli, argv)
    assert result.exit_code == 2
    assert f"unknown runtime(s) 'nosuch'; choose from: {', '.join(RUNTIMES)}" in result.output
    assert not (tmp_path / "OUT").exists()


def test_runtime_help_is_the_same_in_bench_and_compare():
    helps = [CliRunner().invoke(cli, [name, "--help"], terminal_width=400).output for name in ("bench", "compare")]
    line = f"from: {', '.join(RUNTIMES)}"
    assert all(line in " ".join(h.split()) for h in helps)


def test_demo_backbone_is_a_choice_of_the_registry(tmp_path):
    from edgexfer.cli.demo import demo

    option = next(p for p in demo.params if p.name == "backbone")
    assert list(option.type.choices) == backbone_names()
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path / "d"), "--backbone", "resnet5"])
    assert result.exit_code == 2 and "resnet50" in result.output and not (tmp_path / "d").exists()

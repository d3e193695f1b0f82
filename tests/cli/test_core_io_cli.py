"""Atomic writes leave no partial file; user errors are one line with the right exit code."""

import json

import click
import pytest
from click.testing import CliRunner

from edgexfer import _lazy
from edgexfer.cli import COMMANDS, LazyGroup, cli
from edgexfer.errors import EdgexferError, GateFailed
from edgexfer.io import atomic_path, read_json, sha256_file, write_json


def test_atomic_write_keeps_old_file_when_the_write_fails(tmp_path):
    target = tmp_path / "manifest.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("disk full")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]


def test_read_json_errors_are_one_clear_line(tmp_path):
    with pytest.raises(EdgexferError, match="does not exist"):
        read_json(tmp_path / "nope.json", "run record")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(EdgexferError, match="not valid JSON"):
        read_json(bad)


def test_sha256_matches_hashlib(tmp_path):
    import hashlib

    f = tmp_path / "blob"
    f.write_bytes(b"x" * 3_000_000)
    assert sha256_file(f) == hashlib.sha256(b"x" * 3_000_000).hexdigest()


def test_require_names_the_extra():
    with pytest.raises(EdgexferError, match=r"edgexfer\[tensorrt\]"):
        _lazy.require("tensorrt.definitely_missing_module", "building engines")


@pytest.mark.parametrize("error, code", [(EdgexferError("bad path /x", "check it"), 2), (GateFailed("INT8 lost 3 points"), 1)])
def test_user_errors_print_one_line_and_exit_code(error, code):
    @click.group(cls=LazyGroup)
    def group():
        pass

    @group.command()
    def boom():
        raise error

    result = CliRunner().invoke(group, ["boom"])
    assert result.exit_code == code
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert lines == [f"edgexfer: error: {error.line()}"]
    assert "Traceback" not in result.output


def test_every_command_is_registered_and_has_help():
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output

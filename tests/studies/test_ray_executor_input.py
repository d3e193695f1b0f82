"""Bad input for ``compare --executor ray``: one line, exit 2, and no study folder written.

No Ray instance is started here (the checks come first), so these run in seconds.
"""

from __future__ import annotations

import sys

import pytest
from click.testing import CliRunner

from edgexfer.cli import cli


def compare(out: str, *options: str):
    result = CliRunner().invoke(cli, ["compare", "--data", "demo", "--backbones", "tinycnn", "--out", out, *options])
    lines = [line for line in result.output.splitlines() if line.startswith("edgexfer: error:")]
    return result.exit_code, lines, result.output


@pytest.mark.parametrize("options, message", [
    (["--executor", "ray", "--ray-address", "127.0.0.1:1"], "cannot reach the Ray cluster at --ray-address 127.0.0.1:1"),
    (["--executor", "ray", "--ray-address", "nohost"], "--ray-address nohost is not auto or HOST:PORT"),
    (["--gpus-per-job", "1"], "only apply to Ray jobs"),
    (["--ray-address", "auto"], "only apply to Ray jobs"),
    (["--executor", "ray", "--cpus-per-job", "64"], "no Ray node has 64 CPU(s)"),
])
def test_bad_ray_options_are_one_line_and_write_nothing(tmp_path, monkeypatch, options, message):
    pytest.importorskip("ray")
    import ray

    if ray.is_initialized():
        pytest.skip("a Ray instance of another test is running in this process")
    # a cluster address in the environment: without --ray-address a local instance is started all the same
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")
    code, lines, output = compare(str(tmp_path / "study"), *options)
    assert code == 2 and len(lines) == 1 and message in lines[0], output
    assert not (tmp_path / "study").exists()


def test_a_relative_study_folder_is_refused_for_a_cluster(tmp_path, monkeypatch):
    """Each node would resolve a relative path against its own working folder."""
    monkeypatch.chdir(tmp_path)
    code, lines, output = compare("study", "--executor", "ray", "--ray-address", "10.0.0.1:6379")
    assert code == 2 and len(lines) == 1 and "--out study is a relative path" in lines[0], output
    assert "absolute path on a filesystem every node" in lines[0]
    assert not (tmp_path / "study").exists()


def test_ray_missing_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as on an install without the distributed extra
    code, lines, output = compare(str(tmp_path / "study"), "--executor", "ray")
    assert code == 2 and len(lines) == 1, output
    assert "needs the Python module 'ray'" in lines[0] and "pip install 'edgexfer[distributed]'" in lines[0]
    assert not (tmp_path / "study").exists()


def test_executor_options_from_python_are_checked_like_the_command_line(tmp_path):
    from edgexfer.errors import EdgexferError
    from edgexfer.studies.compare import CompareConfig
    from edgexfer.studies.executors import ExecutorConfig

    config = CompareConfig(data="demo", backbones=["tinycnn"], out=tmp_path / "s",
                           executor={"kind": "ray", "cpus_per_job": 2, "gpus_per_job": 0.5})
    assert config.executor == ExecutorConfig(kind="ray", cpus_per_job=2, gpus_per_job=0.5)
    with pytest.raises(EdgexferError, match="unknown executor 'dask'"):
        ExecutorConfig(kind="dask")
    with pytest.raises(EdgexferError, match="--gpus-per-job -1 out of range"):
        ExecutorConfig(kind="ray", gpus_per_job=-1)

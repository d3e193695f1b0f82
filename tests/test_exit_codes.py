"""Exit codes and one-line errors (issue 20, "Runaway resources and wrong exit codes")."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from edgexfer.cli import cli


def _ctrl_c(*_args, **_kwargs):
    raise KeyboardInterrupt


@pytest.mark.parametrize("command,target", [
    (["predict", "exported", "a.png"], "edgexfer.predict.predict_inputs"),
    (["bench", "exported"], "edgexfer.evaluate.bench.run_bench"),
    (["finetune", "--data", "demo", "--out", "run", "--backbone", "tinycnn"], "edgexfer.train.finetune"),
    (["compare", "--data", "demo", "--backbones", "tinycnn", "--out", "study"], "edgexfer.studies.compare.run_compare"),
], ids=["predict", "bench", "finetune", "compare"])
def test_ctrl_c_exits_130_in_one_line(monkeypatch, tmp_path, command, target):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(target, _ctrl_c)
    result = CliRunner().invoke(cli, command)
    assert result.exit_code == 130, (result.output, result.exception)
    assert result.stderr.strip().count("\n") == 0 and "interrupted (Ctrl-C)" in result.stderr
    assert "Aborted" not in result.output

"""Quiet by default: no absl/oneDNN/CUDA-stub lines from TensorFlow, `edgexfer --verbose` shows them.

The real thing runs in subprocesses (the notices are written by C++ to file descriptor 2 while
TensorFlow loads, so only a fresh interpreter shows them): a command added to the `edgexfer` group
imports TensorFlow, runs an op and a tf.data map (the two ``E0000`` lines came from those).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import warnings

import pytest

from edgexfer import logs

pytest.importorskip("tensorflow")

SCRIPT = textwrap.dedent(
    """
    import sys
    import click
    from edgexfer.cli import cli, main

    @cli.command("tf-touch")
    def tf_touch():
        import numpy as np
        import tensorflow as tf
        x = tf.constant([1.0, 2.0]) * 2
        ds = tf.data.Dataset.from_tensor_slices(np.zeros((4, 2), "float32")).map(lambda v: v + 1).batch(2)
        n = sum(int(b.shape[0]) for b in ds)
        print("stderr still works", file=sys.stderr)
        click.echo(f"TOUCHED {float(x[1])} {n}")

    main(sys.argv[1:])
    """
)

NOISE = ("I0000", "E0000", "W0000", "absl::InitializeLog", "oneDNN", "cudart_stub", "cuInit", "use_unbounded_threadpool")


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items()
           if k not in ("TF_CPP_MIN_LOG_LEVEL", logs.VERBOSE_ENV, "GRPC_VERBOSITY", "GLOG_minloglevel")}
    return subprocess.run([sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=300, env=env)


def test_tensorflow_command_is_quiet_and_verbose_shows_everything():
    quiet = _run("tf-touch")
    assert quiet.returncode == 0, quiet.stderr
    assert "TOUCHED 4.0 4" in quiet.stdout
    assert "stderr still works" in quiet.stderr  # only absl's lines are held back, not ours
    shown = [line for line in quiet.stderr.splitlines() if any(n in line for n in NOISE)]
    assert shown == [], shown

    loud = _run("--verbose", "tf-touch")
    assert loud.returncode == 0, loud.stderr
    # the pre-initialization banner is printed by every TensorFlow build, GPU or not
    assert "absl::InitializeLog" in loud.stderr


@pytest.mark.parametrize("line, notice", [
    ("I0000 00:00:1795595974.214602    5948 port.cc:153] oneDNN custom operations are on.", True),
    ("E0000 00:00:1795595976.073159    5948 cuda_platform.cc:52] failed call to cuInit: INTERNAL", True),
    ("W0522 10:01:02.123456 140 gpu_device.cc:2344] Cannot dlopen some GPU libraries.", True),
    ("WARNING: All log messages before absl::InitializeLog() is called are written to STDERR", True),
    ("To enable the following instructions: AVX2 FMA, in other operations, rebuild TensorFlow", True),
    ("edgexfer: error: the data folder /x does not exist. pass --data", False),
    ("Traceback (most recent call last):", False),
    ("I0000 is a fine name for a class", False),
])
def test_absl_notice_lines(line, notice):
    assert logs.is_absl_notice(line) is notice


def test_held_stderr_passes_other_lines_back(capfd):
    with logs.held_stderr():
        os.write(2, b"I0000 00:00:1795595974.214602    5948 port.cc:153] oneDNN custom operations are on.\n")
        os.write(2, b"a real problem\n")
    assert capfd.readouterr().err == "a real problem\n"


def test_dependency_deprecations_filtered_but_user_warnings_kept(monkeypatch):
    monkeypatch.setenv(logs.VERBOSE_ENV, "")
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))  # the import finder goes away afterwards
    for name in logs.QUIET_ENV:
        monkeypatch.setenv(name, os.environ.get(name, "x"))  # restored afterwards
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        monkeypatch.setitem(logs._state, "configured", False)
        logs.configure()
        # as if raised inside tf2onnx: a FutureWarning about its own internals is hidden
        warnings.warn_explicit("np.object is deprecated", FutureWarning, "x.py", 1, module="tf2onnx.tf_utils")
        warnings.warn_explicit("deprecated", DeprecationWarning, "x.py", 1, module="keras.src.layers")
        # a warning the user can act on stays
        warnings.warn_explicit("Corrupt EXIF data", UserWarning, "x.py", 1, module="PIL.TiffImagePlugin")
        warnings.warn_explicit("ours", DeprecationWarning, "x.py", 1, module="edgexfer.something")
    assert [str(w.message) for w in caught] == ["Corrupt EXIF data", "ours"]


def test_verbose_flag_sets_the_environment_for_children(monkeypatch):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    monkeypatch.setenv(logs.VERBOSE_ENV, "")
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))
    result = CliRunner().invoke(cli, ["--verbose", "backbones", "--json"])
    assert result.exit_code == 0, result.output
    assert os.environ.get(logs.VERBOSE_ENV) == "1" and logs.is_verbose()


def test_every_progress_bar_hides_itself_off_a_terminal():
    """tqdm's ``disable=None`` hides a bar when stderr is not a terminal (a log file, CI): every bar in the
    package must pass it (``None``, or ``None if progress else True``), or logs fill with carriage returns."""
    import ast
    from pathlib import Path

    import edgexfer

    offenders = []
    for path in Path(edgexfer.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) == "tqdm":
                disable = next((k.value for k in node.keywords if k.arg == "disable"), None)
                ok = disable is not None and (
                    (isinstance(disable, ast.Constant) and disable.value is None)
                    or (isinstance(disable, ast.IfExp) and isinstance(disable.body, ast.Constant)
                        and disable.body.value is None))
                if not ok:
                    offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


def test_a_bar_in_a_log_writes_no_carriage_return():
    import io

    from tqdm.auto import tqdm

    log = io.StringIO()  # not a terminal
    for _ in tqdm(range(50), file=log, disable=logs.progress_disabled(True)):
        pass
    assert log.getvalue() == ""

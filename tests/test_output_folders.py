"""Output folders (issue 20, "Data loss or contamination"): the folder swap survives a kill at every step,
outputs never overlap their inputs, locks hold the resolved folder, and nothing is written through a link."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from test_bench_tiny import FAST, handmade_export_fixture  # noqa: F401  (the hand-made export, shared)

from edgexfer import _folders
from edgexfer.errors import EdgexferError

ROOT = Path(__file__).resolve().parents[1]

# a child process that swaps `staging` onto `final` and SIGKILLs itself on the N-th rename/removal
_KILLED_SWAP = textwrap.dedent("""
    import os, shutil, signal, sys
    sys.path.insert(0, sys.argv[1])
    from edgexfer import _folders
    staging, final, kill_at = sys.argv[2], sys.argv[3], int(sys.argv[4])
    calls = [0]
    def counted(fn):
        def step(*args, **kwargs):
            calls[0] += 1
            if calls[0] == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)
            return fn(*args, **kwargs)
        return step
    os.rename, os.replace, shutil.rmtree = counted(os.rename), counted(os.replace), counted(shutil.rmtree)
    _folders.swap_in(staging, final)
""")


def _folder(path: Path, marker: str) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(marker)
    (path / "model.onnx").write_bytes(marker.encode() * 100)
    return path


@pytest.mark.parametrize("kill_at", [1, 2, 3, 0], ids=["before-first-rename", "between-renames",
                                                        "before-cleanup", "not-killed"])
def test_the_swap_is_safe_whatever_step_a_kill_lands_on(tmp_path, kill_at):
    final = _folder(tmp_path / "exported", "old")
    staging = _folder(tmp_path / f".exported.staging-{os.getpid()}-x", "new")
    child = subprocess.run([sys.executable, "-c", _KILLED_SWAP, str(ROOT), str(staging), str(final), str(kill_at)],
                           capture_output=True, text=True)
    assert child.returncode == (-signal.SIGKILL if kill_at else 0), child.stderr
    # the next command, holding the lock, sweeps what the killed one left
    _folders.sweep_stale(final)
    assert final.is_dir(), "a kill and the next sweep lost the folder"
    marker = (final / "manifest.json").read_text()
    assert marker == ("old" if kill_at in (1, 2) else "new")
    assert (final / "model.onnx").read_bytes() == marker.encode() * 100
    assert sorted(p.name for p in tmp_path.iterdir()) == ["exported"]  # no staging or old folder left


def test_a_failed_second_rename_puts_the_old_folder_back(tmp_path, monkeypatch):
    final = _folder(tmp_path / "bench", "old")
    staging = _folder(tmp_path / ".bench.staging-1-x", "new")
    real = os.rename

    def fail_on_staging(src, dst):
        if Path(src) == staging:
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(os, "rename", fail_on_staging)
    with pytest.raises(EdgexferError, match="No space left"):
        _folders.swap_in(staging, final)
    assert (final / "manifest.json").read_text() == "old"
    assert not list(tmp_path.glob(".bench.old-*"))


def _bench(export: Path, out: Path, *more: str):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    return CliRunner().invoke(cli, ["bench", str(export), "--out", str(out), *FAST, *more])


def test_a_bench_that_fails_half_way_leaves_the_previous_folder_whole(handmade_export, tmp_path, monkeypatch):
    from edgexfer.report import bench_report

    out = tmp_path / "bench"
    assert _bench(handmade_export, out).exit_code == 0
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    real_plots = bench_report.write_bench_plots

    def disk_full_after_one_plot(results, plots_dir):
        written = real_plots(results, plots_dir)  # the plots are written, then the disk is full
        raise EdgexferError(f"cannot write {Path(plots_dir).parent / 'report.md'}: No space left on device",
                            "check free disk space and permissions")
        return written

    monkeypatch.setattr(bench_report, "write_bench_plots", disk_full_after_one_plot)
    failed = _bench(handmade_export, out)
    assert failed.exit_code == 2 and "No space left" in failed.stderr
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    fresh = tmp_path / "fresh"
    assert _bench(handmade_export, fresh).exit_code == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bench"]  # nothing half-written, no staging left

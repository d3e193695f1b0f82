"""Output folders (issue 20, "Data loss or contamination"): the folder swap survives a kill at every step,
outputs never overlap their inputs, locks hold the resolved folder, and nothing is written through a link."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from fixtures_handmade import FAST, LOOSE

from edgexfer import _folders
from edgexfer.errors import EdgexferError

ROOT = Path(__file__).resolve().parents[2]

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

    return CliRunner().invoke(cli, ["bench", str(export), "--out", str(out), *FAST, *LOOSE, *more])


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


def _cli(*args: str):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    return CliRunner().invoke(cli, list(args))


def _refused(result, words: str) -> None:
    assert result.exit_code == 2, result.output
    assert words in result.stderr and result.stderr.strip().count("\n") == 0, result.stderr


def test_outputs_inside_equal_to_or_holding_an_input_are_refused(export_copy, tmp_path):
    from edgexfer.export.config import ExportConfig
    from edgexfer.studies.compare import CompareConfig

    data = export_copy.parent / "data"
    image = data / "covid" / "covid_000.png"
    def snapshot():
        return sorted((p, p.read_bytes() if p.is_file() else None) for f in (export_copy, data) for p in f.rglob("*"))

    before = snapshot()
    tmp_path = tmp_path / "elsewhere"
    tmp_path.mkdir()
    _refused(_cli("bench", str(export_copy), "--out", str(export_copy / "bench"), *FAST), "lies inside the export")
    alias = tmp_path / "alias"
    alias.symlink_to(export_copy)
    _refused(_cli("bench", str(export_copy), "--out", str(alias)), "is the export folder")  # seen through the link
    _refused(_cli("bench", str(export_copy), "--out", str(export_copy.parent), *FAST), "holds the export folder")
    _refused(_cli("bench", str(export_copy), "--data", str(data), "--out", str(data / "b"), *FAST), "inside the data")
    listing = tmp_path / "list.csv"
    listing.write_text(f"{image}\n")
    _refused(_cli("predict", str(export_copy), str(listing), "--out", str(listing)), "is the input")
    assert listing.read_text() == f"{image}\n"
    _refused(_cli("predict", str(export_copy), str(image), "--out", str(export_copy / "p.csv")), "inside the export")
    _refused(_cli("package", str(export_copy), "--out", str(export_copy)), "inside the export")
    _refused(_cli("finetune", "--data", str(data), "--out", str(data / "run"), "--backbone", "tinycnn"), "inside the data")
    assert snapshot() == before
    with pytest.raises(EdgexferError, match="lies inside the run folder"):
        ExportConfig(run_dir=tmp_path / "run", out=tmp_path / "run" / "exported").validate()
    with pytest.raises(EdgexferError, match="holds the data"):
        CompareConfig(data=str(data), backbones=["tinycnn"], out=export_copy.parent)
    # a prediction list beside the images it lists is fine: folders are searched for image files only
    assert _cli("predict", str(export_copy), str(data / "covid"), "--out", str(data / "covid" / "p.csv")).exit_code == 0


def test_a_folder_and_a_symlink_to_it_share_one_lock(tmp_path):
    from edgexfer.io import FolderBusy, lock_folder

    real = tmp_path / "bench"
    real.mkdir()
    alias = tmp_path / "alias"
    alias.symlink_to(real)
    with lock_folder(real, "edgexfer bench"):
        with pytest.raises(FolderBusy, match="in use by process"):
            lock_folder(alias, "edgexfer bench")
        with pytest.raises(FolderBusy):
            lock_folder(tmp_path / "sub" / ".." / "bench")
    lock_folder(alias).release()  # free again once released


@pytest.mark.parametrize("plant", ["symlink", "fifo"])
def test_a_planted_lock_file_is_refused_not_followed(tmp_path, plant):
    from edgexfer.io import lock_folder

    victim = tmp_path / "precious.txt"
    victim.write_text("do not truncate me")
    lock_path = tmp_path / ".bench.lock"
    if plant == "symlink":
        lock_path.symlink_to(victim)
    else:
        os.mkfifo(lock_path)
    with pytest.raises(EdgexferError, match="lock file .* is (a symbolic link|not a regular file)"):
        lock_folder(tmp_path / "bench")
    assert victim.read_text() == "do not truncate me"


def test_nothing_is_written_through_a_symlink_inside_an_output_folder(handmade_export, tmp_path):
    out = tmp_path / "bench"
    assert _bench(handmade_export, out).exit_code == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "accuracy_vs_latency.png").write_bytes(b"not yours to replace")
    shutil.rmtree(out / "plots")
    (out / "plots").symlink_to(elsewhere)
    # report redraws in place: refused, one line
    _refused(_cli("report", str(out)), "is a symbolic link")
    # bench builds a new folder and swaps it in: the link goes with the old folder, its target untouched
    assert _bench(handmade_export, out).exit_code == 0
    assert (elsewhere / "accuracy_vs_latency.png").read_bytes() == b"not yours to replace"
    assert sorted(p.name for p in elsewhere.iterdir()) == ["accuracy_vs_latency.png"]
    assert not (out / "plots").is_symlink() and (out / "plots" / "accuracy_vs_latency.png").is_file()
    run = tmp_path / "run"
    run.mkdir()
    (run / "plots").symlink_to(elsewhere)
    _refused(_cli("finetune", "--data", str(handmade_export.parent / "data"), "--out", str(run), "--backbone",
                  "tinycnn"), "is a symbolic link")


def test_an_export_s_temp_folder_is_its_own_thread_s_only(tmp_path):
    import tempfile
    import threading

    from edgexfer.export.pipeline import _temp_files_inside

    (tmp_path / "staging").mkdir()
    staging = tmp_path / "staging" / ".tmp"
    before = (tempfile.gettempdir(), tempfile.tempdir, os.environ.get("TMPDIR"))
    seen: dict[str, str] = {}
    inside, checked = threading.Event(), threading.Event()

    def other_thread():
        inside.wait(10)
        with tempfile.TemporaryDirectory() as other:
            seen["other"] = other
        seen["other_env"] = os.environ.get("TMPDIR")
        checked.set()

    worker = threading.Thread(target=other_thread)
    worker.start()
    with _temp_files_inside(staging):
        with tempfile.TemporaryDirectory() as mine:
            seen["mine"] = mine
        inside.set()
        checked.wait(10)
    worker.join(10)
    assert Path(seen["mine"]).parent == staging  # the export's own temp files go with its staging folder
    assert not Path(seen["other"]).is_relative_to(tmp_path)  # a library user's other thread is unaffected
    assert seen["other_env"] == before[2]
    assert (tempfile.gettempdir(), tempfile.tempdir, os.environ.get("TMPDIR")) == before


def test_reading_the_umask_does_not_change_it(monkeypatch):
    from edgexfer import io

    expected = 0o666 & ~io._umask()

    def no_flipping(_mask):
        raise AssertionError("os.umask changes the mask of every thread, even for an instant")

    monkeypatch.setattr(os, "umask", no_flipping)
    assert io.file_mode() == expected


def test_demo_data_folders_get_the_mode_a_plain_mkdir_gives(tmp_path):
    import stat

    from edgexfer.data.synthetic import generate_demo
    from edgexfer.io import dir_mode, file_mode

    out = generate_demo(tmp_path / "demo", per_class=3, size=32)
    for path in [out, *out.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (dir_mode() if path.is_dir() else file_mode()), f"{path} has mode {oct(mode)}"

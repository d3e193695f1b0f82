"""mypy over our TensorRT code against tensorrt-stubs (a patched copy; see scripts/patch_trt_stubs.py).

Both TensorRT modules import ``tensorrt`` with a plain ``import`` statement inside their functions, so
mypy checks every call against the stubs. These tests prove the check bites: a module copied with a
misspelled TensorRT call is reported. `make typecheck` runs the same settings over all of edgexfer/.

Every file checked here goes through ONE mypy process (``checked``): mypy reports each error with its file's
path, so each test reads its own file's errors, and the package is analysed once instead of once per test.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
UNPACKED_STUBS = REPO / ".stubs" / "site"
RUNTIME = REPO / "edgexfer" / "runtime" / "trt_runtime.py"
EXPORT = REPO / "edgexfer" / "export" / "tensorrt.py"


def _patch_stubs(dest: Path) -> Path:
    spec = importlib.util.spec_from_file_location("patch_trt_stubs", REPO / "scripts" / "patch_trt_stubs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not (UNPACKED_STUBS / "tensorrt").is_dir():
        pytest.fail(f"tensorrt-stubs are not unpacked at {UNPACKED_STUBS}: run `make setup`")
    return module.patch_stubs(UNPACKED_STUBS, dest)


@pytest.fixture(scope="module")
def stubs(tmp_path_factory):
    return _patch_stubs(tmp_path_factory.mktemp("trt-stubs"))


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mypy-cache")


def _mypy(targets: list[Path], stubs: Path, cache: Path) -> dict[Path, list[str]]:
    """mypy with the project's settings (pyproject.toml) on the files ``targets`` in one process: each file's
    errors (its own lines only)."""
    env = {**os.environ, "MYPYPATH": str(stubs)}
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "--follow-imports=silent",
           "--no-error-summary", "--show-absolute-path", "--cache-dir", str(cache), *map(str, targets)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    blocking = [line for line in lines if "syntax" in line.lower() or "prevented further checking" in line]
    assert not blocking, "the patched stubs do not parse:\n" + "\n".join(blocking)
    errors = {target: [line for line in lines if line.startswith(f"{target}:") and ": error:" in line]
              for target in targets}
    assert (proc.returncode == 0) == (not any(errors.values())), "\n".join(lines)  # no error outside the targets
    return errors


def _copy_with(source: Path, dest: Path, *replacements: tuple[str, str]) -> Path:
    text = source.read_text()
    for old, new in replacements:
        assert old in text, f"{old!r} is no longer in {source.name}: update the test"
        text = text.replace(old, new)
    dest.write_text(text)
    return dest


def _files(folder: Path) -> dict[str, Path]:
    """The files the tests below check, by name: our two TensorRT modules, copies of them with misused TensorRT
    calls, new code that misuses TensorRT, and a notebook's use of the top-level API."""
    bad_trt = folder / "bad_trt.py"
    bad_trt.write_text(
        "import tensorrt as trt\n\n\n"
        "def build(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig) -> None:\n"
        "    builder.build_serialised_network(network, config)\n"
        "    profile = builder.create_optimization_profile()\n"
        "    profile.set_shape('image', (1, 8, 8, 3), (1, 8, 8, 3), (1, 8, 8, 3))\n"
    )
    notebook = folder / "notebook.py"
    notebook.write_text(
        "from pathlib import Path\n\n"
        "from edgexfer import ExportConfig, bench, export_run, finetune\n\n"
        "run = finetune(data='demo', backbone='tinycnn', out='runs/x')\n"
        "manifest = export_run(run_dir=run.run_dir, fp16=True)\n"
        "export_run(ExportConfig(run_dir=Path('runs/x')))\n"
        "outcome = bench(export_dir=Path('exported/x'))\n"
        "report: Path = outcome.out_dir / 'report.md'\n"
        "accuracy: float = run.metrics['accuracy']\n"
        "run.no_such_field\n"
    )
    return {
        "runtime": RUNTIME,
        "export": EXPORT,
        "bad_runtime": _copy_with(
            RUNTIME, folder / "bad_trt_runtime.py",
            ("deserialize_cuda_engine(", "deserialise_cuda_engine("),
            ("context.execute_async_v3(int(stream))", "context.execute_async_v3(stream_handle=int(stream), wait=True)"),
            ("trt.Logger(trt.Logger.WARNING)", "trt.Logger(trt.Logger.WARN)")),
        "bad_export": _copy_with(
            EXPORT, folder / "bad_trt_export.py",
            ("builder.build_serialized_network(", "builder.build_serialised_network("),
            ("trt.Dims([max_batch, h, w, 3])", "(max_batch, h, w, 3)")),
        "bad_trt": bad_trt,
        "notebook": notebook,
    }


@pytest.fixture(scope="module")
def checked(stubs, mypy_cache, tmp_path_factory) -> dict[str, list[str]]:
    """Each file of ``_files`` by name -> its mypy errors, from one mypy process over all of them."""
    files = _files(tmp_path_factory.mktemp("typecheck"))
    errors = _mypy(list(files.values()), stubs, mypy_cache)
    return {name: errors[path] for name, path in files.items()}


@pytest.mark.parametrize("module", ["runtime", "export"])
def test_tensorrt_modules_type_check_against_the_stubs(module, checked):
    assert not checked[module], f"mypy finds errors in our TensorRT {module} module:\n" + "\n".join(checked[module])


def test_a_misspelled_tensorrt_call_in_the_runtime_is_caught(checked):
    errors = checked["bad_runtime"]
    assert any('"Runtime" has no attribute "deserialise_cuda_engine"' in e for e in errors), errors
    assert any('Unexpected keyword argument "wait" for "execute_async_v3"' in e for e in errors), errors
    assert any('has no attribute "WARN"' in e for e in errors), errors


def test_misuse_in_the_engine_build_is_caught(checked):
    errors = checked["bad_export"]
    assert any("build_serialised_network" in e for e in errors), errors
    assert any("set_shape" in e and "Dims" in e for e in errors), errors


def test_the_stub_check_catches_misuse_in_new_code(checked):
    """Any module importing tensorrt is checked: a misspelled Builder method and a tuple where Dims is expected."""
    errors = checked["bad_trt"]
    assert any("build_serialised_network" in e for e in errors), errors
    assert any("Dims" in e for e in errors), errors


def test_the_top_level_api_type_checks_as_a_notebook_calls_it(checked):
    """Type checkers see `export_run` as the function and the results' types."""
    errors = checked["notebook"]
    assert len(errors) == 1 and '"RunResult" has no attribute "no_such_field"' in errors[0], errors

"""mypy over our TensorRT code against tensorrt-stubs (a patched copy; see scripts/patch_trt_stubs.py).

Both TensorRT modules import ``tensorrt`` with a plain ``import`` statement inside their functions, so
mypy checks every call against the stubs. These tests prove the check bites: a module copied with a
misspelled TensorRT call is reported. `make typecheck` runs the same settings over all of edgexfer/.
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


def _mypy(target: Path, stubs: Path, cache: Path) -> tuple[int, list[str]]:
    """mypy with the project's settings (pyproject.toml) on one file; only that file's errors count."""
    env = {**os.environ, "MYPYPATH": str(stubs)}
    cmd = [sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"), "--follow-imports=silent",
           "--no-error-summary", "--show-absolute-path", "--cache-dir", str(cache), str(target)]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in (proc.stdout + proc.stderr).splitlines() if line.strip()]
    blocking = [line for line in lines if "syntax" in line.lower() or "prevented further checking" in line]
    assert not blocking, "the patched stubs do not parse:\n" + "\n".join(blocking)
    return proc.returncode, [line for line in lines if line.startswith(str(target)) and ": error:" in line]


def _copy_with(source: Path, dest: Path, *replacements: tuple[str, str]) -> Path:
    text = source.read_text()
    for old, new in replacements:
        assert old in text, f"{old!r} is no longer in {source.name}: update the test"
        text = text.replace(old, new)
    dest.write_text(text)
    return dest


@pytest.mark.parametrize("module", [RUNTIME, EXPORT], ids=["runtime", "export"])
def test_tensorrt_modules_type_check_against_the_stubs(module, stubs, mypy_cache):
    code, errors = _mypy(module, stubs, mypy_cache)
    assert not errors, f"mypy finds errors in {module.relative_to(REPO)}:\n" + "\n".join(errors)
    assert code == 0


def test_a_misspelled_tensorrt_call_in_the_runtime_is_caught(stubs, mypy_cache, tmp_path):
    bad = _copy_with(RUNTIME, tmp_path / "bad_trt_runtime.py",
                     ("deserialize_cuda_engine(", "deserialise_cuda_engine("),
                     ("context.execute_async_v3(int(stream))", "context.execute_async_v3(stream_handle=int(stream), wait=True)"),
                     ("trt.Logger(trt.Logger.WARNING)", "trt.Logger(trt.Logger.WARN)"))
    code, errors = _mypy(bad, stubs, mypy_cache)
    assert code != 0
    assert any('"Runtime" has no attribute "deserialise_cuda_engine"' in e for e in errors), errors
    assert any('Unexpected keyword argument "wait" for "execute_async_v3"' in e for e in errors), errors
    assert any('has no attribute "WARN"' in e for e in errors), errors


def test_misuse_in_the_engine_build_is_caught(stubs, mypy_cache, tmp_path):
    bad = _copy_with(EXPORT, tmp_path / "bad_trt_export.py",
                     ("builder.build_serialized_network(", "builder.build_serialised_network("),
                     ("trt.Dims([max_batch, h, w, 3])", "(max_batch, h, w, 3)"))
    code, errors = _mypy(bad, stubs, mypy_cache)
    assert code != 0
    assert any("build_serialised_network" in e for e in errors), errors
    assert any("set_shape" in e and "Dims" in e for e in errors), errors


def test_the_stub_check_catches_misuse_in_new_code(stubs, mypy_cache, tmp_path):
    """Any module importing tensorrt is checked: a misspelled Builder method and a tuple where Dims is expected."""
    bad = tmp_path / "bad_trt.py"
    bad.write_text(
        "import tensorrt as trt\n\n\n"
        "def build(builder: trt.Builder, network: trt.INetworkDefinition, config: trt.IBuilderConfig) -> None:\n"
        "    builder.build_serialised_network(network, config)\n"
        "    profile = builder.create_optimization_profile()\n"
        "    profile.set_shape('image', (1, 8, 8, 3), (1, 8, 8, 3), (1, 8, 8, 3))\n"
    )
    code, errors = _mypy(bad, stubs, mypy_cache)
    assert code != 0 and any("build_serialised_network" in e for e in errors), errors
    assert any("Dims" in e for e in errors), errors


def test_the_top_level_api_type_checks_as_a_notebook_calls_it(stubs, mypy_cache, tmp_path):
    """Type checkers see `export_run` as the function and the results' types."""
    user = tmp_path / "notebook.py"
    user.write_text(
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
    code, errors = _mypy(user, stubs, mypy_cache)
    assert len(errors) == 1 and '"RunResult" has no attribute "no_such_field"' in errors[0], errors

"""The Python API at the top of the package: `from edgexfer import finetune, export_run, bench, compare`.

The README's notebook example is extracted from README.md and run as it is written.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import edgexfer
from edgexfer.errors import EdgexferError

REPO = Path(__file__).resolve().parents[2]
NAMES = ["finetune", "export_run", "bench", "compare", "FinetuneConfig", "ExportConfig", "BenchConfig", "CompareConfig",
         "TuneOptions", "RunResult", "load_run"]


def _python(code: str, cwd: Path | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.run([sys.executable, "-c", code], cwd=cwd or REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def test_the_api_imports_without_tensorflow():
    code = textwrap.dedent(f"""
        import json, sys
        import edgexfer
        after_package = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        from edgexfer import {", ".join(NAMES)}
        from edgexfer import *  # noqa: F403
        after_names = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras"))
        print(json.dumps({{"package": after_package, "names": after_names,
                          "callable": [callable(f) for f in (finetune, export_run, bench, compare)]}}))
    """)
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"package": [], "names": [], "callable": [True, True, True, True]}


@pytest.mark.parametrize("first", ["import edgexfer.export.config", "from edgexfer import ExportConfig", "pass"])
def test_export_is_the_package_and_export_run_the_function_whatever_was_imported_first(first):
    code = textwrap.dedent(f"""
        {first}
        import sys
        import types
        import edgexfer
        from edgexfer import export, export_run
        from edgexfer.export import ExportConfig
        assert export is sys.modules["edgexfer.export"] is edgexfer.export
        assert type(export) is types.ModuleType and not callable(export)
        assert export_run is edgexfer.api.export_run
        try:
            export_run(run_dir="no-such-run", fpp16=True)
        except edgexfer.EdgexferError as exc:
            print(exc.line())
    """)
    proc = _python(code)
    assert proc.returncode == 0, proc.stderr
    assert "unknown export option 'fpp16' (did you mean fp16?)" in proc.stdout


def test_names_resolve_to_the_library_objects():
    from edgexfer.config import FinetuneConfig
    from edgexfer.evaluate.bench import BenchConfig
    from edgexfer.export.config import ExportConfig
    from edgexfer.studies.compare import CompareConfig

    assert (edgexfer.FinetuneConfig, edgexfer.ExportConfig) == (FinetuneConfig, ExportConfig)
    assert (edgexfer.BenchConfig, edgexfer.CompareConfig) == (BenchConfig, CompareConfig)
    assert set(NAMES) <= set(edgexfer.__all__) and set(NAMES) <= set(dir(edgexfer))
    with pytest.raises(AttributeError, match="no attribute 'finetun'"):
        edgexfer.finetun  # noqa: B018


def test_options_are_checked_before_anything_runs(tmp_path):
    with pytest.raises(EdgexferError, match=r"unknown finetune option 'epoch' \(did you mean epochs"):
        edgexfer.finetune(data="demo", backbone="tinycnn", out=str(tmp_path / "r"), epoch=2)
    with pytest.raises(EdgexferError, match="finetune needs data, out"):
        edgexfer.finetune(backbone="tinycnn")
    with pytest.raises(EdgexferError, match="bench takes a BenchConfig, got ExportConfig"):
        edgexfer.bench(edgexfer.ExportConfig(run_dir=tmp_path))
    with pytest.raises(EdgexferError, match="compare needs data, backbones, out"):
        edgexfer.compare()
    assert not any(tmp_path.iterdir())


def test_a_config_and_keywords_combine(monkeypatch, tmp_path):
    """Keywords beside a config replace its fields; the config itself is left as it was."""
    import edgexfer.evaluate.bench as bench_module

    seen = []
    monkeypatch.setattr(bench_module, "run_bench", lambda config: seen.append(config) or "outcome")
    config = edgexfer.BenchConfig(export_dir=tmp_path, iterations=50)
    assert edgexfer.bench(config, iterations=3, batch_sizes=(4, 1)) == "outcome"
    assert seen[0].iterations == 3 and seen[0].batch_sizes == (1, 4) and seen[0].export_dir == tmp_path
    assert config.iterations == 50
    assert edgexfer.bench(config) == "outcome" and seen[1] is config
    assert edgexfer.bench(export_dir=tmp_path, warmup=0) == "outcome" and seen[2].warmup == 0


def test_finetune_passes_callbacks_and_log_beside_the_config(monkeypatch, tmp_path):
    import edgexfer.train as train

    calls = []
    monkeypatch.setattr(train, "finetune", lambda config, **kwargs: calls.append((config, kwargs)) or "run")
    marker = object()
    assert edgexfer.finetune(data="demo", backbone="tinycnn", out=str(tmp_path), epochs=1, callbacks=[marker],
                             log=None) == "run"
    config, kwargs = calls[0]
    assert isinstance(config, edgexfer.FinetuneConfig) and config.epochs == 1 and config.backbone == "tinycnn"
    assert kwargs == {"callbacks": [marker], "log": None}


def readme_example() -> str:
    text = (REPO / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.S)
    assert blocks, "README's Python API section has no python code block"
    return blocks[0]


@pytest.mark.slow  # about 35 s of CPU time: trains, exports three precisions and benches them
def test_the_readme_notebook_example_runs(tmp_path):
    proc = _python(readme_example(), cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert (tmp_path / "runs" / "notebook" / "model.keras").is_file()
    manifest = json.loads((tmp_path / "exported" / "notebook" / "manifest.json").read_text())
    assert [a["name"] for a in manifest["artifacts"]] == ["fp32", "fp16", "int8"]
    assert "['fp32', 'fp16', 'int8']" in proc.stdout
    bench_dir = tmp_path / "benchmarks" / "notebook"
    results = json.loads((bench_dir / "results.json").read_text())
    assert {r["artifact"] for r in results["results"]} == {"fp32", "fp16", "int8"}
    assert (bench_dir / "report.md").is_file()
    # the example prints the passed gate's report, or the one-line verdict of a failed or undecided gate
    assert ("gate passed; report: benchmarks/notebook/report.md" in proc.stdout or "accuracy gate failed" in proc.stdout
            or "accuracy gate inconclusive" in proc.stdout)
    if "gate passed" not in proc.stdout:  # the verdict comes with its table: nothing printed refers to one "above"
        assert "artifact  precision  runtime" in proc.stdout and "table above" not in proc.stdout, proc.stdout

"""The README's "Use the model" Python example, extracted from README.md and run as it is written, on an
export laid out as the demo lays it out (runs/demo/exported, runs/demo/data, runs/demo/bench)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner
from fixtures_handmade import BIAS, CLASSES, FAST, LOOSE, WEIGHTS

REPO = Path(__file__).resolve().parents[2]


def readme_section() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("\n## Use the model\n", 1)[1].split("\n## ", 1)[0]


def _hand_made_answers(paths: list[Path]) -> list[tuple[str, str, str]]:
    """(file name, class, probability to 3 decimals) as the hand-made model (fixtures_handmade) answers."""
    import numpy as np
    from PIL import Image

    rows = []
    for path in paths:
        with Image.open(path) as img:
            mean = np.asarray(img.convert("RGB"), dtype=np.float64).mean(axis=(0, 1))
        logits = mean @ WEIGHTS.astype(np.float64) + BIAS
        probs = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        rows.append((path.name, CLASSES[int(probs.argmax())], f"{probs.max():.3f}"))
    return rows


def test_readme_use_the_model_example_runs(handmade_export, tmp_path):
    blocks = re.findall(r"```python\n(.*?)```", readme_section(), flags=re.S)
    assert blocks, "README's Use the model section has no python code block"
    code = blocks[0]

    demo = tmp_path / "runs" / "demo"
    shutil.copytree(handmade_export, demo / "exported")
    shutil.copytree(handmade_export.parent / "data", demo / "data")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}

    first = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    lines = first.stdout.splitlines()
    assert lines[0] == "answering: fp32 on ort-cpu"  # no bench results yet: the FP32 reference
    # each answer is the hand-made model's: softmax(mean colour @ W + b), worked out here from the pixels
    expected = _hand_made_answers(sorted((demo / "data").rglob("*.png"))[:4])
    assert [tuple(ln.split()[:3]) for ln in lines[1:]] == expected

    # after a bench beside the export, auto takes the fastest artifact that passed the gate
    from edgexfer.cli import cli
    from edgexfer.contracts.bench import load_results

    bench = CliRunner().invoke(cli, ["bench", str(demo / "exported"), "--out", str(demo / "bench"), *FAST, *LOOSE])
    assert bench.exit_code == 0, bench.output
    rows = [r for r in load_results(demo / "bench")["results"] if r["gate"]["passed"]]
    fastest = min(rows, key=lambda r: r["latency_ms"]["1"]["p50"])
    second = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                            timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.splitlines()[0] == f"answering: {fastest['artifact']} on ort-cpu"


def test_readme_commands_name_real_options():
    """Every option the section's shell lines pass to an edgexfer command exists in that command."""
    from edgexfer.cli import cli

    section = readme_section()
    commands = re.findall(r"^edgexfer (\w+) (.*)$", section, flags=re.M)
    assert {name for name, _ in commands} >= {"predict", "package", "explain"}
    for name, rest in commands:
        help_text = CliRunner().invoke(cli, [name, "--help"]).output
        for option in re.findall(r"(--[a-z][a-z-]*)", rest.split("#")[0]):
            assert option in help_text, f"edgexfer {name} has no {option}"
    assert "tritonserver --model-repository=" in section

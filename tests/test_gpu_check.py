"""`make gpu-check` (benchmarks/gpu_check.py) on a machine without a usable GPU: one line, exit 2, nothing written.
(This test hides the GPUs, so it checks the same on a GPU machine.)"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_gpu_check_without_a_gpu_fails_in_one_line(tmp_path):
    out, work = tmp_path / "results" / "gpu_check.json", tmp_path / "work"
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / "gpu_check.py"), "--out", str(out),
                           "--work", str(work)], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("gpu_check: error: no usable NVIDIA GPU")
    assert "CUDA_VISIBLE_DEVICES" in lines[0] and "Traceback" not in proc.stderr and proc.stdout == ""
    assert not out.exists() and not work.exists()

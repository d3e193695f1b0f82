"""Training on real GPUs: mixed precision (float16 compute, float32 model file) and MirroredStrategy over
every visible GPU. Skipped, with the reason, where no GPU is usable; `make gpu-check` runs them.

Each run is a subprocess: the Keras global policy and TensorFlow's devices start fresh there.
"""

from __future__ import annotations

import csv
import json
import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import gpu_probe

pytestmark = pytest.mark.gpu

SCRIPT = textwrap.dedent("""
    import json, sys
    import keras
    from edgexfer import finetune

    options = json.loads(sys.argv[1])
    run = finetune(backbone="tinycnn", image_size=48, epochs=2, fine_tune_epochs=1, batch_size=16, augment=False,
                   early_stopping_patience=0, verbose=0, **options)
    model = keras.models.load_model(run.model_path)
    print("RESULT " + json.dumps({"dtypes": sorted({w.dtype for w in model.weights}),
                                  "policy": keras.mixed_precision.global_policy().name,
                                  "accuracy": run.metrics["accuracy"]}))
""")


def train(data: Path, out: Path, **options) -> tuple[dict, dict, list[dict]]:
    proc = subprocess.run([sys.executable, "-c", SCRIPT, json.dumps({"data": str(data), "out": str(out), **options})],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT "))[7:])
    resolved = json.loads((out / "config.json").read_text())["resolved"]
    with open(out / "history.csv", newline="") as f:
        history = list(csv.DictReader(f))
    return result, resolved, history


def test_mixed_precision_trains_in_float16_and_saves_float32(demo_data_dir, tmp_path):
    result, resolved, history = train(demo_data_dir, tmp_path / "run", mixed_precision=True, distribute="none")
    assert resolved["mixed_precision"] is True  # False where TensorFlow sees no GPU
    assert result["dtypes"] == ["float32"] and result["policy"] == "float32"  # model.keras is float32
    assert history and all(math.isfinite(float(row["loss"])) for row in history)  # loss scaling kept it finite
    assert 0.0 <= result["accuracy"] <= 1.0


def test_mirrored_strategy_uses_every_visible_gpu(demo_data_dir, tmp_path):
    result, resolved, history = train(demo_data_dir, tmp_path / "run", distribute="mirrored")
    assert resolved["replicas"] == gpu_probe()["gpu"]["count"]
    assert history and all(math.isfinite(float(row["loss"])) for row in history)

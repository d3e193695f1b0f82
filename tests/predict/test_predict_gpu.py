"""Predictor on the GPU runtimes gives the probabilities bench computes on the same runtime. Skipped, with the
reason, where the runtime is not usable; each check runs in a fresh process, which sees the GPUs."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import gpu_probe

pytestmark = pytest.mark.gpu

SCRIPT = textwrap.dedent(
    """
    import json, sys
    from pathlib import Path

    import numpy as np

    sys.path.insert(0, sys.argv[3])
    from test_predict import _bench_probabilities

    from edgexfer.predict import Predictor

    export, runtime = Path(sys.argv[1]), sys.argv[2]
    found = {}
    for precision in ("fp32", "fp16"):
        paths, expected = _bench_probabilities(export, precision, runtime)
        with Predictor(export, precision=precision, runtime=runtime) as model:
            assert (model.artifact, model.runtime) == (precision, runtime)
            got = np.array([p.probabilities for p in model.predict(paths)])
        found[precision] = float(np.abs(got - expected).max())
    print("RESULT " + json.dumps(found))
    """
)


@pytest.mark.parametrize("runtime", ["ort-cuda", "ort-trt"])
def test_predictor_matches_bench_on_gpu_runtimes(handmade_export, runtime):
    ok, reason = gpu_probe()[runtime]
    if not ok:
        pytest.skip(f"{runtime} is not usable here: {reason}")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(handmade_export), runtime, str(Path(__file__).resolve().parents[1])],
                          capture_output=True, text=True, timeout=900)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    worst = json.loads(lines[-1][len("RESULT "):])
    # the same artifact on the same runtime and batch size: the same kernels, so the same numbers
    assert all(v <= 1e-6 for v in worst.values()), worst

"""On a real export (the tinycnn run exported FP32/FP16/INT8 by `edgexfer export`), Predictor and
`edgexfer predict` give, image for image, the probabilities bench computed for that artifact and runtime."""

from __future__ import annotations

import csv

import numpy as np
from click.testing import CliRunner
from test_predict import _bench_probabilities

from edgexfer.cli import cli


def test_predict_matches_bench_on_every_artifact_of_a_real_export(tiny_export, tmp_path):
    from edgexfer.evaluate.exported import load_export
    from edgexfer.predict import Predictor

    export = load_export(tiny_export)
    assert sorted(a.name for a in export.artifacts) == ["fp16", "fp32", "int8"]
    for artifact in export.artifacts:
        paths, expected = _bench_probabilities(tiny_export, artifact.name)
        with Predictor(tiny_export, precision=artifact.precision, runtime="ort-cpu") as model:
            assert model.artifact == artifact.name
            got = np.array([p.probabilities for p in model.predict(paths)])
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-6, artifact.name

        listing = tmp_path / f"{artifact.name}.csv"
        listing.write_text("path\n" + "".join(f"{p}\n" for p in paths))
        out = tmp_path / f"{artifact.name}-predictions.csv"
        result = CliRunner().invoke(cli, ["predict", str(tiny_export), str(listing), "--precision", artifact.precision,
                                          "--runtime", "ort-cpu", "--out", str(out), "--quiet"])
        assert result.exit_code == 0, result.output
        with open(out, newline="") as f:
            rows = list(csv.DictReader(f))
        assert [r["path"] for r in rows] == paths
        classes = export.classes
        from_csv = np.array([[float(r[f"p_{c}"]) for c in classes] for r in rows])
        assert np.abs(from_csv - expected).max() <= 1e-6, artifact.name
        assert [r["predicted_class"] for r in rows] == [classes[i] for i in expected.argmax(1)]

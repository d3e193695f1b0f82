"""`edgexfer doctor` and `doctor --json`: on the full install here, and with TensorFlow blocked (the light
install of a Jetson), where it must still exit 0, say `light` and never import TensorFlow."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

from click.testing import CliRunner
from light_install import BLOCK_TRAIN_EXTRA

from edgexfer.cli import cli
from edgexfer.doctor import PACKAGES, diagnose, doctor_lines, keras_home
from edgexfer.runtime import RUNTIMES, select_runtimes


def test_doctor_json_agrees_with_the_bench_runtime_table():
    result = CliRunner().invoke(cli, ["doctor", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["install"] == "full"  # this test environment has the train extra
    assert [p["name"] for p in report["packages"]] == [p[0] for p in PACKAGES]
    versions = {p["name"]: p["version"] for p in report["packages"]}
    import onnxruntime

    assert versions["ONNX Runtime"] == onnxruntime.__version__
    assert report["onnxruntime_providers"] == onnxruntime.get_available_providers()
    assert [r["name"] for r in report["runtimes"]] == list(RUNTIMES)
    chosen, skipped = select_runtimes(None)
    usable = {r["name"] for r in report["runtimes"] if r["usable"]}
    assert usable == {k.name for k in chosen}
    reasons = {r["name"]: r["reason"] for r in report["runtimes"] if not r["usable"]}
    assert reasons == {s["runtime"]: s["reason"] for s in skipped}
    assert "ort-cpu" in usable
    assert set(report["gpu"]) >= {"usable", "reason", "name", "driver_version"}
    where = {loc["what"].split(" (")[0]: loc["path"] for loc in report["locations"]}
    assert where["Keras weights cache"] == str(keras_home() / "models")


def test_doctor_text_names_every_section_and_reason(tmp_path, monkeypatch):
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "kh"))
    (tmp_path / "kh" / "models").mkdir(parents=True)
    (tmp_path / "kh" / "models" / "w.h5").write_bytes(b"x" * 2000)
    result = CliRunner().invoke(cli, ["doctor"])
    assert result.exit_code == 0, result.output
    text = result.output
    for heading in ("packages", "GPU", "runtimes edgexfer bench would use here", "caches"):
        assert f"\n{heading}\n" in text
    report = diagnose()
    for r in report.runtimes:
        if not r.usable:
            assert f"skipped: {r.reason}" in text
    assert f"{tmp_path / 'kh' / 'models'} (1 file(s), 2.0 kB)" in text
    assert doctor_lines(report)[0].startswith("edgexfer ")


LIGHT = BLOCK_TRAIN_EXTRA + textwrap.dedent(
    """
    import json, sys
    from edgexfer.cli import main
    codes = []
    for argv in (["doctor"], ["doctor", "--json"]):
        try:
            main(argv)
        except SystemExit as exc:
            codes.append(exc.code)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in ("tensorflow", "keras", "tf2onnx"))
    print("RESULT " + json.dumps({"codes": codes, "loaded": loaded}))
    """
)


def test_doctor_works_on_the_light_install():
    proc = subprocess.run([sys.executable, "-c", LIGHT], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    result = json.loads(out.splitlines()[-1][len("RESULT "):])
    assert result == {"codes": [0, 0], "loaded": []}
    assert "(light install)" in out
    assert "pip install 'edgexfer[train]'" in out
    report = json.loads(out[out.index("\n{") + 1:out.index("\nRESULT ")])
    assert report["install"] == "light"
    keras = next(r for r in report["runtimes"] if r["name"] == "keras")
    assert keras["usable"] is False and "TensorFlow is not installed" in keras["reason"]
    assert next(r for r in report["runtimes"] if r["name"] == "ort-cpu")["usable"] is True


def test_doctor_says_which_target_the_installed_tensorrt_is(monkeypatch, tmp_path):
    """JetPack 6.x ships TensorRT 10.3, JetPack 7.x 10.13 and later, x86 wheels and JetPack 7.2.2+ are 11.x."""
    from importlib import metadata as real

    import edgexfer.doctor as doctor

    class Metadata:
        PackageNotFoundError = real.PackageNotFoundError

        def __init__(self, version):
            self._version = version

        def version(self, dist):
            return self._version if dist == "tensorrt" else real.version(dist)

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    expected = {"10.3.0.30": "JetPack 6.x", "10.13.3.9": "JetPack 7.x", "11.4.1.2": "JetPack 7.2.2+",
                "8.6.1": "older than the oldest target"}
    for version, where in expected.items():
        monkeypatch.setattr(doctor, "metadata", Metadata(version))
        report = diagnose()
        assert where in report.tensorrt_target and version in report.tensorrt_target
        lines = doctor_lines(report)
        row = lines.index(next(line for line in lines if line.strip().startswith("TensorRT ")))
        assert lines[row + 1].strip() == f"target: {report.tensorrt_target}"
    assert report.as_dict()["tensorrt_target"] == report.tensorrt_target  # doctor --json carries it too
    trt_cache = next(loc for loc in report.locations if loc.what.startswith("ONNX Runtime TensorRT engines"))
    assert trt_cache.path.startswith(str(tmp_path / "edgexfer" / "trt"))


def test_doctor_counts_calibration_sets_not_files_and_finds_the_demos(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "calibration").mkdir()
    (tmp_path / "calibration" / "README.md").write_text("where calibration sets go\n")
    demo = tmp_path / "runs" / "demo" / "calibration"
    demo.mkdir(parents=True)
    for name in ("abc.json", "abc.npz", "lonely.json"):  # one set; a record without its images is none
        (demo / name).write_bytes(b"{}")
    sets = {loc.path: loc for loc in diagnose().locations if loc.unit == "calibration set(s)"}
    assert sets[str(tmp_path / "calibration")].files == 0
    assert sets[str(demo)].files == 1
    text = "\n".join(doctor_lines(diagnose()))
    assert f"{demo} (1 calibration set(s)" in text

"""KerasTuner's distributed mode through edgexfer's tuning function: a chief oracle and a worker process on
127.0.0.1 complete one tiny search together; bad KERASTUNER_* settings are one clear error."""

import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from edgexfer.errors import EdgexferError
from edgexfer.studies.tuning import tuning_role

pytest.importorskip("keras_tuner")
pytest.importorskip("grpc")  # KerasTuner's chief and workers talk over gRPC

_SEARCH = """
import json, sys
from edgexfer.studies.compare import TuneOptions
from edgexfer.studies.tuning import tune_backbone
split_file, project = sys.argv[1], sys.argv[2]
fields = {"image_size": 32, "weights": "none", "augment": False, "early_stopping_patience": 0,
          "precise_bn_batches": 1, "seed": 0}
record = tune_backbone(name="tinycnn", split_path=split_file, finetune_fields=fields,
                       options=TuneOptions(tuner="bayesian", max_trials=3, epochs=1, objective="val_accuracy"),
                       project_dir=project, log=lambda line: print(line, flush=True))
print("RECORD " + json.dumps(record))
"""


def test_tuning_role_from_the_environment():
    assert tuning_role({}).role == "single"
    chief = tuning_role({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1",
                         "KERASTUNER_ORACLE_PORT": "8000"})
    assert (chief.role, chief.address) == ("chief", "127.0.0.1:8000")
    assert tuning_role({"KERASTUNER_TUNER_ID": "tuner0", "KERASTUNER_ORACLE_IP": "10.0.0.1",
                        "KERASTUNER_ORACLE_PORT": "8000"}).role == "worker"


@pytest.mark.parametrize("env, words", [
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1"}, "KERASTUNER_ORACLE_PORT '' is not a port"),
    ({"KERASTUNER_TUNER_ID": "chief", "KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "99999"},
     "is not a port number"),
    ({"KERASTUNER_ORACLE_IP": "127.0.0.1", "KERASTUNER_ORACLE_PORT": "8000"}, "KERASTUNER_TUNER_ID is not"),
])
def test_bad_tuner_settings_are_one_error_before_anything_is_written(env, words, tmp_path, monkeypatch):
    from edgexfer.studies.compare import TuneOptions
    from edgexfer.studies.tuning import tune_backbone

    with pytest.raises(EdgexferError, match=words):
        tuning_role(env)
    for key in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        monkeypatch.delenv(key, raising=False)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(EdgexferError, match=words):
        tune_backbone(name="tinycnn", split_path=tmp_path / "split.json", finetune_fields={}, options=TuneOptions(),
                      project_dir=tmp_path / "tuning" / "tinycnn")
    assert not (tmp_path / "tuning").exists()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_a_chief_and_a_worker_complete_a_search_together(tmp_path, demo_data_dir):
    from edgexfer.data.sources import discover
    from edgexfer.data.splits import make_split

    split_file = tmp_path / "split.json"
    make_split(discover(demo_data_dir), fractions=(0.7, 0.2, 0.1), seed=0).save(split_file)
    project = tmp_path / "tuning" / "tinycnn"
    port = str(_free_port())
    base = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "KERASTUNER_ORACLE_IP": "127.0.0.1",
            "KERASTUNER_ORACLE_PORT": port}
    procs = []
    try:
        for tuner_id in ("chief", "tuner0"):  # the chief first; the worker's gRPC client waits until it serves
            procs.append(subprocess.Popen([sys.executable, "-c", _SEARCH, str(split_file), str(project)],
                                          env={**base, "KERASTUNER_TUNER_ID": tuner_id}, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True, start_new_session=True))
        outputs = [p.communicate(timeout=150) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()
    (chief_out, chief_err), (worker_out, worker_err) = outputs
    assert procs[0].returncode == 0, chief_err[-3000:]
    assert procs[1].returncode == 0, worker_err[-3000:]
    assert f"tuning: chief oracle serving at 127.0.0.1:{port}" in chief_out
    assert f"tuning: worker tuner0 training trials for the chief at 127.0.0.1:{port}" in worker_out

    worker = json.loads(worker_out.split("RECORD ", 1)[1])
    assert worker == {"worker": "tuner0", "trials_trained": 3}, "the worker trained every trial"
    record = json.loads(chief_out.split("RECORD ", 1)[1])
    assert len(record["trials"]) == 3
    assert all(t["status"] == "COMPLETED" and t["score"] is not None for t in record["trials"]), record["trials"]
    best = max(t["score"] for t in record["trials"])
    assert record["best"]["score"] == best, "the chief's oracle picked the best of the worker's trials"
    assert set(record["best"]["options"]) <= {"learning_rate", "dropout", "batch_size"}


def test_compare_tune_with_a_bad_tuner_setting_exits_2_and_writes_nothing(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from edgexfer.cli import cli

    monkeypatch.setenv("KERASTUNER_TUNER_ID", "tuner0")
    monkeypatch.setenv("KERASTUNER_ORACLE_IP", "127.0.0.1")
    monkeypatch.delenv("KERASTUNER_ORACLE_PORT", raising=False)
    out = tmp_path / "study"
    result = CliRunner().invoke(cli, ["compare", "--data", "demo", "--backbones", "tinycnn", "--out", str(out),
                                      "--tune", "--image-size", "32"])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "KERASTUNER_ORACLE_PORT '' is not a port number" in lines[0], result.output
    assert not out.exists()

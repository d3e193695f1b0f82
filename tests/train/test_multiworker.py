"""finetune --distribute: what a strategy does on this machine, TF_CONFIG checks, and two real
MultiWorkerMirroredStrategy processes on 127.0.0.1 training one model (the chief writes the run)."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_run import tiny_run_config

from edgexfer.errors import EdgexferError
from edgexfer.train.distribute import read_tf_config

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")

WORKERS = ["127.0.0.1:20001", "127.0.0.1:20002"]


def tf_config(index, workers=WORKERS, task_type="worker"):
    return json.dumps({"cluster": {"worker": workers}, "task": {"type": task_type, "index": index}})


def test_tf_config_is_read():
    task = read_tf_config({"TF_CONFIG": tf_config(1)})
    assert (task.task_type, task.task_index, task.address, task.is_chief) == ("worker", 1, WORKERS[1], False)
    assert read_tf_config({"TF_CONFIG": tf_config(0)}).is_chief, "worker 0 leads a cluster without a chief"
    with_chief = json.dumps({"cluster": {"chief": ["h0:1"], "worker": ["h1:1"]}, "task": {"type": "worker", "index": 0}})
    task = read_tf_config({"TF_CONFIG": with_chief})
    assert not task.is_chief and task.members == ["h0:1", "h1:1"]


@pytest.mark.parametrize("value, words", [
    (None, "TF_CONFIG, which is not set"),
    ("{not json", "not valid JSON"),
    ('["a"]', "not a JSON object"),
    ('{"task": {"type": "worker", "index": 0}}', "has no cluster"),
    ('{"cluster": {"worker": ["127.0.0.1:1"]}}', "has no task"),
    ('{"cluster": {"worker": "127.0.0.1:1"}, "task": {"type": "worker", "index": 0}}', "not a list of host:port"),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}', "not a list of host:port"),
    (tf_config(2), "task index 2 is out of range"),
    (tf_config(0, task_type="chief"), "task type 'chief' is not a job"),
    (tf_config(0, workers=["127.0.0.1:5", "127.0.0.1:5"]), "one address twice"),
    ('{"cluster": {"worker": ["a:1"], "ps": ["b:1"]}, "task": {"type": "worker", "index": 0}}', "ps or evaluator"),
])
def test_malformed_tf_config_is_one_clear_error(value, words):
    with pytest.raises(EdgexferError, match=words):
        read_tf_config({} if value is None else {"TF_CONFIG": value})


def test_malformed_tf_config_exits_2_and_writes_nothing(demo_data_dir, tmp_path, monkeypatch):
    from edgexfer.cli import cli

    out = tmp_path / "run"
    monkeypatch.setenv("TF_CONFIG", tf_config(5))
    result = CliRunner().invoke(cli, ["finetune", "--data", str(demo_data_dir), "--backbone", "tinycnn",
                                      "--out", str(out), "--image-size", "32", "--distribute", "multiworker"])
    assert result.exit_code == 2
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "TF_CONFIG task index 5 is out of range" in lines[0], result.output
    assert not out.exists()


def test_mirrored_on_one_device_trains_as_none(demo_data_dir, tmp_path):
    """On a machine with one device, --distribute mirrored says so and gives the model of --distribute none."""
    from edgexfer.train import finetune

    logs: dict[str, list[str]] = {"none": [], "mirrored": []}
    runs = {}
    for mode in ("none", "mirrored"):
        config = tiny_run_config(demo_data_dir, tmp_path / mode, image_size=32, epochs=1, fine_tune_epochs=0,
                                 weights="none", distribute=mode, precise_bn_batches=2)
        runs[mode] = finetune(config, log=logs[mode].append)
    assert "distribution: none, 1 replica on CPU:0" in logs["none"]
    messages = logs["mirrored"]
    assert any("--distribute mirrored: only one device (CPU:0) is visible, so this trains as --distribute none"
               in m for m in messages), messages
    assert runs["mirrored"].metrics["accuracy"] == runs["none"].metrics["accuracy"]
    assert runs["mirrored"].history == runs["none"].history
    assert _weights(tmp_path / "mirrored") == pytest.approx(_weights(tmp_path / "none"), abs=1e-6)


def _weights(run_dir: Path) -> list[float]:
    import keras

    model = keras.saving.load_model(run_dir / "model.keras")
    return [float(np.sum(np.abs(w))) for w in model.get_weights()]


# ----------------------------------------------------------------------------- two real workers


def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _finetune_args(data: Path, out: Path, distribute: str) -> list[str]:
    # 18 images per class: 36 train (3 global batches of 12, 6 per replica), 12 val (even: no image left out)
    return [sys.executable, "-m", "edgexfer", "finetune", "--data", str(data), "--backbone", "tinycnn", "--out", str(out),
            "--image-size", "32", "--weights", "none", "--epochs", "2", "--fine-tune-epochs", "0", "--batch-size", "12",
            "--no-augment", "--patience", "0", "--learning-rate", "3e-3", "--precise-bn-batches", "3",
            "--distribute", distribute, "--quiet"]


def _start_workers(args: list[str], tmp_path: Path) -> list[subprocess.Popen]:
    addresses = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = []
    for index in (1, 0):  # the worker first: the chief's run folder must not depend on who starts first
        env = {**os.environ, "TF_CONFIG": tf_config(index, addresses), "TF_CPP_MIN_LOG_LEVEL": "2",
               "TMPDIR": str(tmp_path / f"tmp{index}")}
        (tmp_path / f"tmp{index}").mkdir(exist_ok=True)
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                      start_new_session=True))
    return procs[::-1]  # chief (index 0) first


def _finish(procs: list[subprocess.Popen], timeout: float) -> list[tuple[int, str]]:
    try:
        logs = [p.communicate(timeout=timeout)[0] for p in procs]
        return [(p.returncode, log) for p, log in zip(procs, logs, strict=True)]
    finally:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()


@pytest.mark.slow
def test_two_workers_train_one_model_the_chief_writes_the_run(tmp_path):
    from edgexfer.contracts import run as run_contract
    from edgexfer.data.synthetic import generate_demo
    from edgexfer.train import load_run

    data = generate_demo(tmp_path / "demo", per_class=18, size=32, seed=0)
    out = tmp_path / "run"
    # the one-process reference (compared below) trains beside the cluster: its own folder, nothing shared
    single = tmp_path / "single"
    reference = subprocess.Popen(_finetune_args(data, single, "none"), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    try:
        (chief_rc, chief_log), (worker_rc, worker_log) = _finish(
            _start_workers(_finetune_args(data, out, "multiworker"), tmp_path), timeout=240)
    finally:
        ((single_rc, single_log),) = _finish([reference], timeout=240)
    assert chief_rc == 0, chief_log[-3000:]
    assert worker_rc == 0, worker_log[-3000:]
    assert "distribution: multiworker, 2 replica(s) over 2 process(es); this is worker 0" in chief_log
    assert "(chief: writes the run)" in chief_log and "(trains only)" in worker_log
    assert "worker 1: done; the chief writes the run to" in worker_log

    record = run_contract.load_run(out)  # run.json, labels.json, split.json checked by the run contract
    assert record.backbone == "tinycnn"
    for name in ("model.keras", "metrics.json", "history.csv", "config.json", "plots"):
        assert (out / name).exists(), name
    assert json.loads((out / "config.json").read_text())["resolved"]["replicas"] == 2
    assert list((tmp_path / "tmp1").iterdir()) == [], "the worker's temporary run folder is removed"

    # the same global batch on one process: the first epoch's loss agrees (the same start, the same batches);
    # later epochs drift apart because tinycnn's BatchNorm normalizes over each replica's 6 images instead of
    # 12 (test_gradients_equal_a_single_process shows the exact agreement of a model without BatchNorm)
    assert single_rc == 0, single_log[-3000:]
    two, one = load_run(out), load_run(single)
    assert [r["epoch_global"] for r in two.history] == [r["epoch_global"] for r in one.history] == [1, 2]
    assert two.history[0]["loss"] == pytest.approx(one.history[0]["loss"], abs=0.05), (two.history, one.history)
    assert all(np.isfinite(r["val_loss"]) for r in two.history)


_EQUAL_SCRIPT = """
import json, os, sys
import numpy as np, keras, tensorflow as tf
from edgexfer.train.distribute import keras_multiworker_fixes, make_distribution
keras.utils.set_random_seed(0)
tf.config.experimental.enable_op_determinism()
d = make_distribution(tf, sys.argv[1])
x = np.random.RandomState(0).rand(64, 8, 8, 3).astype("float32")
y = (x.mean((1, 2, 3)) > 0.5).astype("int64")
with d.strategy.scope():
    m = keras.Sequential([keras.Input((8, 8, 3)), keras.layers.Conv2D(4, 3), keras.layers.GlobalAveragePooling2D(),
                          keras.layers.Dense(2, activation="softmax")])
    m.compile("sgd", "sparse_categorical_crossentropy")
ds = tf.data.Dataset.from_tensor_slices((x, y)).batch(16).repeat()
if d.kind == "multiworker":
    with keras_multiworker_fixes(m):
        h = m.fit(ds, steps_per_epoch=4, epochs=2, verbose=0)
else:
    h = m.fit(ds, steps_per_epoch=4, epochs=2, verbose=0)
print(json.dumps({"loss": h.history["loss"], "weights": [w.tolist() for w in m.get_weights()]}))
"""


@pytest.mark.slow
def test_gradients_equal_a_single_process(tmp_path):
    """Two workers with a global batch of 16 (8 each) train a BatchNorm-free model to the weights one process
    gets with batches of 16: the all-reduce of the gradients is exact, only summation order differs."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    addresses = [f"127.0.0.1:{p}" for p in _free_ports(2)]
    procs = [subprocess.Popen([sys.executable, "-c", _EQUAL_SCRIPT, "multiworker"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True,
                              env={**env, "TF_CONFIG": tf_config(i, addresses)}) for i in (0, 1)]
    # the one-process reference runs beside the two workers (nothing shared)
    single = subprocess.Popen([sys.executable, "-c", _EQUAL_SCRIPT, "none"], stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL, text=True, start_new_session=True, env=env)
    try:
        outputs = [out for _rc, out in _finish(procs, timeout=180)]
    finally:
        ((_rc, single_out),) = _finish([single], timeout=180)
    results = [json.loads(o.strip().splitlines()[-1]) for o in [*outputs, single_out]]
    (chief, worker, one) = results
    assert chief["loss"] == pytest.approx(one["loss"], abs=1e-5)
    for a, b, c in zip(chief["weights"], worker["weights"], one["weights"], strict=True):
        np.testing.assert_allclose(a, b, atol=0)  # the workers hold one model
        np.testing.assert_allclose(a, c, atol=1e-5)


@pytest.mark.slow
def test_a_dead_worker_ends_the_job_in_one_line_and_the_same_command_resumes(tmp_path):
    import time

    from edgexfer.data.synthetic import generate_demo
    from edgexfer.train import load_run

    data = generate_demo(tmp_path / "demo", per_class=18, size=32, seed=0)
    out = tmp_path / "run"
    args = _finetune_args(data, out, "multiworker")
    args[args.index("--epochs") + 1] = "4"
    procs = _start_workers(args, tmp_path)
    try:
        state = out / "checkpoints" / "state.json"
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline and not (state.is_file() and json.loads(state.read_text())["history"]):
            time.sleep(0.2)
        assert state.is_file(), "the chief finished no epoch"
        os.killpg(procs[1].pid, signal.SIGKILL)  # the worker dies mid-run
        chief_log = procs[0].communicate(timeout=150)[0]
    finally:
        _finish(procs, timeout=1)
    assert procs[0].returncode == 2, chief_log[-3000:]
    errors = [line for line in chief_log.splitlines() if line.startswith("edgexfer: error:")]
    assert len(errors) == 1 and "another process of the cluster (2 in TF_CONFIG) died or stopped answering" in errors[0]
    assert "start every process again with the same command" in errors[0]
    assert not (out / "run.json").exists()
    done = len(json.loads((out / "checkpoints" / "state.json").read_text())["history"])

    (chief_rc, chief_log), (worker_rc, worker_log) = _finish(_start_workers(args, tmp_path), timeout=240)
    assert chief_rc == 0 and worker_rc == 0, (chief_log[-2000:], worker_log[-2000:])
    assert f"resuming the run in {out}" in chief_log
    assert f"resuming at epoch {done + 1}" in chief_log and f"resuming at epoch {done + 1}" in worker_log
    run = load_run(out)
    assert [r["epoch_global"] for r in run.history] == [1, 2, 3, 4]

    # a finished run: one process alone returns at once, without waiting for a cluster
    again = subprocess.run(args, capture_output=True, text=True, timeout=120,
                           env={**os.environ, "TF_CONFIG": tf_config(0), "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert again.returncode == 0 and "already holds this finished run" in again.stdout, again.stdout + again.stderr


def test_own_address_that_cannot_be_served_is_one_line(demo_data_dir, tmp_path):
    """This process's TF_CONFIG entry on a port already taken: one line, exit 2, nothing written."""
    out = tmp_path / "run"
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        taken = f"127.0.0.1:{busy.getsockname()[1]}"
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "TF_CONFIG": tf_config(0, [taken, "127.0.0.1:1"])}
        proc = subprocess.run(_finetune_args(demo_data_dir, out, "multiworker"), capture_output=True, text=True,
                              timeout=120, env=env)
    assert proc.returncode == 2, proc.stdout + proc.stderr[-2000:]
    errors = [line for line in proc.stderr.splitlines() + proc.stdout.splitlines() if line.startswith("edgexfer:")]
    assert len(errors) == 1 and f"(worker 0 of TF_CONFIG) cannot listen at {taken}" in errors[0], errors
    assert not out.exists()

"""Fine-tuning end to end: learning, resume after an interruption, run-directory guards, MirroredStrategy."""

import json
import shutil
import subprocess
import sys
import textwrap

import pytest
from fixtures_run import tiny_run_config

from edgexfer.errors import EdgexferError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


@pytest.mark.slow
def test_short_finetune_beats_chance_clearly(tmp_path):
    from edgexfer.data.synthetic import generate_demo
    from edgexfer.train import finetune

    data = generate_demo(tmp_path / "demo", per_class=100, size=64, seed=1)
    config = tiny_run_config(data, tmp_path / "run", image_size=64, epochs=10, fine_tune_epochs=2, learning_rate=1e-3)
    result = finetune(config, log=None)
    chance = 1 / 3
    assert result.metrics["n"] == 30
    assert result.metrics["accuracy"] >= chance + 0.2, result.metrics
    assert result.metrics["auc"] >= 0.75, result.metrics


def test_interrupted_run_resumes_where_it_stopped(demo_data_dir, tmp_path):
    import keras

    from edgexfer.train import finetune
    from edgexfer.train.callbacks import StopAfterEpochs

    data = tmp_path / "data"
    shutil.copytree(demo_data_dir, data)
    (data / "normal" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    out = tmp_path / "run"
    config = tiny_run_config(data, out, epochs=3, fine_tune_epochs=1)

    with pytest.raises(KeyboardInterrupt):
        finetune(config, callbacks=[StopAfterEpochs(2)], log=None)
    assert not (out / "run.json").exists()
    first = json.loads((out / "checkpoints" / "state.json").read_text())["history"]
    assert [r["epoch_global"] for r in first] == [1, 2]
    assert "broken.png" in (out / "skipped.txt").read_text()

    seen = []

    class Epochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            seen.append(epoch)

    result = finetune(config, callbacks=[Epochs()], log=None)
    assert seen == [2, 0], "phase 1 resumes at its third epoch, then phase 2 runs its one epoch"
    assert result.resumed
    assert [r["epoch_global"] for r in result.history] == [1, 2, 3, 4]
    assert [r["phase"] for r in result.history] == [1, 1, 1, 2]
    assert result.history[:2] == first, "the epochs done before the interruption are kept, not redone"
    assert (out / "run.json").is_file() and not (out / "backup").exists()

    messages = []
    again = finetune(config, log=messages.append)
    assert "already holds this finished run" in messages[0]
    assert again.run == result.run

    with pytest.raises(EdgexferError, match=r"holds a different run \(epochs: 3 there, 5 now\)"):
        finetune(tiny_run_config(data, out, epochs=5, fine_tune_epochs=1), log=None)


def test_out_dir_with_foreign_files_is_refused(demo_data_dir, tmp_path):
    from edgexfer.train import finetune

    out = tmp_path / "busy"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(EdgexferError, match="holds no edgexfer run"):
        finetune(tiny_run_config(demo_data_dir, out), log=None)


@pytest.mark.slow
def test_mirrored_strategy_over_two_logical_cpus(demo_data_dir, tmp_path):
    script = textwrap.dedent(f"""
        import json, sys
        sys.path.insert(0, {str(__import__("pathlib").Path(__file__).resolve().parents[1])!r})
        import tensorflow as tf
        cpu = tf.config.list_physical_devices("CPU")[0]
        tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
        from fixtures_run import tiny_run_config
        from edgexfer.train import finetune
        r = finetune(tiny_run_config({str(demo_data_dir)!r}, {str(tmp_path / "run")!r}, epochs=1,
                                     fine_tune_epochs=1, distribute="mirrored"), log=None)
        print(json.dumps({{"accuracy": r.metrics["accuracy"]}}))
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert config["resolved"]["replicas"] == 2
    assert (tmp_path / "run" / "run.json").is_file()

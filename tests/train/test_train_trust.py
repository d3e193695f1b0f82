"""Training results you can trust: real unfreezing, honest phases, sanity verdicts, precise BatchNorm,
options checked before writing, one process per run folder."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner
from fixtures_run import pretrained_backbone, tiny_run_config

from edgexfer.cli import cli
from edgexfer.errors import EdgexferError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


def _snapshot(folder):
    return sorted((str(p.relative_to(folder)), p.stat().st_size) for p in folder.rglob("*")) if folder.exists() else None


# ------------------------------------------------------------------------------ gradual unfreezing


@pytest.mark.slow
def test_gradual_unfreezing_really_unfreezes_a_pretrained_mobilenetv2(tmp_path):
    import keras

    from edgexfer.backbones import build_model, get_backbone, get_base
    from edgexfer.data.synthetic import generate_demo
    from edgexfer.train import finetune
    from edgexfer.train.stages import set_trainable

    spec = get_backbone("mobilenetv2")
    weights_file = tmp_path / "mobilenetv2.weights.h5"
    pretrained = pretrained_backbone(weights_file, "mobilenetv2", seed=7, images=64, passes=4)
    file_weights = {layer.name: [np.asarray(w) for w in layer.get_weights()] for layer in pretrained.layers}

    snapshots = []

    class Snapshot(keras.callbacks.Callback):
        def on_train_end(self, logs=None):
            base = get_base(self.model)
            snapshots.append({layer.name: [np.asarray(w).copy() for w in layer.get_weights()] for layer in base.layers})

    data = generate_demo(tmp_path / "data", per_class=8, size=32, seed=0)
    config = tiny_run_config(data, tmp_path / "run", backbone="mobilenetv2", image_size=32, weights=str(weights_file),
                             epochs=1, fine_tune_epochs=3, unfreeze_stages=3, fine_tune_learning_rate=1e-3)
    messages = []
    result = finetune(config, callbacks=[Snapshot()], log=messages.append)

    points = spec.unfreeze_points[:3]
    counts = [next(r["trainable_params"] for r in result.history if r["stage"] == f"phase2_stage{k}")
              for k in (1, 2, 3)]
    assert counts[0] < counts[1] < counts[2], counts
    fresh = []
    for point in points:  # a fresh model frozen straight at the same point
        model = build_model(spec, 3, 32, weights=str(weights_file), bn_inference=True)
        fresh.append(set_trainable(model, point, True))
    assert counts == fresh
    assert [s["trainable_params"] for s in result.run["plan"][1:]] == counts
    assert any(f"{counts[2]:,} trainable parameters" in m for m in messages), messages

    names = [layer.name for layer in pretrained.layers]
    for k, point in enumerate(points):
        boundary = max(i for i, n in enumerate(names) if n.startswith(point))
        after = snapshots[k + 1]  # snapshot 0 is phase 1 (head only)
        for i, name in enumerate(names):
            stored = file_weights[name]
            if not stored:
                continue
            same = all(np.array_equal(a, b) for a, b in zip(stored, after[name], strict=True))
            is_bn = isinstance(pretrained.layers[i], keras.layers.BatchNormalization)
            if i <= boundary or is_bn:
                assert same, f"stage {k + 1}: {name} below '{point}' (or pretrained BatchNorm) changed"
            else:
                assert not same, f"stage {k + 1}: {name} above '{point}' did not train"
    # the saved model keeps the pretrained BatchNorm statistics: precise BN leaves frozen BN alone
    saved = get_base(keras.saving.load_model(result.model_path))
    for layer in pretrained.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            assert all(np.array_equal(a, b) for a, b in zip(file_weights[layer.name], saved.get_layer(layer.name)
                                                            .get_weights(), strict=True)), layer.name
    assert result.metrics["batchnorm"]["method"] == "precise"
    assert result.metrics["batchnorm"]["layers"] == 1  # the head's own BatchNorm only
    assert result.metrics["batchnorm"]["frozen_layers"] == 52


# ------------------------------------------------------------------------------------ honest phases


def test_epochs_n_from_scratch_trains_n_epochs_and_the_plan_matches_history(demo_data_dir, tmp_path):
    out = tmp_path / "run"
    result = _cli("finetune", "--data", demo_data_dir, "--backbone", "tinycnn", "--out", out, "--image-size", 32,
                  "--epochs", 3, "--weights", "none", "--batch-size", 16, "--no-augment", "--patience", 0)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    plan_at = next(i for i, line in enumerate(lines) if line.startswith("plan: 1 phase(s), 3 epoch(s)"))
    assert lines[plan_at + 1].startswith("  phase 1: all layers, 3 epoch(s) at learning rate 0.001")
    assert not any(line.lstrip().startswith("phase 2") for line in lines), result.output
    # the plan's line is printed once: where training starts, only where its epochs fall
    assert sum("3 epoch(s) at learning rate" in line for line in lines) == 1, result.output
    assert "phase 1 starts: its epoch 1/3 is epoch 1 overall" in lines, result.output
    history = (out / "history.csv").read_text().splitlines()
    assert len(history) == 1 + 3
    run = json.loads((out / "run.json").read_text())
    assert [(s["key"], s["epochs"]) for s in run["plan"]] == [("phase1", 3)]
    assert json.loads((out / "config.json").read_text())["fine_tune_epochs"] == 0
    # not a terminal: one line per epoch (Keras verbose 2), no progress bar
    assert sum("Epoch " in line for line in lines) == 3 and "━" not in result.output


def test_help_says_what_the_phases_do():
    text = " ".join(_cli("finetune", "--help").output.split())
    assert "0 with --weights none" in text and "required unless in --config" in text and "--tensorboard" in text


# ------------------------------------------------------------------------------ validate first


def test_nothing_to_train_is_refused_before_anything_is_written_and_a_retry_works(demo_data_dir, tmp_path):
    out = tmp_path / "run"
    args = ["finetune", "--data", demo_data_dir, "--backbone", "tinycnn", "--out", out, "--image-size", 32,
            "--batch-size", 16, "--no-augment", "--quiet"]
    result = _cli(*args, "--epochs", 0, "--fine-tune-epochs", 0)
    assert result.exit_code == 2 and "nothing to train" in result.output
    assert not out.exists()
    # from scratch the default phase 2 is empty: --epochs 0 alone has nothing to train either
    result = _cli(*args, "--epochs", 0)
    assert result.exit_code == 2 and "no epoch to train" in result.output, result.output
    assert not out.exists()
    out.mkdir()
    result = _cli(*args, "--epochs", 1, "--batch-size", 0)
    assert result.exit_code == 2 and "batch_size" in result.output
    assert _snapshot(out) == [] and not (tmp_path / ".run.lock").exists()
    result = _cli(*args, "--epochs", 1)
    assert result.exit_code == 0, result.output
    assert (out / "run.json").is_file()


# ------------------------------------------------------------------------------ sanity verdicts


def test_a_run_that_learned_nothing_ends_with_the_warning_and_the_record(tmp_path):
    from PIL import Image

    from edgexfer.train import finetune

    rng = np.random.default_rng(0)
    data = tmp_path / "noise"
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        for i in range(40):  # pure noise: nothing to learn, whatever the label
            Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(data / name / f"{i}.png")
    messages = []
    result = finetune(tiny_run_config(data, tmp_path / "run", image_size=32, epochs=3, fine_tune_epochs=0),
                      log=messages.append)
    sanity = json.loads((result.run_dir / "metrics.json").read_text())["sanity"]
    assert sanity["verdict"] == "no_better_than_baseline", sanity
    assert sanity["baseline_accuracy"] == pytest.approx(0.5)
    assert {"reason", "fix", "p_value", "n_test", "train_accuracy", "val_accuracy"} <= set(sanity)
    warnings = [m for m in messages if m.startswith("WARNING:")]
    assert len(warnings) == 1 and "no better than the baseline" in warnings[0] and "Likely fix" in warnings[0]
    # balanced classes: the baseline is any one class, not a "majority" class that sorts first
    assert "equally frequent" in warnings[0]
    assert result.run["sanity"] == "no_better_than_baseline"


def test_sanity_verdicts():
    from edgexfer.train.sanity import check_run

    y = [0] * 30 + [1] * 10
    train = [0] * 60 + [1] * 20
    good = check_run(y, 0.95, train, ["a", "b"], val_accuracy=0.9, train_accuracy=0.97)
    assert good.verdict == "ok" and good.baseline_accuracy == 0.75
    majority = check_run(y, 0.75, train, ["a", "b"], val_accuracy=0.75, train_accuracy=0.8)
    assert majority.verdict == "no_better_than_baseline" and "'a'" in majority.reason
    overfit = check_run(y, 0.9, train, ["a", "b"], val_accuracy=0.6, train_accuracy=1.0)
    assert overfit.verdict == "overfit" and "overfitting" in overfit.fix


# ------------------------------------------------------------------------------ precise BatchNorm


def test_precise_batchnorm_gives_the_cumulative_batch_statistics():
    import keras

    from edgexfer.train.batchnorm import precise_batchnorm

    inputs = keras.Input((4,))
    x = keras.layers.BatchNormalization(momentum=0.999, name="bn")(inputs)
    frozen = keras.layers.BatchNormalization(name="frozen")(x)
    model = keras.Model(inputs, frozen)
    model.get_layer("frozen").trainable = False
    rng = np.random.default_rng(0)
    batches = [rng.normal(3.0, 2.0, (16, 4)).astype("float32") for _ in range(5)]
    import tensorflow as tf

    ds = tf.data.Dataset.from_tensor_slices((np.concatenate(batches), np.zeros(80))).batch(16)
    record = precise_batchnorm(model, ds, ["bn"], max_batches=10)
    assert record.batches == 5 and record.images == 80 and record.layers == ["bn"] and record.frozen_layers == 1
    bn = model.get_layer("bn")
    np.testing.assert_allclose(bn.moving_mean.numpy(), np.mean([b.mean(0) for b in batches], axis=0), rtol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), np.mean([b.var(0) for b in batches], axis=0), rtol=1e-4)
    assert bn.momentum == 0.999 and not model.get_layer("frozen").trainable
    assert np.array_equal(model.get_layer("frozen").moving_mean.numpy(), np.zeros(4))


def test_precise_batchnorm_that_scores_lower_gives_back_the_training_statistics():
    import keras

    from edgexfer.train.batchnorm import BatchNormRecord, keep_better_statistics, moving_statistics

    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.BatchNormalization(name="bn")(inputs))
    bn = model.get_layer("bn")
    bn.moving_mean.assign(np.full(4, 2.0, "float32"))
    trained = moving_statistics(model, ["bn"])
    for after, kept, mean in ((0.90, True, 5.0), (0.85, False, 2.0)):  # validation accuracy before: 0.88
        bn.moving_mean.assign(np.full(4, 5.0, "float32"))  # what re-estimation left
        record = BatchNormRecord("precise", ["bn"])
        keep_better_statistics(record, trained, 0.88, after)
        assert record.kept is kept and (record.val_accuracy_before, record.val_accuracy_after) == (0.88, after)
        assert np.array_equal(bn.moving_mean.numpy(), np.full(4, mean)), (after, bn.moving_mean.numpy())


def test_phase_2_summary_counts_its_epochs_as_keras_printed_them():
    from types import SimpleNamespace

    from edgexfer.train.loop import phase_summary

    stages = [SimpleNamespace(key="phase1", phase=1, unfreeze=None),
              SimpleNamespace(key="phase2_stage1", phase=2, unfreeze="all")]
    history = [{"stage": "phase1", "epoch": e, "epoch_global": e, "val_loss": 1.0, "val_accuracy": 0.5}
               for e in range(1, 13)]
    history += [{"stage": "phase2_stage1", "epoch": e, "epoch_global": 12 + e, "val_loss": 1.0 - e / 10,
                 "val_accuracy": 0.8} for e in range(1, 5)]
    said = []
    phase_summary(said.append, 2, stages, SimpleNamespace(history=history, monitor="val_loss", mode="min"), 3.0)
    assert said[0].endswith("at phase 2 stage 1 epoch 4 (epoch 16 overall)"), said


def _colour_classes(folder, per_class=40, size=32):
    """Three classes a from-scratch network learns in a few epochs: noisy images tinted red, green or blue."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for c, name in enumerate(("red", "green", "blue")):
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            image = rng.normal(110, 40, (size, size, 3))
            image[..., c] += 80
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8)).save(folder / name / f"{i}.png")
    return folder


@pytest.mark.slow
def test_from_scratch_mobilenetv2_inference_mode_matches_batch_statistics(tmp_path):
    import keras

    from edgexfer.data.pipeline import make_dataset
    from edgexfer.data.splits import Split
    from edgexfer.train import finetune

    data = _colour_classes(tmp_path / "data", per_class=60)
    config = tiny_run_config(data, tmp_path / "run", backbone="mobilenetv2", image_size=32, weights="none",
                             epochs=12, fine_tune_epochs=0, learning_rate=3e-3, batch_size=16,
                             split_fractions=[0.4, 0.15, 0.45])  # 81 test images: one is 1.2 points
    result = finetune(config, log=None)
    model = keras.saving.load_model(result.model_path)
    split = Split.load(result.run_dir / "split.json")
    # the whole test split as one batch: batch statistics of 81 images, not the noise of small batches
    x, y = next(iter(make_dataset(split, "test", 32, 1000, shuffle=False)))
    y = np.asarray(y)
    # inference mode first: a training=True call moves the moving statistics; dropout off for both
    inference = float(np.mean(np.asarray(model(x, training=False)).argmax(1) == y))
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    batch_stats = float(np.mean(np.asarray(model(x, training=True)).argmax(1) == y))
    assert batch_stats > 0.6, "the backbone must learn for the comparison to mean anything"
    # never more than 2 points below (before precise BatchNorm it sat at chance); it may be above: statistics
    # of the whole train split describe the weights better than those of 81 test images
    assert inference >= batch_stats - 0.02, (inference, batch_stats)
    assert result.metrics["batchnorm"]["method"] == "precise" and result.metrics["batchnorm"]["layers"] > 50


# ------------------------------------------------------------------------------ one process per folder


def test_second_finetune_on_the_same_out_exits_2_and_the_first_finishes(demo_data_dir, tmp_path):
    out = tmp_path / "run"
    args = [sys.executable, "-m", "edgexfer", "finetune", "--data", str(demo_data_dir), "--backbone", "tinycnn",
            "--out", str(out), "--image-size", "32", "--epochs", "4", "--batch-size", "8", "--no-augment",
            "--patience", "0", "--quiet"]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}
    first = subprocess.Popen(args + ["--seed", "0"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             env=env)
    lock = tmp_path / ".run.lock"
    deadline = time.time() + 60
    while not (lock.is_file() and lock.read_text()) and time.time() < deadline:
        time.sleep(0.05)
    second = subprocess.run(args + ["--seed", "1"], capture_output=True, text=True, env=env, timeout=120)
    first_out, _ = first.communicate(timeout=300)
    assert second.returncode == 2, second.stdout + second.stderr
    error = [line for line in (second.stdout + second.stderr).splitlines() if line.startswith("edgexfer: error:")]
    assert len(error) == 1 and str(out) in error[0] and f"process {first.pid}" in error[0], second.stderr
    assert first.returncode == 0, first_out
    config = json.loads((out / "config.json").read_text())
    assert config["seed"] == 0 and (out / "run.json").is_file()
    assert len((out / "history.csv").read_text().splitlines()) == 1 + 4
    assert oct((out / "model.keras").stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_tensorboard_logs_in_the_run_folder(demo_data_dir, tmp_path):
    from edgexfer.train import finetune

    result = finetune(tiny_run_config(demo_data_dir, tmp_path / "run", image_size=32, epochs=1, fine_tune_epochs=0,
                                      tensorboard=True), log=None)
    events = list((result.run_dir / "tensorboard").rglob("events.out.tfevents.*"))
    assert events, list(result.run_dir.rglob("*"))


def test_refused_options_raise_before_the_lock_and_folder(tmp_path):
    from edgexfer.train import finetune

    with pytest.raises(EdgexferError, match="does not exist"):
        finetune(tiny_run_config(tmp_path / "missing", tmp_path / "run"), log=None)
    assert not (tmp_path / "run").exists() and not (tmp_path / ".run.lock").exists()


# ------------------------------------------------------------------------------ resume = uninterrupted


def _weights(path):
    import keras

    return [np.asarray(w) for w in keras.saving.load_model(path).get_weights()]


@pytest.mark.slow
def test_kill_9_at_several_points_then_resume_gives_the_uninterrupted_model(tmp_path):
    from edgexfer.data.synthetic import generate_demo

    data = generate_demo(tmp_path / "data", per_class=12, size=32, seed=0)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def command(out):
        return [sys.executable, "-m", "edgexfer", "finetune", "--data", str(data), "--backbone", "tinycnn",
                "--out", str(out), "--image-size", "32", "--epochs", "3", "--fine-tune-epochs", "2",
                "--batch-size", "8", "--patience", "2", "--quiet"]  # augmentation and dropout on: their RNG too

    straight = tmp_path / "straight"
    subprocess.run(command(straight), check=True, capture_output=True, env=env, timeout=300)

    resumed = tmp_path / "resumed"
    for rows in (1, 3, 4):  # mid phase 1, at the phase boundary, inside phase 2
        proc = subprocess.Popen(command(resumed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        state = resumed / "checkpoints" / "state.json"
        deadline = time.time() + 240
        while time.time() < deadline and proc.poll() is None:
            try:
                if len(json.loads(state.read_text())["history"]) >= rows:
                    break
            except (OSError, ValueError, KeyError):
                pass
            time.sleep(0.02)
        proc.kill()  # SIGKILL: no cleanup of any kind
        proc.wait()
        assert not (resumed / "run.json").exists(), "killed before the end"
    finished = subprocess.run(command(resumed), capture_output=True, text=True, env=env, timeout=300)
    assert finished.returncode == 0, finished.stdout + finished.stderr
    assert (straight / "history.csv").read_text() == (resumed / "history.csv").read_text()
    for a, b in zip(_weights(straight / "model.keras"), _weights(resumed / "model.keras"), strict=True):
        assert np.array_equal(a, b)
    assert not (resumed / "checkpoints" / "resume.npz").exists()

"""Training options: the stage plan, config files, mixed precision's float32 model.keras."""

import json

import pytest
from fixtures_run import tiny_run_config

from edgexfer.config import FinetuneConfig, finetune_config_from, load_config_file
from edgexfer.errors import EdgexferError

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def _config(**kw):
    base = dict(data="demo", backbone="resnet50", out="runs/x")
    base.update(kw)
    return FinetuneConfig(**base)


def test_gradual_unfreezing_plan_goes_deeper_at_lower_rates():
    from edgexfer.backbones import get_backbone
    from edgexfer.train.stages import plan_stages

    spec = get_backbone("resnet50")
    stages = plan_stages(spec, _config(epochs=3, fine_tune_epochs=7, unfreeze_stages=3, fine_tune_learning_rate=1e-4,
                                       stage_lr_factor=0.5), True, 7)
    assert [s.key for s in stages] == ["phase1", "phase2_stage1", "phase2_stage2", "phase2_stage3"]
    assert [s.epochs for s in stages] == [3, 3, 2, 2]
    assert [s.unfreeze for s in stages] == [None, "conv4_", "conv3_", "conv2_"]
    assert [s.learning_rate for s in stages[1:]] == pytest.approx([1e-4, 5e-5, 2.5e-5])
    # from scratch (weights none) with phase 2 asked for: it continues on all layers at the lower rate
    scratch = plan_stages(spec, _config(epochs=2, fine_tune_epochs=2), False, 2)
    assert [s.unfreeze for s in scratch] == ["all", "all"]


def test_fine_tune_epochs_default_depends_on_pretrained_weights_and_zero_epochs_is_refused():
    from edgexfer.train.stages import resolved_fine_tune_epochs

    assert resolved_fine_tune_epochs(_config(), pretrained=True) == 10
    assert resolved_fine_tune_epochs(_config(), pretrained=False) == 0
    assert resolved_fine_tune_epochs(_config(fine_tune_epochs=3), pretrained=False) == 3
    with pytest.raises(EdgexferError, match="nothing to train"):
        _config(epochs=0, fine_tune_epochs=0)


def test_unfreezing_freezes_up_to_the_point_and_keeps_batchnorm_frozen():
    import keras

    from edgexfer.backbones import build_model, get_base
    from edgexfer.train.stages import set_trainable

    model = build_model("mobilenetv2", 3, 32, weights="none", bn_inference=True)
    base = get_base(model)
    set_trainable(model, None, True)
    assert not any(w.trainable for w in base.weights)
    set_trainable(model, "block_12_", True)
    names = [layer.name for layer in base.layers]
    boundary = max(i for i, n in enumerate(names) if n.startswith("block_12_"))
    for i, layer in enumerate(base.layers):
        if isinstance(layer, keras.layers.BatchNormalization) or i <= boundary:
            assert not layer.trainable, layer.name
    assert base.get_layer("block_13_expand").trainable and base.get_layer("Conv_1").trainable
    assert model.get_layer("probabilities").trainable


def test_config_files_json_and_toml_and_command_line_precedence(tmp_path):
    toml = tmp_path / "c.toml"
    toml.write_text('data = "demo"\nbackbone = "tinycnn"\nout = "r"\nfine-tune-epochs = 4\n[augment]\nzoom = 0.2\n')
    config = finetune_config_from(toml, {"fine_tune_epochs": 6, "seed": None})
    assert config.fine_tune_epochs == 6 and config.augment == {"zoom": 0.2} and config.seed == 0
    as_json = tmp_path / "c.json"
    as_json.write_text(json.dumps(config.to_dict()))
    assert load_config_file(as_json)["fine_tune_epochs"] == 6
    with pytest.raises(EdgexferError, match=r"option batch_size=0 is not a whole number ≥ 1"):
        finetune_config_from(as_json, {"batch_size": 0})
    with pytest.raises(EdgexferError, match="missing --backbone"):
        finetune_config_from(None, {"data": "demo", "out": "r"})


def test_a_runs_config_json_repeats_the_run(tiny_run):
    config = finetune_config_from(tiny_run / "config.json", {})
    assert config.backbone == "tinycnn" and config.image_size == 48 and config.epochs == 2


def test_mixed_precision_without_a_gpu_trains_in_float32():
    from edgexfer.train.loop import load_tensorflow, mixed_precision_usable

    tf, _ = load_tensorflow()
    messages = []
    if tf.config.list_physical_devices("GPU"):
        pytest.skip("a GPU is visible")
    assert mixed_precision_usable(tf, True, messages.append) is False
    assert "no GPU is visible" in messages[0]


@pytest.mark.slow
def test_mixed_precision_run_saves_a_float32_model(demo_data_dir, tmp_path, monkeypatch):
    """The mixed_float16 path (forced on the CPU here) still writes a float32 model.keras."""
    import keras

    from edgexfer.train import finetune, trainer

    monkeypatch.setattr(trainer, "mixed_precision_usable", lambda tf, requested, say: requested)
    result = finetune(tiny_run_config(demo_data_dir, tmp_path / "run", image_size=32, epochs=1, fine_tune_epochs=0,
                                      mixed_precision=True), log=None)
    assert keras.mixed_precision.global_policy().name == "float32", "the global policy is restored"
    model = keras.saving.load_model(result.model_path)
    assert {layer.dtype_policy.name for layer in model.layers} == {"float32"}
    assert json.loads((result.run_dir / "config.json").read_text())["resolved"]["mixed_precision"] is True


def test_the_same_seed_trains_the_same_model(demo_data_dir, tmp_path):
    """Deterministic by default: two runs of one command give identical test metrics (augmentation on)."""
    from edgexfer.train import finetune

    runs = [finetune(tiny_run_config(demo_data_dir, tmp_path / f"run{i}", image_size=32, epochs=2, fine_tune_epochs=0,
                                     augment=True), log=None) for i in range(2)]
    assert runs[0].metrics["loss"] == pytest.approx(runs[1].metrics["loss"], abs=1e-6)
    assert runs[0].metrics["confusion_matrix"] == runs[1].metrics["confusion_matrix"]
    config = json.loads((tmp_path / "run0" / "config.json").read_text())
    assert json.dumps(config).count('"deterministic": true') >= 1

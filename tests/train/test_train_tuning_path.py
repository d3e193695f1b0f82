"""A KerasTuner trial and `finetune` with the same hyperparameters take the same code path.

Both are watched at the one place where Keras trains (``Model.fit``) and where the input pipeline is made
(``make_dataset``): the same stages, optimizer, learning rates, per-layer trainability, BatchNorm
momentum, class weights, augmentation and training callbacks, not merely similar numbers.
"""

import numpy as np
import pytest
from fixtures_run import pretrained_backbone

pytestmark = [pytest.mark.filterwarnings("ignore::UserWarning"), pytest.mark.filterwarnings("ignore::FutureWarning")]

RUN_ONLY = {"Resume", "RunProgress"}  # the run folder's bookkeeping (resume), not training


@pytest.mark.slow
def test_a_tuning_trial_and_finetune_train_the_same_way(tmp_path, monkeypatch):
    pytest.importorskip("keras_tuner")
    import keras

    import edgexfer.data.pipeline as pipeline
    from edgexfer.backbones import get_base
    from edgexfer.config import FinetuneConfig
    from edgexfer.data.sources import discover
    from edgexfer.data.splits import make_split
    from edgexfer.data.synthetic import generate_demo
    from edgexfer.studies.compare import TuneOptions
    from edgexfer.studies.tuning import tune_backbone
    from edgexfer.train import finetune
    from edgexfer.train.batchnorm import _batchnorm_layers

    weights_file = tmp_path / "pretrained.weights.h5"
    pretrained_backbone(weights_file, "mobilenetv2", seed=3, images=32, passes=2)
    data = generate_demo(tmp_path / "data", per_class=8, size=32, seed=0)
    split_file = tmp_path / "split.json"
    make_split(discover(data), fractions=(0.6, 0.2, 0.2), seed=0).save(split_file)

    fits: list[dict] = []
    pipelines: list[dict] = []
    real_fit = keras.Model.fit
    real_make_dataset = pipeline.make_dataset

    def watched_fit(model, *args, **kwargs):
        base = get_base(model)
        bn = {layer.name: (layer.trainable, layer.momentum) for layer in _batchnorm_layers(model)}
        fits.append({
            "epochs": kwargs["epochs"] - kwargs.get("initial_epoch", 0),
            "optimizer": type(model.optimizer).__name__,
            "learning_rate": float(np.asarray(model.optimizer.learning_rate)),
            "trainable": {layer.name: layer.trainable for layer in base.layers
                          if not isinstance(layer, keras.layers.InputLayer)},
            "head": {layer.name: layer.trainable for layer in model.layers if layer.name.startswith(("head", "prob"))},
            "batchnorm": bn,
            "class_weight": kwargs.get("class_weight"),
            "callbacks": sorted(type(c).__name__ for c in kwargs.get("callbacks", [])
                                if type(c).__module__.startswith("keras.") or type(c).__name__ in RUN_ONLY),
            "trainable_count": sum(int(np.prod(v.shape)) for v in model.trainable_weights),
        })
        return real_fit(model, *args, **kwargs)

    def watched_make_dataset(split, name, image_size, batch_size, **kwargs):
        if name == "train" and kwargs.get("augment") is not None:
            pipelines.append({"batch_size": batch_size, "augment": kwargs["augment"].to_dict(), "epochs": kwargs.get("epochs"),
                              "seed": kwargs.get("seed"), "cache": kwargs.get("cache")})
        return real_make_dataset(split, name, image_size, batch_size, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", watched_fit)
    monkeypatch.setattr(pipeline, "make_dataset", watched_make_dataset)

    fields = {"data": str(data), "backbone": "mobilenetv2", "image_size": 32, "weights": str(weights_file),
              "optimizer": "adamw", "weight_decay": 1e-4, "early_stopping_patience": 3, "seed": 0,
              "augment": {"zoom": 0.2}, "class_weights": True}
    record = tune_backbone(name="mobilenetv2", split_path=split_file, finetune_fields=fields,
                           options=TuneOptions(tuner="bayesian", max_trials=1, epochs=4, objective="val_accuracy"),
                           project_dir=tmp_path / "tuning" / "mobilenetv2", log=lambda _m: None)
    trial_fits, trial_pipelines = list(fits), list(pipelines)
    fits.clear()
    pipelines.clear()
    hp = record["best"]["hyperparameters"]
    assert trial_fits, "the trial trained through Model.fit"

    # the fine-tune with the trial's hyperparameters and the trial's epoch budget (2 frozen, 2 unfreezing)
    options = dict(record["best"]["options"])
    depth = hp["unfreeze_depth"]
    options.update(epochs=2, fine_tune_epochs=2) if depth else options.update(epochs=4, fine_tune_epochs=0)
    config = FinetuneConfig(**{**fields, **options}, out=str(tmp_path / "run"), split=str(split_file), verbose=0)
    finetune(config, log=None)

    run_only = [sorted(set(f["callbacks"]) & RUN_ONLY) for f in fits]
    assert all(r == sorted(RUN_ONLY) for r in run_only)
    for f in fits:
        f["callbacks"] = [c for c in f["callbacks"] if c not in RUN_ONLY]
    assert len(fits) == len(trial_fits) == (1 + min(depth, 2) if depth else 1)
    for ours, theirs in zip(fits, trial_fits, strict=True):
        assert {k: v for k, v in ours.items() if ours[k] != theirs[k]} == {}, {k: theirs[k] for k in theirs
                                                                             if ours[k] != theirs[k]}
    assert fits[0]["optimizer"] == "AdamW" and "EarlyStopping" in fits[0]["callbacks"]
    assert fits[-1]["class_weight"] is not None
    assert pipelines and pipelines == trial_pipelines[: len(pipelines)]
    assert pipelines[0]["augment"]["zoom"] == 0.2 and pipelines[0]["batch_size"] == hp["batch_size"]
    if depth:
        bn = fits[-1]["batchnorm"]
        # pretrained BatchNorm stays frozen (inference mode) while the convolutions above the point train
        assert not any(trainable for name, (trainable, _) in bn.items() if not name.startswith("head"))
        assert fits[-1]["trainable_count"] > fits[0]["trainable_count"]

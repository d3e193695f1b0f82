"""A second small backbone for study tests, registrable in any process (a Ray worker included).

``register_studycnn`` is idempotent; Ray runs it in each worker of the test's Ray instance
(``worker_process_setup_hook="fixtures_study.register_studycnn"``) so that jobs there know the backbone.
A second Keras application (MobileNetV3Small at 48 px) took minutes to compile and train on two shared
CPU cores; this one trains in seconds.

Study set-ups (a pytest plugin, listed in conftest.py): ``study_config`` (two backbones, tiny settings),
``counting`` (stages that count their calls) and the session fixture ``local_compare_study`` (that study run
once in-process with the real stages; the compare test and the Ray test both read it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from edgexfer.studies.compare import CompareConfig, Stages, StudyOutcome, default_stages, run_compare

SECOND_BACKBONE = "studycnn"


def register_studycnn() -> str:
    from edgexfer.backbones import registry

    registry.list_backbones()  # the built-in presets first
    if SECOND_BACKBONE in registry._REGISTRY:
        return SECOND_BACKBONE

    @registry.register_backbone(SECOND_BACKBONE, family="plain", native_size=64, min_size=32, preprocessing="unit",
                                unfreeze_points=("block2_", "block1_"), parameters=1_464, imagenet=False)
    def studycnn(input_shape, weights):
        import keras
        from keras import layers

        inputs = keras.Input(shape=input_shape)
        x = inputs
        for i, filters in enumerate((8, 16), start=1):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"block{i}_conv")(x)
            x = layers.BatchNormalization(name=f"block{i}_bn")(x)
            x = layers.ReLU(name=f"block{i}_relu")(x)
            x = layers.MaxPooling2D(2, name=f"block{i}_pool")(x)
        return keras.Model(inputs, x, name=SECOND_BACKBONE)

    return SECOND_BACKBONE


# ---------------------------------------------------------------------------------------------- a real study
# Tiny settings for studies with the real stages (32 px, one epoch, a few dozen images). The INT8 quantizer is
# pinned to ours: these studies are about scheduling, resume and the report, not the quantizer (``auto`` would add
# NNCF's candidate to every export; tests/export/test_export_nncf.py covers it).
FAST_TRAINING = {"image_size": 32, "epochs": 1, "fine_tune_epochs": 0, "batch_size": 16, "weights": "none",
                 "verbose": 0, "early_stopping_patience": 0}
FAST_EXPORT = {"calibration_size": 12, "parity_samples": 8, "progress": False, "quantizer": "edgexfer"}
FAST_BENCH = {"runtimes": ["ort-cpu"], "batch_sizes": (1,), "warmup": 1, "iterations": 5, "end_to_end_images": 2,
              "progress": False}


def study_config(out: Path, **overrides) -> CompareConfig:
    """A two-backbone study (tinycnn and SECOND_BACKBONE) on 12 demo images per class at 32 px."""
    options = dict(data="demo", backbones=["tinycnn", SECOND_BACKBONE], out=out, demo_per_class=12, demo_size=32,
                   finetune=dict(FAST_TRAINING), export=dict(FAST_EXPORT), bench=dict(FAST_BENCH),
                   latency_budget_ms=1000.0, log=lambda line: None)
    options.update(overrides)
    return CompareConfig(**options)


def counting(stages: Stages, calls: dict[str, int]) -> Stages:
    """``stages`` whose finetune/export/bench/tune count their calls."""
    def wrap(name, fn):
        def counted(*args, **kwargs):
            calls[name] = calls.get(name, 0) + 1
            return fn(*args, **kwargs)
        return counted

    for name in ("finetune", "export", "bench", "tune"):
        setattr(stages, name, wrap(name, getattr(stages, name)))
    return stages


@dataclass(frozen=True)
class LocalStudy:
    """``study_config``'s study, run once in-process with the real stages."""

    out_dir: Path
    outcome: StudyOutcome
    calls: dict[str, int]  # how often each stage ran
    results_text: str  # results.json as the run wrote it (a test may re-decide the study in place later)


@pytest.fixture(scope="session")
def local_compare_study(tmp_path_factory) -> LocalStudy:
    """``study_config``'s study run once per session with the local executor (about 20 s of training, export and
    bench). Read-only for every test but tests/studies/test_studies_compare.py's resume test, which re-runs and
    re-reports it in place; compare written results through ``results_text``."""
    from edgexfer.backbones import registry

    out = tmp_path_factory.mktemp("study") / "local"
    calls: dict[str, int] = {}
    with pytest.MonkeyPatch.context() as mp:  # SECOND_BACKBONE for this run only; no GPU, as for any CPU test
        registry.list_backbones()
        mp.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
        mp.setenv("CUDA_VISIBLE_DEVICES", "")
        register_studycnn()
        outcome = run_compare(study_config(out), counting(default_stages(lambda line: None), calls))
    return LocalStudy(out, outcome, calls, (out / "results.json").read_text())

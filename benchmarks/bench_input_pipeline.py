"""Input pipeline images/s against training-step images/s for one backbone, side by side in one run.

Answers "is training waiting on the data?": the tf.data pipeline (Pillow decode + resize, cache,
augmentation) is timed on its own, the train step is timed on one batch held in memory, and one
epoch of ``fit`` over the real pipeline shows what training gets. Writes
``benchmarks/results/input_pipeline-<backbone>-<size>.json``.

    .venv/bin/python benchmarks/bench_input_pipeline.py --backbone mobilenetv2 --image-size 96
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def images_per_second(dataset, passes: int = 1) -> tuple[float, int]:
    """Iterate ``dataset`` ``passes`` times; images/s of the last pass and its image count."""
    rate, count = 0.0, 0
    for _ in range(passes):
        count, start = 0, time.perf_counter()
        for images, _labels in dataset:
            count += int(images.shape[0])
        rate = count / (time.perf_counter() - start)
    return rate, count


def train_step_rate(model, keras, batch, labels, learning_rate: float, steps: int, warmup: int = 3) -> float:
    """Images/s of ``train_on_batch`` on a batch held in memory (no input pipeline at all)."""
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss="sparse_categorical_crossentropy")
    for _ in range(warmup):  # tracing and first-call costs out of the timing
        model.train_on_batch(batch, labels)
    start = time.perf_counter()
    for _ in range(steps):
        model.train_on_batch(batch, labels)
    return steps * int(batch.shape[0]) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="mobilenetv2")
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data", default="demo", help="a data folder, or 'demo' (synthetic, made in a temp folder)")
    parser.add_argument("--per-class", type=int, default=300, help="demo images per class")
    parser.add_argument("--demo-size", type=int, default=256, help="demo image side: decode cost grows with it")
    parser.add_argument("--steps", type=int, default=20, help="timed train steps")
    parser.add_argument("--out", default=None, help="results JSON [benchmarks/results/input_pipeline-…json]")
    args = parser.parse_args()

    import keras
    import numpy as np
    import tensorflow as tf

    from edgexfer.backbones import build_model, get_backbone
    from edgexfer.data.pipeline import AugmentConfig, make_dataset
    from edgexfer.data.sources import discover
    from edgexfer.data.splits import make_split
    from edgexfer.data.synthetic import generate_demo
    from edgexfer.train.stages import set_trainable
    from edgexfer.versions import library_versions, machine_info

    spec = get_backbone(args.backbone)
    size = spec.check_image_size(args.image_size)
    with tempfile.TemporaryDirectory() as tmp:
        data = (generate_demo(Path(tmp) / "demo", per_class=args.per_class, size=args.demo_size, seed=0)
                if args.data == "demo" else Path(args.data))
        split = make_split(discover(data), seed=0)
        n_classes = len(split.classes)
        bs = args.batch_size

        pipeline = {}
        rate, n = images_per_second(make_dataset(split, "train", size, bs, cache=False))
        pipeline["decode_resize"] = rate
        rate, _ = images_per_second(make_dataset(split, "train", size, bs, augment=AugmentConfig(), cache=False))
        pipeline["decode_resize_augment"] = rate
        rate, _ = images_per_second(make_dataset(split, "train", size, bs, cache=True), passes=2)
        pipeline["cached"] = rate
        rate, _ = images_per_second(make_dataset(split, "train", size, bs, augment=AugmentConfig(), cache=True), passes=2)
        pipeline["cached_augment"] = rate

        keras.utils.set_random_seed(0)
        model = build_model(spec, n_classes, size, weights="none", bn_inference=True)
        batch = tf.constant(np.random.default_rng(0).uniform(0, 255, (bs, *size, 3)).astype(np.float32))
        labels = tf.constant(np.arange(bs) % n_classes)
        step = {}
        set_trainable(model, None, bn_inference=True)
        step["phase1_frozen_backbone"] = train_step_rate(model, keras, batch, labels, 1e-3, args.steps)
        set_trainable(model, spec.unfreeze_points[0], bn_inference=True)
        step["phase2_top_block"] = train_step_rate(model, keras, batch, labels, 1e-4, args.steps)
        set_trainable(model, "all", bn_inference=True)
        step["all_layers"] = train_step_rate(model, keras, batch, labels, 1e-4, args.steps)

        # what training really gets: fit over the real (cached, augmented) pipeline, after a warm-up epoch
        set_trainable(model, None, bn_inference=True)
        model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
        ds = make_dataset(split, "train", size, bs, augment=AugmentConfig(), cache=True)
        model.fit(ds, epochs=1, verbose=0, shuffle=False)
        start = time.perf_counter()
        model.fit(ds, epochs=2, verbose=0, shuffle=False)
        fit_rate = 2 * n / (time.perf_counter() - start)

    results = {
        "schema": "edgexfer.bench-input-pipeline/1",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": "python benchmarks/bench_input_pipeline.py " + " ".join(
            f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
        "backbone": spec.name, "image_size": list(size), "batch_size": bs, "train_images": n,
        "data": "demo" if args.data == "demo" else str(data),
        "pipeline_images_per_s": {k: round(v, 1) for k, v in pipeline.items()},
        "train_step_images_per_s": {k: round(v, 1) for k, v in step.items()},
        "fit_epoch_images_per_s": round(fit_rate, 1),
        "machine": machine_info(),
        "tensorflow_threads": {"intra_op": tf.config.threading.get_intra_op_parallelism_threads(),
                               "inter_op": tf.config.threading.get_inter_op_parallelism_threads()},
        "versions": library_versions(("tensorflow", "keras", "numpy", "pillow")),
    }
    out = Path(args.out) if args.out else Path(__file__).parent / "results" / f"input_pipeline-{spec.name}-{size[0]}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print(f"{spec.name} at {size[0]}x{size[1]}, batch {bs}, {n} train images")
    print("input pipeline (images/s):  " + ", ".join(f"{k} {v:.0f}" for k, v in pipeline.items()))
    print("train step (images/s):      " + ", ".join(f"{k} {v:.0f}" for k, v in step.items()))
    print(f"fit over the pipeline:      {fit_rate:.0f} images/s (phase 1, cached + augmented input)")
    print(f"written to {out}")


if __name__ == "__main__":
    main()

"""From-scratch BatchNorm: inference-mode versus batch-statistics test accuracy of a fine-tuned model.

Trains Keras-applications backbones from scratch (``weights none``) on the synthetic demo data and
scores the saved ``model.keras`` on the test split twice: in inference mode (BatchNorm moving
statistics, what export and bench see) and with batch statistics (``model(x, training=True)`` with
dropout off, shuffled test batches of ``--stats-batch-size`` images). Inference mode far below batch
statistics means the moving statistics do not describe the weights. Use a test split of a few hundred
images (``--per-class`` and ``--split-fractions``) so that one image is well under a point, and
batch-statistics batches large enough (``--stats-batch-size``) not to be noisy themselves.

Run it against the current code, and against an older checkout to compare (the settings of the
recorded results)::

    ARGS="--per-class 400 --image-size 64 --epochs 15 --learning-rate 3e-3 --batch-size 32 \
          --split-fractions 0.55,0.15,0.3 --no-augment --stats-batch-size 120"
    python benchmarks/bn_from_scratch.py --label after $ARGS
    mkdir OLD && git archive 0ce3ebc | tar -x -C OLD
    PYTHONPATH=OLD python benchmarks/bn_from_scratch.py --label before $ARGS

``--measure-only`` re-measures the finished runs in ``--work`` without training (so both code
versions are measured by the same, current, measurement code). Each call adds its rows to benchmarks/results/bn_from_scratch.json (rows of the same label and
backbone are replaced) and rewrites benchmarks/results/bn_from_scratch.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"
BACKBONES = ("mobilenetv3small", "mobilenetv2", "efficientnetb0")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--label", required=True, help="name of this code version in the results (before/after)")
    parser.add_argument("--backbones", default=",".join(BACKBONES))
    parser.add_argument("--per-class", type=int, default=200, help="demo images per class")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--split-fractions", default="0.7,0.2,0.1", help="train,val,test fractions of the demo")
    parser.add_argument("--monitor", default="val_loss", help="what picks the saved epoch (val_loss, val_accuracy)")
    parser.add_argument("--no-augment", action="store_true", help="train without augmentation")
    parser.add_argument("--stats-batch-size", type=int, default=None,
                        help="test batch size for the batch-statistics score [default: --batch-size]")
    parser.add_argument("--work", help="folder for data and runs [default: a temporary folder]")
    parser.add_argument("--measure-only", action="store_true",
                        help="measure the finished runs already in --work (of any code version) without training")
    args = parser.parse_args()


    from edgexfer.config import FinetuneConfig
    from edgexfer.data.synthetic import generate_demo
    from edgexfer.train import finetune

    fractions = [float(f) for f in args.split_fractions.split(",")]
    stats_batch = args.stats_batch_size or args.batch_size
    work = Path(args.work or tempfile.mkdtemp(prefix="bn-from-scratch-"))
    data = generate_demo(work / "data", per_class=args.per_class, size=args.image_size, seed=args.seed)
    rows = []
    for backbone in args.backbones.split(","):
        out = work / f"{args.label}-{backbone}"
        config = FinetuneConfig(data=str(data), backbone=backbone, out=str(out), weights="none",
                                image_size=args.image_size, epochs=args.epochs, fine_tune_epochs=0,
                                learning_rate=args.learning_rate, batch_size=args.batch_size,
                                early_stopping_patience=0, seed=args.seed, verbose=0,
                                split_fractions=fractions, augment=not args.no_augment,
                                monitor=args.monitor)
        started = time.perf_counter()
        if args.measure_only:
            from edgexfer.train import load_run

            result = load_run(out)
        else:
            result = finetune(config, log=None)
        seconds = time.perf_counter() - started
        inference, batch_stats, test_images = _accuracies(result.run_dir, args.image_size, stats_batch)
        history = result.history
        row = {
            "label": args.label, "backbone": backbone,
            "inference_accuracy": inference, "batch_stats_accuracy": batch_stats,
            "gap": batch_stats - inference, "metrics_accuracy": result.metrics["accuracy"],
            "final_train_accuracy": history[-1].get("accuracy") if history else None,
            "best_val_accuracy": max((r.get("val_accuracy", 0) for r in history), default=None),
            "epochs_run": len(history), "train_seconds": None if args.measure_only else round(seconds, 1),
            "sanity": (result.metrics.get("sanity") or {}).get("verdict"),
            "batchnorm": result.metrics.get("batchnorm"),
            "test_images": test_images,
        }
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("label", "backbone", "inference_accuracy", "batch_stats_accuracy",
                                              "epochs_run", "train_seconds")}), flush=True)
    settings = {k: getattr(args, k) for k in ("per_class", "image_size", "epochs", "learning_rate", "batch_size",
                                              "seed", "split_fractions", "no_augment", "stats_batch_size",
                                              "monitor")}
    _save(rows, settings, " ".join(["python", *sys.argv]), args.label + (" (measured)" if args.measure_only else ""))


def _accuracies(run_dir: Path, image_size: int, batch_size: int) -> tuple[float, float, int]:
    """Test accuracy of the saved model in inference mode and with batch statistics."""
    import keras
    import numpy as np

    from edgexfer.data.pipeline import make_dataset
    from edgexfer.data.splits import Split

    model = keras.saving.load_model(run_dir / "model.keras")
    split = Split.load(run_dir / "split.json")
    # shuffled so each batch mixes the classes, as in training; a fixed order for both modes
    ds = make_dataset(split, "test", image_size, batch_size, shuffle=True, seed=0, cache=True)
    batches = [(x, np.asarray(y)) for x, y in ds]
    total = sum(y.size for _, y in batches)
    # inference mode first: a training=True call updates the moving statistics
    inference = sum(int((np.asarray(model(x, training=False)).argmax(1) == y).sum()) for x, y in batches)
    for layer in model._flatten_layers():  # batch statistics without dropout's noise (EfficientNet has some inside)
        if isinstance(layer, keras.layers.Dropout):
            layer.rate = 0.0
    batch_stats = sum(int((np.asarray(model(x, training=True)).argmax(1) == y).sum()) for x, y in batches)
    return inference / total, batch_stats / total, total


def _save(rows: list[dict], settings: dict, command: str, key: str) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / "bn_from_scratch.json"
    old = json.loads(path.read_text()) if path.is_file() else {"rows": [], "commands": {}}
    keys = {(r["label"], r["backbone"]) for r in rows}
    previous = {(r["label"], r["backbone"]): r for r in old["rows"]}
    for r in rows:  # a re-measurement keeps the training time of the run it measured
        if r["train_seconds"] is None and (r["label"], r["backbone"]) in previous:
            r["train_seconds"] = previous[(r["label"], r["backbone"])].get("train_seconds")
    kept = [r for r in old["rows"] if (r["label"], r["backbone"]) not in keys]
    data = {"settings": settings, "commands": {**old.get("commands", {}), key: command},
            "rows": kept + rows}
    path.write_text(json.dumps(data, indent=2) + "\n")
    lines = ["# From-scratch BatchNorm: test accuracy in inference mode vs with batch statistics", "",
             "Synthetic demo data (3 classes), `--weights none`, one phase; settings: "
             + ", ".join(f"{k}={v}" for k, v in settings.items()) + ".", "",
             "| code | backbone | test images | inference mode | batch statistics | batch − inference | epochs "
             "| train s | sanity |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(data["rows"], key=lambda r: (r["backbone"], r["label"] != "before")):
        lines.append(f"| {r['label']} | {r['backbone']} | {r.get('test_images', 'n/a')} | {r['inference_accuracy']:.3f} | "
                     f"{r['batch_stats_accuracy']:.3f} | {r['gap']:+.3f} | {r['epochs_run']} | {r['train_seconds']} "
                     f"| {r.get('sanity') or 'n/a'} |")
    lines += ["", "Commands:", ""] + [f"- {label}: `{cmd}`" for label, cmd in data["commands"].items()]
    (RESULTS / "bn_from_scratch.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()

"""What a fine-tuning run writes to its folder (docs/contracts.md section 2), apart from run.json itself:
the options record and the check that a folder holds this run, the data split, config.json, the model file
(written atomically) and the plots."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import edgexfer.contracts.run as run_contract
import edgexfer.report.plots as plots
from edgexfer.config import RESUME_FREE, FinetuneConfig
from edgexfer.data.scan import scan_source
from edgexfer.data.sources import discover
from edgexfer.data.splits import Split, make_split
from edgexfer.data.synthetic import generate_demo
from edgexfer.errors import EdgexferError
from edgexfer.io import read_json, write_json, write_text
from edgexfer.train.evaluation import saved_row
from edgexfer.versions import library_versions

CONFIG_SCHEMA = "edgexfer.finetune-config/1"
MODEL_FILE = run_contract.MODEL_FILE
# what may sit in a run directory before config.json does: the demo data made for it
PRE_RUN_ENTRIES = {"data"}


def options_record(config: FinetuneConfig, weights: str, image_size: tuple[int, int],
                    fine_tune_epochs: int) -> dict[str, Any]:
    """The options as recorded in config.json: defaults that depend on the backbone resolved."""
    options = config.to_dict()
    options["weights"] = weights
    options["fine_tune_epochs"] = fine_tune_epochs
    if options["image_size"] is None and image_size[0] == image_size[1]:
        options["image_size"] = image_size[0]
    if options["data"] != "demo":
        options["data"] = str(Path(options["data"]).expanduser().resolve())
    options["out"] = str(Path(options["out"]).expanduser().resolve())
    if options.get("split"):
        options["split"] = str(Path(options["split"]).expanduser().resolve())
    return options


def check_run_dir(out: Path, options: dict[str, Any]) -> bool:
    """True when ``out`` holds this finished run; raise when it holds something else."""
    if not out.exists():
        return False
    config_file = out / "config.json"
    if config_file.is_file():
        previous = read_json(config_file, "run config")
        differing = [k for k, v in options.items() if k not in RESUME_FREE and previous.get(k) != v]
        if differing:
            details = ", ".join(f"{k}: {previous.get(k)!r} there, {options[k]!r} now" for k in differing[:3])
            raise EdgexferError(f"{out} holds a different run ({details})",
                                "choose another --out, or delete that folder to start over")
        return (out / "run.json").is_file()
    foreign = sorted(p.name for p in out.iterdir() if p.name not in PRE_RUN_ENTRIES)
    if foreign:
        raise EdgexferError(f"{out} is not empty and holds no edgexfer run ({', '.join(foreign[:3])} …)",
                            "choose an empty or new --out folder")
    return False


def prepare_data(config: FinetuneConfig, out: Path, say):
    split_file = out / "split.json"
    if split_file.is_file() and (out / "config.json").is_file():
        return Split.load(split_file), _read_skipped(out / "skipped.txt")
    if config.split:  # a given split (a study's): the same images in each part, read from config.data
        split = Split.load(config.split, data_root=None if config.data == "demo" else config.data)
        say(f"data: split {config.split}; " + ", ".join(f"{len(split.samples(n))} {n}" for n in split.names))
        return split, []
    if config.data == "demo":
        data_dir = generate_demo(out / "data" / "demo", per_class=config.demo_per_class, size=config.demo_size,
                                 seed=config.seed)
        say(f"synthetic demo data: {config.demo_per_class} images per class at {config.demo_size} px in {data_dir}")
    else:
        data_dir = Path(config.data).expanduser()
    source = discover(data_dir)
    scan = scan_source(source)
    if scan.skipped:
        say(f"skipping {len(scan.skipped)} unreadable file(s); listed in skipped.txt")
    split = make_split(scan.source, fractions=config.split_fractions, seed=config.seed)
    counts = {name: len(split.samples(name)) for name in split.names}
    say(f"data: {len(split.classes)} classes ({', '.join(split.classes)}); "
        + ", ".join(f"{n} {name}" for name, n in counts.items()))
    return split, scan.skipped


def _read_skipped(path: Path) -> list[tuple[str, str]]:
    if not path.is_file():
        return []
    return [tuple(line.split("\t", 1)) for line in path.read_text().splitlines() if line]  # type: ignore[misc]


def write_start(out: Path, options, resolved, split, classes, skipped) -> None:
    out.mkdir(parents=True, exist_ok=True)
    split.save(out / "split.json")
    write_json(out / "labels.json", classes)
    if skipped:
        write_text(out / "skipped.txt", "".join(f"{ref}\t{reason}\n" for ref, reason in skipped))
    # config.json claims the folder for this run: written once the model built and the data is ready
    write_json(out / "config.json", {**options, "schema": CONFIG_SCHEMA, "resolved": resolved, "versions": run_versions()})


def save_model(model, path: Path) -> None:
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.partial.keras")  # Keras wants the .keras suffix
    try:
        model.save(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_plots(out: Path, history, y_true, probabilities, classes, stages, monitor: str) -> None:
    saved = saved_row(history, monitor)
    plots.training_curves(history, out / "plots", monitor=monitor,
                          stage_labels={s.key: f"{plots.stage_name(s.key)}: {s.label}" for s in stages},
                          saved_epoch=int(saved["epoch_global"]) if saved else None)
    plots.classification_plots(y_true, probabilities, classes, out / "plots",
                               title=f"test split, {len(y_true)} images, saved model")



def run_versions() -> dict[str, Any]:
    return library_versions()

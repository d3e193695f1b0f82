"""`edgexfer compare`: fine-tune, export and bench several backbones on one split, then one report.

A study directory::

    STUDY_DIR/
      study.json            what the study is (data, split, backbones, options); written first
      split.json            the one split every backbone trains and is tested on
      data/demo/            the synthetic data set, with --data demo
      runs/<backbone>/      the fine-tuned run (contracts section 2)
      exported/<backbone>/  its ONNX FP32/FP16/INT8 export (section 4)
      benchmarks/<backbone>/ its bench (section 6)
      calibration/          the INT8 calibration sets, <backbone>-<size>-<seed>
      tuning/<backbone>/    KerasTuner project and tuning.json (with --tune)
      state/<backbone>.json which stage finished with which options and which input hashes
      limited_data/         the learning-curve runs (with --data-fractions)
      results.json          every figure of the study (docs/contracts.md section 7)
      report.md, report.html, plots/

Resumable: a stage is skipped when its output is complete, matches its recorded hash, and was
made from the same options and the same input (run.json ↔ model file, manifest ↔ run, bench
results ↔ manifest). A changed export or bench option redoes only that stage and what follows;
a changed training option is refused, since retraining would silently discard a finished run.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from edgexfer.errors import EdgexferError, GateFailed
from edgexfer.io import lock_folder, read_json, sha256_file, write_json

STUDY_RECORD_SCHEMA = "edgexfer.study-record/1"
STATE_SCHEMA = "edgexfer.study-state/1"


@dataclass
class TuneOptions:
    """KerasTuner search per backbone (``--tune``)."""

    tuner: str = "hyperband"  # or "bayesian"
    max_trials: int = 10
    epochs: int = 4  # most epochs one trial trains (Hyperband's max_epochs)
    objective: str = "val_accuracy"
    executions_per_trial: int = 1


@dataclass
class CompareConfig:
    """Options of one study. ``finetune``, ``export`` and ``bench`` hold the options of those stages
    (field names of FinetuneConfig, ExportConfig and BenchConfig), shared by every backbone."""

    data: str  # a data path or "demo"
    backbones: list[str]
    out: Path
    finetune: dict[str, Any] = field(default_factory=dict)
    export: dict[str, Any] = field(default_factory=dict)
    bench: dict[str, Any] = field(default_factory=dict)
    latency_budget_ms: float | None = None
    tune: TuneOptions | None = None
    data_fractions: list[float] | None = None
    split_fractions: tuple[float, float, float] = (0.7, 0.2, 0.1)
    seed: int = 0
    demo_per_class: int = 100
    demo_size: int = 128
    title: str | None = None
    log: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        names = [b.strip().lower() for b in self.backbones if b and b.strip()]
        if not names:
            raise EdgexferError("no backbone to compare", "pass --backbones a,b (see edgexfer backbones)")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise EdgexferError(f"backbone(s) {', '.join(duplicates)} listed twice in --backbones", "list each once")
        self.backbones = names
        if self.latency_budget_ms is not None and not self.latency_budget_ms > 0:
            raise EdgexferError(f"--latency-budget-ms {self.latency_budget_ms} is not positive", "pass milliseconds, e.g. 20")
        if self.tune is not None:
            if self.tune.tuner not in ("hyperband", "bayesian"):
                raise EdgexferError(f"unknown tuner '{self.tune.tuner}'", "use --tuner hyperband or --tuner bayesian")
            if self.tune.max_trials < 1 or self.tune.epochs < 1:
                raise EdgexferError("--max-trials and --tune-epochs must be at least 1", "e.g. --max-trials 10 --tune-epochs 4")


@dataclass
class Stages:
    """The stage functions a study calls; tests swap in counting wrappers."""

    finetune: Callable[[Any], Any]
    export: Callable[[Any], Any]
    bench: Callable[[Any], Any]
    tune: Callable[..., dict[str, Any]]
    finetune_config: Callable[..., Any]
    export_config: Callable[..., Any]
    bench_config: Callable[..., Any]
    check_backbones: Callable[[Sequence[str], Any], None] = field(
        default=lambda names, image_size=None: known_backbones(names, image_size))
    # weights choice -> "imagenet", "none" or an absolute file path, per backbone (as the trainer resolves it)
    resolve_weights: Callable[[str, Any], str] = field(default=lambda name, weights: resolved_weights(name, weights))


def default_stages(log: Callable[[str], None] | None = None) -> Stages:
    """The library's own stages (TensorFlow is imported when they run, not at module load)."""
    from edgexfer.config import FinetuneConfig
    from edgexfer.evaluate.bench import BenchConfig, run_bench
    from edgexfer.export import export_run
    from edgexfer.export.config import ExportConfig
    from edgexfer.studies.tuning import tune_backbone
    from edgexfer.train import finetune

    def finetune_stage(config: Any) -> Any:
        return finetune(config, log=log or print)

    def bench_config(**options: Any) -> Any:
        return checked_options(BenchConfig, "bench")(**({"log": log} if log and "log" not in options else {}),
                                                      **options)

    return Stages(finetune=finetune_stage, export=export_run, bench=run_bench, tune=tune_backbone,
                  finetune_config=checked_options(FinetuneConfig, "fine-tune"),
                  export_config=checked_options(ExportConfig, "export"), bench_config=bench_config)


def checked_options(config_class: type, stage: str) -> Callable[..., Any]:
    """``config_class(**options)``, refusing an unknown option name in one line instead of a TypeError."""
    import dataclasses
    import difflib

    known = [f.name for f in dataclasses.fields(config_class)]

    def make(**options: Any) -> Any:
        for name in options:
            if name not in known:
                close = difflib.get_close_matches(name, known, n=2)
                raise EdgexferError(f"unknown {stage} option '{name}'" + (f" (did you mean {' or '.join(close)}?)"
                                                                          if close else ""),
                                    f"use options of {config_class.__name__}: {', '.join(known)}")
        return config_class(**options)

    return make


@dataclass
class StudyOutcome:
    out_dir: Path
    results: dict[str, Any]
    report: dict[str, Path]
    ran: dict[str, list[str]]  # stage -> backbones it ran for (not skipped)


# ---------------------------------------------------------------------------------------------
# helpers


def fingerprint(options: Any) -> str:
    """A stable hash of JSON-able options (paths as strings)."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def stable_options(options: dict[str, Any]) -> dict[str, Any]:
    """Options that change a stage's output: progress output, log sinks and the data path (the
    split's hash stands for the data) do not."""
    return {k: (asdict(v) if hasattr(v, "__dataclass_fields__") else v)
            for k, v in options.items() if k not in ("progress", "log", "verbose", "data")}


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _read_state(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {"schema": STATE_SCHEMA}
    state = read_json(path, "study state")
    return state if isinstance(state, dict) and state.get("schema") == STATE_SCHEMA else {"schema": STATE_SCHEMA}


def same_split(run_dir: Path, split_path: Path) -> bool:
    """True when the run trained and tested on exactly the parts of ``split_path``."""
    run_split = run_dir / "split.json"
    if not run_split.is_file():
        return False
    return read_json(run_split, "run split").get("splits") == read_json(split_path, "study split").get("splits")


def finished_run(run_dir: Path) -> dict[str, Any] | None:
    """run.json of a finished run whose model file is the one it recorded, else None."""
    run_json = run_dir / "run.json"
    if not run_json.is_file():
        return None
    record = read_json(run_json, "run record")
    model = run_dir / str(record.get("model_file", "model.keras"))
    if record.get("schema") != "edgexfer.run/1" or not model.is_file():
        return None
    if sha256_file(model) != record.get("model_sha256"):
        return None
    return record


def finished_export(export_dir: Path, model_sha256: str) -> dict[str, Any] | None:
    """manifest.json of a complete export of the model with this hash, else None."""
    manifest_path = export_dir / "manifest.json"
    if not manifest_path.is_file():
        return None
    manifest = read_json(manifest_path, "export manifest")
    if (manifest.get("source_run") or {}).get("model_sha256") != model_sha256:
        return None
    for artifact in manifest.get("artifacts", []):
        path = export_dir / str(artifact.get("file"))
        if not path.is_file() or sha256_file(path) != artifact.get("sha256"):
            return None
    return manifest


def _clear(directory: Path, study_dir: Path) -> None:
    """Remove a stale stage directory; only ever inside the study directory."""
    if directory.exists():
        directory.resolve().relative_to(study_dir.resolve())  # raises if outside: never delete user data
        shutil.rmtree(directory)


def _rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)


def read_history(run_dir: Path) -> list[dict[str, Any]]:
    """history.csv as a list of rows, numbers parsed."""
    import csv

    path = run_dir / "history.csv"
    if not path.is_file():
        return []
    rows = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            parsed: dict[str, Any] = {}
            for key, value in row.items():
                try:
                    parsed[key] = int(value) if value.isdigit() else float(value)
                except (TypeError, ValueError, AttributeError):
                    parsed[key] = value
            rows.append(parsed)
    return rows


# ---------------------------------------------------------------------------------------------
# the study


class Study:
    """One study directory and the work to bring it up to date."""

    def __init__(self, config: CompareConfig, stages: Stages | None = None):
        self.config = config
        self.dir = config.out
        self.log = config.log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.stages = stages or default_stages(self.log)
        self.ran: dict[str, list[str]] = {"tune": [], "finetune": [], "export": [], "bench": [], "limited_data": []}

    # ----------------------------------------------------------------- data and split

    def prepare_data(self) -> tuple[Path, Any]:
        """The data path and the study's split (made once, then reused)."""
        from edgexfer.data.sources import discover
        from edgexfer.data.splits import Split, make_split

        c = self.config
        if c.data == "demo":
            from edgexfer.data.synthetic import generate_demo

            data_path = generate_demo(self.dir / "data" / "demo", per_class=c.demo_per_class, size=c.demo_size, seed=c.seed)
        else:
            data_path = Path(c.data).expanduser()
            if not data_path.exists():
                raise EdgexferError(f"data path {data_path} does not exist", "check --data, or pass --data demo")
        split_path = self.dir / "split.json"
        record = {"schema": STUDY_RECORD_SCHEMA, "data": str(data_path.resolve()), "seed": c.seed,
                  "split_fractions": list(c.split_fractions)}
        record_path = self.dir / "study.json"
        if record_path.is_file():
            previous = read_json(record_path, "study record")
            if {k: previous.get(k) for k in record} != record:
                raise EdgexferError(
                    f"{self.dir} holds a study of other data or another split ({previous.get('data')}, seed "
                    f"{previous.get('seed')})", "choose a new --out, or run with the same --data and --seed")
        if split_path.is_file():
            split = Split.load(split_path)
        else:
            from edgexfer.data.scan import scan_source

            # unreadable files are left out of the split once, so no backbone meets them mid-epoch
            scan = scan_source(discover(data_path))
            if scan.skipped:
                self.log(f"skipping {len(scan.skipped)} unreadable file(s); listed in {self.dir / 'skipped.txt'}")
                scan.write_skipped(self.dir / "skipped.txt")
            split = make_split(scan.source, c.split_fractions, c.seed)
            split.save(split_path)
        record["created"] = (read_json(record_path, "study record").get("created") if record_path.is_file() else _now())
        record["backbones"] = sorted(set(c.backbones) | set(self._recorded_backbones()))
        write_json(record_path, record)
        return data_path, split

    def _recorded_backbones(self) -> list[str]:
        root = self.dir / "state"
        return sorted(p.stem for p in root.glob("*.json")) if root.is_dir() else []

    # ----------------------------------------------------------------- one backbone

    def backbone_dirs(self, name: str) -> dict[str, Path]:
        d = self.dir
        return {"run": d / "runs" / name, "export": d / "exported" / name, "bench": d / "benchmarks" / name,
                "tuning": d / "tuning" / name, "state": d / "state" / f"{name}.json", "calibration": d / "calibration"}

    def finetune_fields(self, name: str, data_path: Path, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        fields = dict(self.config.finetune)
        fields.update(overrides or {})
        fields.update({"data": str(data_path), "backbone": name, "seed": fields.get("seed", self.config.seed)})
        return fields

    def run_backbone(self, name: str, data_path: Path, split: Any) -> dict[str, Any]:
        dirs = self.backbone_dirs(name)
        state = _read_state(dirs["state"])
        split_sha = sha256_file(self.dir / "split.json")
        durations: dict[str, float] = dict(state.get("durations_s") or {})

        # tuning: its best hyperparameters become the fine-tune's options
        overrides: dict[str, Any] = {}
        tuning = None
        if self.config.tune is not None:
            tuning = self.tune(name, data_path, dirs, split_sha, state, durations)
            overrides = dict(tuning["best"]["options"])

        # fine-tune
        fields = self.finetune_fields(name, data_path, overrides)
        ft_print = fingerprint(stable_options(fields) | {"split": split_sha})
        recorded = state.get("finetune") or {}
        run = finished_run(dirs["run"])
        if recorded.get("fingerprint") not in (None, ft_print) and dirs["run"].exists():
            raise EdgexferError(
                f"{dirs['run']} was trained with other options than this command's "
                f"(recorded {recorded.get('options')})",
                f"use another --out, or delete {dirs['run']} and {dirs['state']} to train {name} again")
        if run is not None and recorded.get("fingerprint") == ft_print and recorded.get("model_sha256") == run["model_sha256"]:
            self.log(f"{name}: fine-tune finished before, skipped")
        else:
            state["finetune"] = {"fingerprint": ft_print, "options": fields, "started": _now()}
            write_json(dirs["state"], state)
            self.log(f"{name}: fine-tuning")
            start = time.perf_counter()
            self.stages.finetune(self.stages.finetune_config(**fields, out=str(dirs["run"]),
                                                             split=str(self.dir / "split.json")))
            durations["finetune"] = time.perf_counter() - start
            run = finished_run(dirs["run"])
            if run is None:
                raise EdgexferError(f"fine-tuning {name} ended without a finished run in {dirs['run']}",
                                    "run the same command again to resume it")
            if not same_split(dirs["run"], self.dir / "split.json"):
                raise EdgexferError(f"the run {dirs['run']} did not use the study's split {self.dir / 'split.json'}",
                                    f"delete {dirs['run']} and {dirs['state']}, then run the command again")
            state["finetune"].update({"model_sha256": run["model_sha256"], "finished": _now()})
            state["durations_s"] = durations
            write_json(dirs["state"], state)
            self.ran["finetune"].append(name)

        # export FP32, FP16, INT8
        export_options = {"fp16": True, "int8": True, **self.config.export}
        ex_print = fingerprint(stable_options(export_options) | {"model": run["model_sha256"]})
        export_options.setdefault("calibration", dirs["calibration"])  # sets named <backbone>-<size>-<seed>
        manifest = finished_export(dirs["export"], run["model_sha256"])
        if manifest is not None and (state.get("export") or {}).get("fingerprint") == ex_print:
            self.log(f"{name}: export finished before, skipped")
        else:
            _clear(dirs["export"], self.dir)
            state.pop("bench", None)
            self.log(f"{name}: exporting FP32, FP16 and INT8")
            start = time.perf_counter()
            try:
                self.stages.export(self.stages.export_config(run_dir=dirs["run"], out=dirs["export"], **export_options))
            except EdgexferError as error:
                # --engine without TensorRT or a GPU: the ONNX artifacts and manifest are written first,
                # so the study goes on with them and says what is missing
                if type(error).__name__ != "EngineUnavailable":
                    raise
                self.log(f"{name}: {error.line()}")
            durations["export"] = time.perf_counter() - start
            manifest = finished_export(dirs["export"], run["model_sha256"])
            if manifest is None:
                raise EdgexferError(f"the export of {name} in {dirs['export']} is incomplete", "run the same command again")
            state["export"] = {"fingerprint": ex_print, "manifest_sha256": sha256_file(dirs["export"] / "manifest.json"),
                               "finished": _now()}
            state["durations_s"] = durations
            write_json(dirs["state"], state)
            self.ran["export"].append(name)

        # bench
        bench_options = dict(self.config.bench)
        manifest_sha = sha256_file(dirs["export"] / "manifest.json")
        be_print = fingerprint(stable_options(bench_options) | {"manifest": manifest_sha})
        results_path = dirs["bench"] / "results.json"
        recorded = state.get("bench") or {}
        if (results_path.is_file() and recorded.get("fingerprint") == be_print
                and recorded.get("results_sha256") == sha256_file(results_path)):
            self.log(f"{name}: bench finished before, skipped")
        else:
            _clear(dirs["bench"], self.dir)
            self.log(f"{name}: benchmarking every artifact")
            start = time.perf_counter()
            try:
                self.stages.bench(self.stages.bench_config(export_dir=dirs["export"], out=dirs["bench"], **bench_options))
            except GateFailed as failure:  # results are written; the report shows what broke
                self.log(f"{name}: {failure.problem}")
            durations["bench"] = time.perf_counter() - start
            if not results_path.is_file():
                raise EdgexferError(f"the bench of {name} wrote no {results_path}", "run the same command again")
            state["bench"] = {"fingerprint": be_print, "results_sha256": sha256_file(results_path), "finished": _now()}
            state["durations_s"] = durations
            write_json(dirs["state"], state)
            self.ran["bench"].append(name)
        return self.backbone_entry(name, tuning)

    def tune(self, name: str, data_path: Path, dirs: dict[str, Path], split_sha: str, state: dict[str, Any],
             durations: dict[str, float]) -> dict[str, Any]:
        from edgexfer.studies.tuning import is_tuning_worker

        tune = self.config.tune
        assert tune is not None  # only called with --tune
        options = asdict(tune)
        base_fields = self.finetune_fields(name, data_path)
        tu_print = fingerprint(options | {"finetune": stable_options(base_fields),
                                          "split": split_sha})
        record_path = dirs["tuning"].with_suffix(".json")  # tuning/<name>.json beside the KerasTuner project
        started_path = dirs["tuning"].with_suffix(".started.json")
        if record_path.is_file():
            done = read_json(record_path, "tuning record")
            if done.get("fingerprint") == tu_print and done.get("best"):
                self.log(f"{name}: tuning finished before, skipped")
                return done
        # an interrupted search of the same options resumes from KerasTuner's own state; other options start over
        resume = started_path.is_file() and read_json(started_path, "tuning marker").get("fingerprint") == tu_print
        write_json(started_path, {"fingerprint": tu_print, "options": options, "started": _now()})
        self.log(f"{name}: tuning with KerasTuner {tune.tuner}, up to {tune.max_trials} "
                 f"trial(s){' (resuming)' if resume else ''}")
        start = time.perf_counter()
        record = self.stages.tune(name=name, split_path=self.dir / "split.json", finetune_fields=base_fields,
                                  options=self.config.tune, project_dir=dirs["tuning"], log=self.log,
                                  overwrite=not resume)
        if is_tuning_worker():
            return record
        durations["tune"] = time.perf_counter() - start
        record["fingerprint"] = tu_print
        record["seconds"] = durations["tune"]
        write_json(record_path, record)
        self.ran["tune"].append(name)
        return record

    def backbone_entry(self, name: str, tuning: dict[str, Any] | None) -> dict[str, Any]:
        from edgexfer.report.study_report import flatten_bench_rows

        dirs = self.backbone_dirs(name)
        state = _read_state(dirs["state"])
        run = read_json(dirs["run"] / "run.json", "run record")
        manifest = read_json(dirs["export"] / "manifest.json", "export manifest")
        bench = read_json(dirs["bench"] / "results.json", "bench results")
        metrics_path = dirs["run"] / "metrics.json"
        metrics = read_json(metrics_path, "run metrics") if metrics_path.is_file() else {}
        rows = flatten_bench_rows(name, bench)
        entry = {
            "name": name, "status": "done", "error": None,
            "run_dir": _rel(dirs["run"], self.dir), "export_dir": _rel(dirs["export"], self.dir),
            "bench_dir": _rel(dirs["bench"], self.dir),
            "image_size": run.get("image_size"), "weights": run.get("weights"), "head": run.get("head"),
            "model_sha256": run.get("model_sha256"),
            "options": (state.get("finetune") or {}).get("options"),
            "history": read_history(dirs["run"]),
            "test_metrics": {k: metrics.get(k) for k in ("accuracy", "loss", "precision", "recall", "f1", "auc",
                                                         "confusion_matrix", "n")},
            "export": [{"name": a.get("name"), "precision": a.get("precision"), "target": a.get("target"),
                        "file": a.get("file"), "size_bytes": a.get("size_bytes"), "parity": a.get("parity"),
                        "excluded_nodes": len(a.get("excluded_nodes") or [])} for a in manifest.get("artifacts", [])],
            "skipped_runtimes": bench.get("skipped", []),
            "durations_s": state.get("durations_s") or {},
            "machine": bench.get("machine"),
        }
        return {"entry": entry, "rows": rows, "tuning": tuning}

    # ----------------------------------------------------------------- limited data

    def limited_data(self, data_path: Path, split: Any, entries: dict[str, dict[str, Any]]) -> dict[str, Any]:
        from edgexfer.studies.limited_data import run_limited_data

        c = self.config
        backbones = [b for b in c.backbones if b in entries]
        transfer = {b: self.stages.resolve_weights(b, c.finetune.get("weights")) for b in backbones}
        root = self.dir / "limited_data"

        def options_for(point) -> dict[str, Any]:
            tuned = (entries.get(point.backbone) or {}).get("tuning")
            overrides = dict(tuned["best"]["options"]) if tuned else {}
            fields = self.finetune_fields(point.backbone, data_path, overrides)
            fields["weights"] = point.weights
            return fields

        def reuse(point):
            if point.fraction != 1 or point.weights != transfer[point.backbone] or point.backbone not in entries:
                return None
            metrics_path = self.backbone_dirs(point.backbone)["run"] / "metrics.json"
            return read_json(metrics_path, "run metrics") if metrics_path.is_file() else None

        def train_point(point, split_file: Path) -> dict[str, Any]:
            fields = options_for(point)
            marker = point.run_dir.parent / f"{point.run_dir.name}.point.json"  # beside: the run dir is the trainer's
            wanted = fingerprint(stable_options(fields) | {"split": sha256_file(split_file)})
            if finished_run(point.run_dir) is not None and marker.is_file() and read_json(marker).get("fingerprint") == wanted:
                self.log(f"  finished before, skipped ({point.run_dir})")
            else:
                if point.run_dir.exists() and not (marker.is_file() and read_json(marker).get("fingerprint") == wanted):
                    _clear(point.run_dir, self.dir)  # a point of other options: the study owns these runs
                write_json(marker, {"fingerprint": wanted, "options": fields})
                self.stages.finetune(self.stages.finetune_config(**fields, out=str(point.run_dir), split=str(split_file)))
                self.ran["limited_data"].append(f"{point.backbone}/{point.weights}/{point.fraction:g}")
            return read_json(point.run_dir / "metrics.json", "run metrics")

        return run_limited_data(backbones, c.data_fractions or [], transfer, split, root, c.seed, train_point,
                                reuse=reuse, log=self.log)

    # ----------------------------------------------------------------- everything

    def preflight(self) -> None:
        """Build each stage's config once with placeholder paths, so a bad option fails now, in one
        line, and not after hours of training the first backbone."""
        placeholder = self.dir / "preflight"
        configs = [
            self.stages.finetune_config(**self.finetune_fields(self.config.backbones[0], Path(self.config.data)),
                                        out=str(placeholder), split=str(placeholder / "split.json")),
            self.stages.export_config(run_dir=placeholder, out=placeholder, **{"fp16": True, "int8": True,
                                                                                **self.config.export}),
            self.stages.bench_config(export_dir=placeholder, out=placeholder, **self.config.bench),
        ]
        for config in configs:
            validate = getattr(config, "validate", None)
            if callable(validate):
                validate()

    def run(self) -> StudyOutcome:
        c = self.config
        self.stages.check_backbones(c.backbones, c.finetune.get("image_size"))
        self.preflight()
        worker = False
        if c.tune is not None:
            from edgexfer.studies.tuning import is_tuning_worker

            worker = is_tuning_worker()
        # one study writes a folder at a time; KerasTuner workers share the chief's folder by design
        lock = None if worker else lock_folder(self.dir, "edgexfer compare")
        try:
            return self._run(c)
        finally:
            if lock is not None:
                lock.release()

    def _run(self, c: CompareConfig) -> StudyOutcome:
        from edgexfer.report.study_report import STUDY_SCHEMA, refresh_decisions, render_study_report

        self.dir.mkdir(parents=True, exist_ok=True)
        data_path, split = self.prepare_data()
        done: dict[str, dict[str, Any]] = {}
        failures: dict[str, str] = {}
        if c.tune is not None:
            from edgexfer.studies.tuning import is_tuning_worker

            if is_tuning_worker():  # a KerasTuner worker runs trials for the chief, nothing else
                for name in c.backbones:
                    dirs = self.backbone_dirs(name)
                    self.tune(name, data_path, dirs, sha256_file(self.dir / "split.json"), {}, {})
                # the chief collects the trials and goes on to fine-tune, export and bench
                return StudyOutcome(self.dir, {"worker": os.environ.get("KERASTUNER_TUNER_ID")}, {}, self.ran)
        for i, name in enumerate(c.backbones, 1):
            self.log(f"[{i}/{len(c.backbones)}] {name}")
            try:
                done[name] = self.run_backbone(name, data_path, split)
            except GateFailed:
                raise
            except EdgexferError as error:
                failures[name] = error.line()
                self.log(f"{name}: failed: {error.line()}")
        limited = self.limited_data(data_path, split, done) if c.data_fractions else None

        entries = []
        for name in c.backbones:
            if name in done:
                entries.append(done[name]["entry"])
            else:
                entries.append({"name": name, "status": "failed", "error": failures.get(name),
                                **{k: _rel(p, self.dir) for k, p in self.backbone_dirs(name).items()
                                   if k in ("run", "export", "bench")}})
        counts = {name: len(split.samples(name)) for name in split.names}
        machine = next((e.get("machine") for e in entries if e.get("machine")), None)
        from edgexfer.versions import library_versions

        results = {
            "schema": STUDY_SCHEMA,
            "title": c.title or f"Backbone comparison: {'demo data' if c.data == 'demo' else data_path.name}",
            "created": _now(),
            "study_dir": str(self.dir.resolve()),
            "data": {"path": str(data_path), "source": split.source.describe(), "classes": split.classes,
                     "split_file": "split.json", "split_sha256": sha256_file(self.dir / "split.json"),
                     "counts": counts, "seed": c.seed},
            "options": {"backbones": c.backbones, "finetune": c.finetune, "export": stable_options(c.export),
                        "bench": stable_options(c.bench),
                        "tune": asdict(c.tune) if c.tune else None, "data_fractions": c.data_fractions},
            "latency_budget_ms": c.latency_budget_ms,
            "machine": _machine_summary(machine),
            "versions": {k: v for k, v in library_versions().items() if v},
            "backbones": entries,
            "results": [row for name in c.backbones if name in done for row in done[name]["rows"]],
            "tuning": {name: done[name]["tuning"] for name in c.backbones if name in done and done[name]["tuning"]} or None,
            "limited_data": limited,
        }
        refresh_decisions(results)
        write_json(self.dir / "results.json", results)
        report = render_study_report(self.dir, results)
        outcome = StudyOutcome(self.dir, results, report, self.ran)
        if failures:
            raise EdgexferError(
                f"{len(failures)} of {len(c.backbones)} backbone(s) failed ({'; '.join(f'{k}: {v}' for k, v in failures.items())})",
                f"the report in {self.dir} shows the others; fix the cause and run the same command again to resume")
        return outcome


def _machine_summary(machine: dict[str, Any] | None) -> dict[str, Any]:
    if not machine:
        from edgexfer.versions import machine_info

        return dict(machine_info())
    gpu = machine.get("gpu")
    return {"processor": machine.get("cpu") or machine.get("processor"), "cores": machine.get("cores"),
            "cores_usable": machine.get("cores_usable"), "platform": machine.get("platform"),
            "gpu": gpu.get("name") if isinstance(gpu, dict) else gpu}


def run_compare(config: CompareConfig, stages: Stages | None = None) -> StudyOutcome:
    """Fine-tune, export and bench every backbone of ``config`` on one split; write results and report."""
    return Study(config, stages).run()


def known_backbones(names: Sequence[str], image_size: int | None = None) -> None:
    """Refuse, before any work starts, an unknown backbone (the registry names the closest ones) or an
    image size below a backbone's minimum."""
    from edgexfer.backbones.registry import get_backbone

    for name in names:
        get_backbone(name).check_image_size(image_size)


def resolved_weights(backbone: str, weights: Any) -> str:
    """What the trainer will load for ``weights`` on ``backbone`` (None: ImageNet where it exists)."""
    from edgexfer.backbones import get_backbone, resolve_weights

    return resolve_weights(get_backbone(backbone), weights)

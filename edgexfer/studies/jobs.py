"""The work of a study as independent, serializable jobs: a dataclass of configs and paths in, a result out.

- ``BackboneJob``: one backbone's chain, tuning (with ``--tune``) -> fine-tune -> export -> bench.
- ``PointJob``: one learning-curve point (``--data-fractions``): one fine-tune on a subset.

A job reads and writes only inside the study folder, through absolute paths, and keeps its own
state file, so it runs the same in the driver's process or in a Ray worker on another machine
(``edgexfer.studies.executors``). ``run_job`` never raises an ``EdgexferError``: a job that fails
comes back as a ``JobResult`` saying which job and why, so the others go on.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from edgexfer.config import FinetuneConfig
from edgexfer.contracts.bench import load_results
from edgexfer.contracts.manifest import read_manifest_record
from edgexfer.contracts.run import load_run, read_metrics
from edgexfer.contracts.study import BackboneDeploy, study_rows
from edgexfer.errors import EdgexferError, GateFailed, GateInconclusive
from edgexfer.evaluate.bench import BenchConfig
from edgexfer.export.config import ExportConfig
from edgexfer.export.tensorrt import EngineUnavailable
from edgexfer.io import read_json, sha256_file, write_json
from edgexfer.studies.limited_data import LimitedDataPoint
from edgexfer.studies.resumable import Stage, StateFile, changed_options, fingerprint, run_stage
from edgexfer.studies.stages import (
    Stages,
    TuneOptions,
    default_stages,
    finished_export,
    finished_run,
    read_history,
    same_split,
)

# fields that name where a stage reads or writes, or how it talks: not what it computes
FINETUNE_PATHS = ("data", "out", "split", "verbose", "tensorboard")
EXPORT_PATHS = ("run_dir", "out", "progress")
BENCH_PATHS = ("export_dir", "out", "progress", "log")


def finetune_fingerprint(config: FinetuneConfig, split_file: Path) -> tuple[str, dict[str, Any]]:
    options = changed_options(config, skip=FINETUNE_PATHS, keep=("backbone", "seed"))
    return fingerprint(options | {"split": sha256_file(split_file)}), options


@dataclass
class JobResult:
    """What a job hands back to the study: its value, which stages ran, or why it failed."""

    key: str  # "resnet50", or "resnet50/imagenet/0.25" for a learning-curve point
    value: Any = None
    ran: dict[str, list[str]] = field(default_factory=dict)  # stage -> keys it ran for (not skipped)
    error: str | None = None  # one line: the job failed

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class BackboneJob:
    """One backbone of a study: everything it needs, with absolute paths."""

    name: str
    study_dir: Path
    split_file: Path
    finetune: FinetuneConfig  # data, backbone, out (runs/<name>) and split already set
    export: ExportConfig  # run_dir, out (exported/<name>) and calibration already set
    bench: BenchConfig  # export_dir and out (benchmarks/<name>) already set
    tune: TuneOptions | None = None

    @property
    def key(self) -> str:
        return self.name

    @property
    def state_path(self) -> Path:
        return self.study_dir / "state" / f"{self.name}.json"

    @property
    def tuning_dir(self) -> Path:
        return self.study_dir / "tuning" / self.name

    def run(self, stages: Stages, log: Callable[[str], None]) -> JobResult:
        name, study = self.name, self.study_dir
        state = StateFile.load(self.state_path)
        result = JobResult(name)
        ran = result.ran
        tuning = None
        finetune = self.finetune
        if self.tune is not None:
            tuning = self.run_tuning(stages, state, log)
            ran.setdefault("tune", []).extend([name] if tuning.ran else [])
            finetune = replace(finetune, **tuning.value["best"]["options"])

        # fine-tune: a finished run trained otherwise is refused, not silently retrained
        run_dir = Path(finetune.out)
        ft_print, ft_options = finetune_fingerprint(finetune, self.split_file)

        def run_output() -> tuple[dict[str, Any], str] | None:
            run = finished_run(run_dir)
            return None if run is None else (run, str(run["model_sha256"]))

        def train(resume: bool) -> None:
            stages.finetune(finetune)
            if finished_run(run_dir) is not None and not same_split(run_dir, self.split_file):
                raise EdgexferError(f"the run {run_dir} did not use the study's split {self.split_file}",
                                    f"delete {run_dir} and {self.state_path}, then run the command again")

        if state.legacy is not None and not state.stage("finetune"):
            adopt_legacy_run(state, finetune, self.split_file, run_output(), log)
        recorded = state.stage("finetune").get("options")
        trained = run_stage(Stage(
            "finetune", f"{name}: fine-tune", ft_print, ft_options | {"backbone": name}, run_output, train,
            clear=run_dir, resumes=True,
            refuse_change=(f"{run_dir} was trained with other options than this command's (recorded {recorded})",
                           f"use another --out, or delete {run_dir} and {self.state_path} to train {name} again"),
        ), state, study, log)
        run = trained.value
        if trained.ran:
            ran.setdefault("finetune", []).append(name)

        # export FP32, FP16, INT8 (and TensorRT engines with --engine)
        export = self.export
        export_dir = Path(export.export_dir)
        ex_options = changed_options(export, skip=EXPORT_PATHS + (() if export.calibration != self.calibration_dir
                                                                    else ("calibration",)))

        def export_output() -> tuple[dict[str, Any], str] | None:
            manifest = finished_export(export_dir, str(run["model_sha256"]))
            return None if manifest is None else (manifest, sha256_file(export_dir / "manifest.json"))

        exported = run_stage(Stage(
            "export", f"{name}: export", fingerprint(ex_options | {"model": run["model_sha256"]}), ex_options,
            export_output, lambda resume: stages.export(export), clear=export_dir, redo=trained.ran,
            # --engine without TensorRT or a GPU: the ONNX artifacts and manifest are written first,
            # so the study goes on with them and says what is missing
            tolerate=(EngineUnavailable,),
        ), state, study, log)
        if exported.ran:
            ran.setdefault("export", []).append(name)

        # bench every artifact; a broken gate is a result (the report shows it), not a failure
        bench = replace(self.bench, log=log)
        assert bench.out is not None
        results_path = bench.out / "results.json"
        be_options = changed_options(bench, skip=BENCH_PATHS)

        def bench_output() -> tuple[None, str] | None:
            return (None, sha256_file(results_path)) if results_path.is_file() else None

        benched = run_stage(Stage(
            "bench", f"{name}: bench", fingerprint(be_options | {"manifest": sha256_file(export_dir / "manifest.json")}),
            be_options, bench_output, lambda resume: stages.bench(bench), clear=bench.out, tolerate=(GateFailed, GateInconclusive),
            redo=exported.ran,
        ), state, study, log)
        if benched.ran:
            ran.setdefault("bench", []).append(name)
        result.value = backbone_entry(self, tuning.value if tuning else None)
        return result

    @property
    def calibration_dir(self) -> Path:
        return self.study_dir / "calibration"

    def run_tuning(self, stages: Stages, state: StateFile, log: Callable[[str], None]) -> Any:
        """KerasTuner's search; its best hyperparameters become the fine-tune's options."""
        assert self.tune is not None
        options = asdict(self.tune)
        base_fields = asdict(self.finetune)
        ft_print, _ = finetune_fingerprint(self.finetune, self.split_file)
        record_path = self.tuning_dir.with_suffix(".json")  # tuning/<name>.json beside the KerasTuner project

        def output() -> tuple[dict[str, Any], str] | None:
            if not record_path.is_file():
                return None
            record = read_json(record_path, "tuning record")
            return (record, sha256_file(record_path)) if isinstance(record, dict) and record.get("best") else None

        def search(resume: bool) -> None:
            # an interrupted search of the same options resumes from KerasTuner's own state
            record = stages.tune(name=self.name, split_path=self.split_file, finetune_fields=base_fields,
                                 options=self.tune, project_dir=self.tuning_dir, log=log, overwrite=not resume)
            write_json(record_path, record)

        tune = self.tune
        return run_stage(Stage(
            "tune", f"{self.name}: tuning with KerasTuner {tune.tuner}, up to {tune.max_trials} trial(s)",
            fingerprint(options | {"finetune": ft_print}), options, output, search, resumes=True,
        ), state, self.study_dir, log)


def adopt_legacy_run(state: StateFile, config: FinetuneConfig, split_file: Path,
                     found: tuple[dict[str, Any], str] | None, log: Callable[[str], None]) -> None:
    """A fine-tune an earlier version of the study finished (``edgexfer.study-state/1``) is kept, not retrained,
    when its recorded options give this command's fingerprint and its model is the one it recorded; a run
    recorded with other options is refused like any other (the refusal names them).

    The earlier state recorded the options given (plus data, backbone and seed); rebuilt on the defaults
    they make the config that run was trained with. Export and bench, minutes rather than hours, are redone.
    """

    old = (state.legacy or {}).get("finetune") or {}
    options = old.get("options")
    if found is None or not isinstance(options, dict):
        return  # no finished run to keep
    known = set(FinetuneConfig.option_names()) - set(FINETUNE_PATHS)
    wanted, recorded = finetune_fingerprint(config, split_file)
    try:
        then = FinetuneConfig(**{k: v for k, v in options.items() if k in known},
                              data=config.data, out=config.out, split=config.split)
        same = finetune_fingerprint(then, split_file)[0] == wanted
    except (EdgexferError, TypeError):
        same = False
    if same and old.get("finished") and old.get("model_sha256") == found[1]:
        state.adopt("finetune", wanted, recorded | {"backbone": config.backbone}, found[1], old.get("finished"))
        log(f"{config.backbone}: fine-tune recorded by an earlier version of edgexfer, kept")
    else:  # trained otherwise: the stage refuses to discard it
        state.data["finetune"] = {"fingerprint": f"study-state/1 {old.get('fingerprint')}", "options": options}


def backbone_entry(job: BackboneJob, tuning: dict[str, Any] | None) -> dict[str, Any]:
    """The study's record of one finished backbone (``backbones[]`` entry, bench rows, tuning)."""

    name, study = job.name, job.study_dir
    run_dir, export_dir = Path(job.finetune.out), Path(job.export.export_dir)
    assert job.bench.out is not None
    bench_dir = job.bench.out
    state = StateFile.load(job.state_path)

    run = load_run(run_dir, require_files=False).record
    manifest = read_manifest_record(export_dir)
    bench = load_results(bench_dir)
    metrics_path = run_dir / "metrics.json"
    metrics = read_metrics(metrics_path).to_dict() if metrics_path.is_file() else {}
    entry = {
        "name": name, "status": "done", "error": None,
        "run_dir": rel(run_dir, study), "export_dir": rel(export_dir, study), "bench_dir": rel(bench_dir, study),
        "image_size": run.get("image_size"), "weights": run.get("weights"), "head": run.get("head"),
        "model_sha256": run.get("model_sha256"),
        "options": state.stage("finetune").get("options"),
        "history": read_history(run_dir),
        "test_metrics": {k: metrics.get(k) for k in ("accuracy", "loss", "precision_macro", "recall_macro", "f1", "auc",
                                                     "confusion_matrix", "n")},
        "export": [{"name": a.get("name"), "precision": a.get("precision"), "target": a.get("target"),
                    "file": a.get("file"), "size_bytes": a.get("size_bytes"), "parity": a.get("parity"),
                    "excluded_nodes": len(a.get("excluded_nodes") or [])} for a in manifest.get("artifacts", [])],
        "skipped_runtimes": bench.get("skipped", []),
        "durations_s": state.data.get("durations_s") or {},
        "machine": bench.get("machine"),
        "deploy": BackboneDeploy.from_bench(bench).to_dict(),  # what its bench says to deploy (``recommended``)
    }
    return {"entry": entry, "rows": study_rows(name, bench), "tuning": tuning}


@dataclass
class PointJob:
    """One learning-curve point: a fine-tune on a subset of the train split, with or without transfer."""

    point: LimitedDataPoint
    study_dir: Path
    split_file: Path  # the subset's split
    finetune: FinetuneConfig  # weights, out (the point's run folder) and split already set

    @property
    def key(self) -> str:
        p = self.point
        return f"{p.backbone}/{p.weights}/{p.fraction:g}"

    def run(self, stages: Stages, log: Callable[[str], None]) -> JobResult:
        run_dir = Path(self.finetune.out)
        # the run folder is the trainer's: the point's state lies beside it
        state = StateFile.load(run_dir.parent / f"{run_dir.name}.point.json")
        wanted, options = finetune_fingerprint(self.finetune, self.split_file)

        def output() -> tuple[dict[str, Any], str] | None:
            run = finished_run(run_dir)
            if run is None or not (run_dir / "metrics.json").is_file():
                return None

            return read_metrics(run_dir).to_dict(), str(run["model_sha256"])

        outcome = run_stage(Stage("finetune", f"{self.key}: fine-tune", wanted, options, output,
                                  lambda resume: stages.finetune(self.finetune), clear=run_dir, resumes=True),
                            state, self.study_dir, log)
        return JobResult(self.key, outcome.value, {"limited_data": [self.key]} if outcome.ran else {})


Job = BackboneJob | PointJob


def run_job(job: Job, stages: Stages | None = None, log: Callable[[str], None] | None = None) -> JobResult:
    """Run one job; an ``EdgexferError`` comes back as a failed result, the same whichever executor runs it."""
    if log is None:
        def log(line: str) -> None:
            print(line, file=sys.stderr, flush=True)
    if stages is None:
        stages = default_stages(log)
    try:
        return job.run(stages, log)
    except EdgexferError as error:  # a broken gate is tolerated by the bench stage: it never gets here
        log(f"{job.key}: failed: {error.line()}")
        return JobResult(job.key, error=error.line())


def rel(path: Path, root: Path) -> str:
    try:
        return path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return str(path)

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

The work is a list of jobs (``edgexfer.studies.jobs``: one per backbone, then one per learning-curve
point) that an executor runs (``edgexfer.studies.executors``: in this process, or as Ray tasks);
this module makes the split, describes the jobs, and merges their results into one report.

Resumable (``edgexfer.studies.resumable``): a stage is skipped when its output is complete, matches
its recorded hash, and was made from the same options and the same input (run.json ↔ model file,
manifest ↔ run, bench results ↔ manifest). A changed export or bench option redoes only that stage
and what follows; a changed training option is refused, since retraining would silently discard a
finished run.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, cast

from edgexfer._folders import refuse_links_inside, refuse_overlap
from edgexfer.config import FinetuneConfig
from edgexfer.contracts.run import read_metrics
from edgexfer.contracts.study import SCHEMA as STUDY_SCHEMA
from edgexfer.data.scan import scan_source
from edgexfer.data.sources import discover
from edgexfer.data.splits import Split, make_split
from edgexfer.data.synthetic import generate_demo
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.bench import BenchConfig
from edgexfer.export.config import ExportConfig
from edgexfer.io import lock_folder, read_json, sha256_file, write_json
from edgexfer.options import make_config
from edgexfer.studies.executors import ExecutorConfig, make_executor
from edgexfer.studies.jobs import (
    BENCH_PATHS,
    EXPORT_PATHS,
    FINETUNE_PATHS,
    BackboneJob,
    JobResult,
    PointJob,
    rel,
)
from edgexfer.studies.limited_data import (
    LimitedDataPoint,
    limited_data_record,
    plan_limited_data,
    point_config,
)
from edgexfer.studies.render import render_study
from edgexfer.studies.resumable import STATE_SCHEMA, changed_options, fingerprint, now
from edgexfer.studies.stages import Stages, TuneOptions, default_stages
from edgexfer.studies.tuning import is_tuning_worker, tuning_role
from edgexfer.versions import library_versions, machine_info

STUDY_RECORD_SCHEMA = "edgexfer.study-record/1"
__all__ = ["STATE_SCHEMA", "CompareConfig", "Stages", "Study", "StudyOutcome", "TuneOptions", "default_stages",
           "fingerprint", "run_compare"]


# options of each stage that the study decides per backbone
_STUDY_DECIDES = {"fine-tune": ("data", "backbone", "out", "split"), "export": ("run_dir", "out"),
                  "bench": ("export_dir", "out")}


@dataclass
class CompareConfig:
    """Options of one study.

    ``finetune``, ``export`` and ``bench`` are the FinetuneConfig, ExportConfig and BenchConfig every
    backbone shares; the study sets their paths (data, backbone, run, export and bench folders)
    per backbone. Each may be given as a mapping of that config's field names: an unknown name is
    refused in one line, as everywhere else. Bad values are refused here, before any work.
    """

    data: str  # a data path or "demo"
    backbones: list[str]
    out: Path
    # each a config object, a mapping of its fields, or None (its defaults; export: FP32, FP16 and INT8);
    # always the config object after __post_init__ (``finetune_config`` and friends give it typed)
    finetune: FinetuneConfig | Mapping[str, Any] | None = None
    export: ExportConfig | Mapping[str, Any] | None = None
    bench: BenchConfig | Mapping[str, Any] | None = None
    latency_budget_ms: float | None = None
    tune: TuneOptions | None = None
    data_fractions: list[float] | None = None
    split_fractions: tuple[float, float, float] = (0.7, 0.2, 0.1)
    seed: int = 0
    demo_per_class: int = 100
    demo_size: int = 128
    title: str | None = None
    executor: ExecutorConfig = field(default_factory=ExecutorConfig)  # who runs the jobs (local or Ray)
    log: Callable[[str], None] | None = None

    def __post_init__(self) -> None:
        self.out = Path(self.out)
        # a study folder inside its data folder would become training data; one holding it could delete it
        refuse_overlap(self.out, {"data": None if str(self.data) == "demo" else self.data})
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
        if isinstance(self.executor, Mapping):
            self.executor = ExecutorConfig(**self.executor)
        self._stage_configs()

    def _stage_configs(self) -> None:
        """The three stage configs as objects (from mappings or defaults), checked now: a bad option
        fails in one line before the first backbone trains for hours."""

        first = self.backbones[0]
        self.finetune = _stage_config(FinetuneConfig, self.finetune, "fine-tune", {"seed": self.seed}, {
            "data": str(self.data), "backbone": first, "out": str(self.out / "runs" / first)})
        self.export = _stage_config(ExportConfig, self.export, "export", {"fp16": True, "int8": True}, {
            "run_dir": self.out / "runs" / first, "out": self.out / "exported" / first})
        self.export_config.validate()
        self.bench = _stage_config(BenchConfig, self.bench, "bench", {}, {
            "export_dir": self.out / "exported" / first, "out": self.out / "benchmarks" / first})

    # typed views (set by __post_init__)
    @property
    def finetune_config(self) -> FinetuneConfig:
        assert isinstance(self.finetune, FinetuneConfig)
        return self.finetune

    @property
    def export_config(self) -> ExportConfig:
        assert isinstance(self.export, ExportConfig)
        return self.export

    @property
    def bench_config(self) -> BenchConfig:
        assert isinstance(self.bench, BenchConfig)
        return self.bench


def _stage_config(config_class: type, given: Any, stage: str, defaults: dict[str, Any], paths: dict[str, Any]) -> Any:
    """``given`` (a config, a mapping of its fields, or None) as a ``config_class`` with the study's paths."""

    if given is None or isinstance(given, Mapping):
        options = dict(given or {})
        decided = [k for k in _STUDY_DECIDES[stage] if k in options]
        if decided:
            raise EdgexferError(f"the study sets the {stage} option(s) {', '.join(decided)} for each backbone",
                                "leave them out")
        return make_config(config_class, None, {**defaults, **options, **paths}, stage)
    if not isinstance(given, config_class):
        raise EdgexferError(f"the study's {stage} options are a {type(given).__name__}, not a {config_class.__name__}",
                            f"pass a {config_class.__name__} or a mapping of its fields")
    return replace(cast(Any, given), **paths)


@dataclass
class StudyOutcome:
    out_dir: Path
    results: dict[str, Any]
    report: dict[str, Path]
    ran: dict[str, list[str]]  # stage -> backbones (or learning-curve points) it ran for (not skipped)


# ---------------------------------------------------------------------------------------------
# the study


class Study:
    """One study directory and the work to bring it up to date."""

    def __init__(self, config: CompareConfig, stages: Stages | None = None):
        self.config = config
        self.dir = config.out.absolute()  # jobs get absolute paths: a Ray worker has another working folder
        self.log = config.log or (lambda line: print(line, file=sys.stderr, flush=True))
        self.custom_stages = stages is not None
        self.stages = stages or default_stages(self.log)
        self.ran: dict[str, list[str]] = {"tune": [], "finetune": [], "export": [], "bench": [], "limited_data": []}
        self.jobs_run = 0

    # ----------------------------------------------------------------- data and split

    def prepare_data(self) -> tuple[Path, Any]:
        """The data path and the study's split (made once, then reused)."""

        c = self.config
        if c.data == "demo":
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
            # unreadable files are left out of the split once, so no backbone meets them mid-epoch
            scan = scan_source(discover(data_path))
            if scan.skipped:
                self.log(f"skipping {len(scan.skipped)} unreadable file(s); listed in {self.dir / 'skipped.txt'}")
                scan.write_skipped(self.dir / "skipped.txt")
            split = make_split(scan.source, c.split_fractions, c.seed)
            split.save(split_path)
        record["created"] = (read_json(record_path, "study record").get("created") if record_path.is_file() else now())
        record["backbones"] = sorted(set(c.backbones) | set(self._recorded_backbones()))
        write_json(record_path, record)
        return data_path, split

    def _recorded_backbones(self) -> list[str]:
        root = self.dir / "state"
        return sorted(p.stem for p in root.glob("*.json")) if root.is_dir() else []

    # ----------------------------------------------------------------- the jobs

    def backbone_job(self, name: str, data_path: Path) -> BackboneJob:
        c, d = self.config, self.dir
        run_dir, export_dir = d / "runs" / name, d / "exported" / name
        export = c.export_config
        return BackboneJob(
            name=name, study_dir=d, split_file=d / "split.json",
            finetune=replace(c.finetune_config, data=str(data_path), backbone=name, out=str(run_dir),
                             split=str(d / "split.json")),
            # calibration sets are shared by backbones of one image size: calibration/cal-<split>-<HxW>-...
            export=replace(export, run_dir=run_dir, out=export_dir,
                           calibration=export.calibration if export.calibration is not None else d / "calibration"),
            bench=replace(c.bench_config, export_dir=export_dir, out=d / "benchmarks" / name, log=None),
            tune=c.tune)

    def run_jobs(self, jobs: Sequence[BackboneJob | PointJob], executor: Any) -> dict[str, JobResult]:
        """Every job through the executor; results by job key, ``self.ran`` updated."""
        results = {}
        for result in executor.map(jobs, self.stages if self.custom_stages or executor.in_process else None,
                                   self.log):
            results[result.key] = result
            self.jobs_run += 1
            for stage, keys in result.ran.items():
                self.ran.setdefault(stage, []).extend(keys)
        return results

    # ----------------------------------------------------------------- limited data

    def limited_data(self, data_path: Path, split: Any, entries: dict[str, dict[str, Any]], executor: Any,
                     failures: dict[str, str]) -> dict[str, Any]:
        """Learning-curve points as jobs: planned once, run through the executor, then assembled."""

        c = self.config
        backbones = [b for b in c.backbones if b in entries]
        transfer = {b: self.stages.resolve_weights(b, c.finetune_config.weights) for b in backbones}
        root = self.dir / "limited_data"

        def reuse(point: LimitedDataPoint) -> dict[str, Any] | None:
            if point.fraction != 1 or point.weights != transfer[point.backbone] or point.backbone not in entries:
                return None

            metrics_path = self.dir / "runs" / point.backbone / "metrics.json"
            return read_metrics(metrics_path).to_dict() if metrics_path.is_file() else None

        plan = plan_limited_data(backbones, c.data_fractions or [], transfer, split, root, c.seed)
        reused: dict[str, dict[str, Any]] = {}
        jobs: list[PointJob] = []
        for point in plan.points:
            metrics = reuse(point)
            if metrics is not None:
                self.log(f"{plan.label(point)}: same as the full comparison run, reused")
                reused[_point_key(point)] = metrics
                continue
            tuned = (entries.get(point.backbone) or {}).get("tuning")
            base = self.backbone_job(point.backbone, data_path).finetune
            config = point_config(base, point, plan.split_file(point), dict(tuned["best"]["options"]) if tuned else None)
            jobs.append(PointJob(point, self.dir, plan.split_file(point), config))
        done = self.run_jobs(jobs, executor)
        for key, result in done.items():
            if not result.ok:
                failures[f"learning-curve point {key}"] = str(result.error)

        def measured(point: LimitedDataPoint) -> tuple[dict[str, Any], str] | None:
            key = _point_key(point)
            if key in reused:
                return reused[key], "comparison run"
            result = done.get(key)
            return (result.value, _rel(point.run_dir, self.dir)) if result is not None and result.ok else None

        return limited_data_record(plan, measured)

    # ----------------------------------------------------------------- everything

    def run(self) -> StudyOutcome:
        c = self.config
        self.stages.check_backbones(c.backbones, c.finetune_config.image_size)
        worker = False
        if c.tune is not None:
            tuning_role()  # a malformed KERASTUNER_* setting: one line before anything is written
            worker = is_tuning_worker()
        # a KerasTuner worker runs its trials here, for the chief; only the chief hands jobs to an executor
        executor = make_executor(ExecutorConfig() if worker else c.executor)
        refuse_links_inside(self.dir)  # the study is written in place: never through a link to somewhere else
        executor.start(c.out)  # Ray imported and reached before anything is written
        try:
            # one study writes a folder at a time; KerasTuner workers share the chief's folder by design
            lock = None if worker else lock_folder(self.dir, "edgexfer compare")
            try:
                return self._run(c, executor, worker)
            finally:
                if lock is not None:
                    lock.release()
        finally:
            executor.stop()

    def _run(self, c: CompareConfig, executor: Any, worker: bool) -> StudyOutcome:
        created = not self.dir.exists()
        self.dir.mkdir(parents=True, exist_ok=True)
        data_path, split = self.prepare_data()
        try:
            executor.check_visible(self.dir)
        except EdgexferError:
            if created:  # nothing of this study is left behind
                shutil.rmtree(self.dir, ignore_errors=True)
            raise
        jobs = [self.backbone_job(name, data_path) for name in c.backbones]
        if worker:  # a KerasTuner worker runs trials for the chief, nothing else
            for job in jobs:
                self.stages.tune(name=job.name, split_path=job.split_file, finetune_fields=asdict(job.finetune),
                                 options=c.tune, project_dir=job.tuning_dir, log=self.log, overwrite=False)
            # the chief collects the trials and goes on to fine-tune, export and bench
            return StudyOutcome(self.dir, {"worker": os.environ.get("KERASTUNER_TUNER_ID")}, {}, self.ran)
        finished = self.run_jobs(jobs, executor)
        done = {name: r.value for name, r in finished.items() if r.ok}
        failures = {name: str(r.error) for name, r in finished.items() if not r.ok}
        limited = self.limited_data(data_path, split, done, executor, failures) if c.data_fractions else None

        entries = []
        for name in c.backbones:
            if name in done:
                entries.append(done[name]["entry"])
            else:
                entries.append({"name": name, "status": "failed", "error": failures.get(name),
                                **{k: f"{folder}/{name}" for k, folder in (("run", "runs"), ("export", "exported"),
                                                                          ("bench", "benchmarks"))}})
        counts = {name: len(split.samples(name)) for name in split.names}
        machine = next((e.get("machine") for e in entries if e.get("machine")), None)

        results = {
            "schema": STUDY_SCHEMA,
            "title": c.title or f"Backbone comparison: {'demo data' if c.data == 'demo' else data_path.name}",
            "created": now(),
            "study_dir": str(self.dir.resolve()),
            "data": {"path": str(data_path), "source": split.source.describe(), "classes": split.classes,
                     "split_file": "split.json", "split_sha256": sha256_file(self.dir / "split.json"),
                     "counts": counts, "seed": c.seed},
            "options": {"backbones": c.backbones,
                        "finetune": changed_options(c.finetune_config, skip=FINETUNE_PATHS + ("backbone",)),
                        "export": changed_options(c.export_config, skip=EXPORT_PATHS),
                        "bench": changed_options(c.bench_config, skip=BENCH_PATHS),
                        "tune": asdict(c.tune) if c.tune else None, "data_fractions": c.data_fractions},
            "latency_budget_ms": c.latency_budget_ms,
            "machine": _machine_summary(machine),
            "versions": {k: v for k, v in library_versions().items() if v},
            "backbones": entries,
            "results": [row for name in c.backbones if name in done for row in done[name]["rows"]],
            "tuning": {name: done[name]["tuning"] for name in c.backbones if name in done and done[name]["tuning"]} or None,
            "limited_data": limited,
        }
        report = render_study(self.dir, results)  # decides (Pareto front, recommendation), writes results.json, draws
        outcome = StudyOutcome(self.dir, results, report, self.ran)
        if failures:
            raise EdgexferError(
                f"{len(failures)} of {self.jobs_run} job(s) failed "
                f"({'; '.join(f'{k}: {v}' for k, v in failures.items())})",
                f"the report in {self.dir} shows the others; fix the cause and run the same command again to resume")
        return outcome


def _rel(path: Path, root: Path) -> str:
    return rel(path, root)


def _point_key(point: Any) -> str:
    return f"{point.backbone}/{point.weights}/{point.fraction:g}"


def _machine_summary(machine: dict[str, Any] | None) -> dict[str, Any]:
    if not machine:
        return dict(machine_info())
    gpu = machine.get("gpu")
    return {"processor": machine.get("cpu") or machine.get("processor"), "cores": machine.get("cores"),
            "cores_usable": machine.get("cores_usable"), "platform": machine.get("platform"),
            "gpu": gpu.get("name") if isinstance(gpu, dict) else gpu}


def run_compare(config: CompareConfig, stages: Stages | None = None) -> StudyOutcome:
    """Fine-tune, export and bench every backbone of ``config`` on one split; write results and report."""
    return Study(config, stages).run()

"""One resumable stage of a study: fingerprint -> skip or redo -> verify -> record.

Every stage of a study (tuning, fine-tune, export, bench, one learning-curve point) goes through
``run_stage``. A stage is skipped when its state file records the same fingerprint (the options
and inputs that change its output) and its output is complete with the digest recorded when it
finished. Otherwise it is redone: an interrupted stage of the same fingerprint resumes when its
work can resume (``resumes``: fine-tune from its checkpoints, KerasTuner from its project), any
other stage starts from a cleared folder. A stage whose options changed may instead be refused
(``refuse_change``): retraining would silently discard a finished run.

State files (``edgexfer.study-state/2``) hold one record per stage::

    {"schema": ..., "durations_s": {stage: seconds},
     "<stage>": {"fingerprint", "options", "started", "finished", "output_sha256"}}
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields, is_dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Generic, TypeVar

from edgexfer.errors import EdgexferError
from edgexfer.io import read_json, write_json

STATE_SCHEMA = "edgexfer.study-state/2"
LEGACY_STATE_SCHEMA = "edgexfer.study-state/1"  # fine-tunes recorded in it are adopted (their options rechecked)

T = TypeVar("T")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def fingerprint(options: Any) -> str:
    """A stable hash of JSON-able options (paths as strings)."""
    text = json.dumps(options, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def changed_options(config: Any, skip: Iterable[str] = (), keep: Iterable[str] = ()) -> dict[str, Any]:
    """The fields of the dataclass ``config`` that differ from their defaults (``keep``: always), minus ``skip``.

    What a stage's output depends on: a new option with a default, added in a later version, leaves
    the fingerprints of finished stages as they were.
    """
    skipped, kept = set(skip), set(keep)
    out: dict[str, Any] = {}
    for f in fields(config):
        if f.name in skipped:
            continue
        value = getattr(config, f.name)
        if f.name not in kept:
            default = f.default_factory() if callable(f.default_factory) else f.default  # type: ignore[misc]
            if value == default:
                continue
        out[f.name] = _jsonable(value)
    return out


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


@dataclass
class StateFile:
    """The state of one job's stages (``state/<backbone>.json``, or beside a learning-curve run)."""

    path: Path
    data: dict[str, Any] = field(default_factory=dict)
    legacy: dict[str, Any] | None = None  # a state file of the first format (edgexfer.study-state/1), as read

    @classmethod
    def load(cls, path: Path) -> StateFile:
        data: dict[str, Any] = {}
        legacy = None
        if path.is_file():
            loaded = read_json(path, "study state")
            if isinstance(loaded, dict) and loaded.get("schema") == STATE_SCHEMA:
                data = loaded
            elif isinstance(loaded, dict) and loaded.get("schema") == LEGACY_STATE_SCHEMA:
                legacy = loaded
        data["schema"] = STATE_SCHEMA
        return cls(path, data, legacy)

    def adopt(self, stage: str, fingerprint: str, options: Any, output_sha256: str, finished: str | None) -> None:
        """Record a stage found finished under an older state format, so it is skipped like any other."""
        self.data[stage] = {"fingerprint": fingerprint, "options": options, "started": finished,
                            "finished": finished or now(), "output_sha256": output_sha256}

    def stage(self, name: str) -> dict[str, Any]:
        record = self.data.get(name)
        return record if isinstance(record, dict) else {}

    def save(self) -> None:
        write_json(self.path, self.data)


@dataclass
class Stage(Generic[T]):
    """What ``run_stage`` needs to know about one stage.

    ``output()`` returns the finished output and its digest, or None when the output is missing or
    does not match itself (a model file that is not the one its record names, say). ``work(resume)``
    makes it. ``tolerate``: errors after which the output can still be complete (a broken gate:
    the bench results are written; a TensorRT engine that cannot be built: the ONNX artifacts are).
    """

    name: str
    label: str  # "resnet50: fine-tune", for the log
    fingerprint: str
    options: Any  # recorded for whoever reads the state file
    output: Callable[[], tuple[T, str] | None]
    work: Callable[[bool], None]
    clear: Path | None = None  # the stage's own folder, removed before a fresh start
    resumes: bool = False  # work(resume=True) carries on from a partial output of the same fingerprint
    refuse_change: tuple[str, str] | None = None  # (problem, fix) when a finished output was made otherwise
    tolerate: tuple[type[BaseException], ...] = ()
    redo: bool = False  # the stage before it ran again: what follows is redone, never taken as finished


@dataclass
class StageOutcome(Generic[T]):
    value: T
    ran: bool  # False: skipped, found finished


def run_stage(stage: Stage[T], state: StateFile, study_dir: Path, log: Callable[[str], None]) -> StageOutcome[T]:
    """Skip ``stage`` when finished with the same fingerprint, else (re)do it, verify its output and record it."""
    recorded = state.stage(stage.name)
    found = stage.output()
    if (not stage.redo and found is not None and recorded.get("fingerprint") == stage.fingerprint
            and recorded.get("output_sha256") == found[1] and recorded.get("finished")):
        log(f"{stage.label} finished before, skipped")
        return StageOutcome(found[0], False)
    if (stage.refuse_change is not None and recorded.get("fingerprint") not in (None, stage.fingerprint)
            and stage.clear is not None and stage.clear.exists()):
        raise EdgexferError(*stage.refuse_change)
    resume = stage.resumes and recorded.get("fingerprint") == stage.fingerprint and not recorded.get("finished")
    if stage.clear is not None and not resume:
        clear(stage.clear, study_dir)
    state.data[stage.name] = {"fingerprint": stage.fingerprint, "options": stage.options, "started": now()}
    state.save()
    log(f"{stage.label}{' (resuming)' if resume else ''}")
    start = time.perf_counter()
    try:
        stage.work(resume)
    except stage.tolerate as error:
        line = getattr(error, "line", None)
        log(f"{stage.label}: {line() if callable(line) else error}")
    seconds = time.perf_counter() - start
    found = stage.output()
    if found is None:
        raise EdgexferError(f"{stage.label} ended without a complete output"
                            + (f" in {stage.clear}" if stage.clear is not None else ""),
                            "run the same command again to resume")
    state.data[stage.name].update({"output_sha256": found[1], "finished": now()})
    state.data.setdefault("durations_s", {})[stage.name] = seconds
    state.save()
    return StageOutcome(found[0], True)


def clear(directory: Path, study_dir: Path) -> None:
    """Remove a stale stage folder; only ever inside the study folder."""
    if directory.exists():
        directory.resolve().relative_to(study_dir.resolve())  # raises if outside: never delete user data
        shutil.rmtree(directory)

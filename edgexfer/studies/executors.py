"""Executors: who runs a study's jobs. ``local`` runs them one after another in this process (the
default); ``ray`` hands each to Ray as a task with a resource request, on a local Ray instance or on a
running cluster (``--ray-address``). Ray schedules; this module only submits jobs and collects results.

On a cluster the study folder is a shared filesystem path: jobs read and write it from whichever
node runs them. A relative ``--out`` is refused there (each node would resolve it against its own
working folder), and before any job is submitted one probe task per node checks that it sees the
study folder the driver wrote.
"""

from __future__ import annotations

import logging
import socket
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgexfer._lazy import missing_extra
from edgexfer.errors import EdgexferError
from edgexfer.io import sha256_file
from edgexfer.logs import configure
from edgexfer.studies.jobs import Job, JobResult, run_job
from edgexfer.studies.stages import Stages

EXECUTORS = ("local", "ray")
# a local Ray instance started here: jobs exchange small records, never arrays
OBJECT_STORE_BYTES = 200 * 1024**2


@dataclass
class ExecutorConfig:
    """``--executor``, ``--ray-address``, ``--cpus-per-job``, ``--gpus-per-job``."""

    kind: str = "local"
    ray_address: str | None = None  # None: a local Ray instance; "auto" or HOST:PORT: a running cluster
    cpus_per_job: float = 1.0
    gpus_per_job: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in EXECUTORS:
            raise EdgexferError(f"unknown executor '{self.kind}'", f"use one of: {', '.join(EXECUTORS)}")
        if self.kind == "local" and (self.ray_address is not None or self.cpus_per_job != 1 or self.gpus_per_job != 0):
            raise EdgexferError("--ray-address, --cpus-per-job and --gpus-per-job only apply to Ray jobs",
                                "add --executor ray, or leave them out")
        if not self.cpus_per_job > 0 or not self.gpus_per_job >= 0:
            raise EdgexferError(f"--cpus-per-job {self.cpus_per_job} / --gpus-per-job {self.gpus_per_job} out of range",
                                "pass a positive number of CPUs and zero or more GPUs per job")

    @property
    def remote_cluster(self) -> bool:
        return self.kind == "ray" and self.ray_address is not None


class LocalExecutor:
    """Jobs one after another in this process: today's behaviour, nothing to start."""

    in_process = True

    def start(self, study_dir: Path) -> None:
        pass

    def check_visible(self, study_dir: Path) -> None:
        pass

    def map(self, jobs: Sequence[Job], stages: Stages | None, log: Callable[[str], None]) -> Iterator[JobResult]:
        for i, job in enumerate(jobs, 1):
            log(f"[{i}/{len(jobs)}] {job.key}")
            yield run_job(job, stages, log)

    def stop(self) -> None:
        pass


def _ray_job(job: Job, stages: Stages | None) -> JobResult:
    """The body of one Ray task: the job, logging to the worker's stderr (Ray forwards it to the driver)."""

    configure()

    def log(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    return run_job(job, stages, log)


def _sees(path: str, sha256: str) -> bool:
    """Probe task: does this node see the study record the driver wrote?"""

    record = Path(path)
    return record.is_file() and sha256_file(record) == sha256


class RayExecutor:
    """Each job a Ray task asking for ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs.

    A Ray instance already running in this process (``ray.init`` called by a notebook or a test) is
    used as it is; otherwise one is started (no address) or joined (``--ray-address``), and shut
    down at the end. Each task runs in a fresh worker process (``max_calls=1``), so TensorFlow's
    memory is returned between jobs.
    """

    in_process = False

    def __init__(self, config: ExecutorConfig):
        self.config = config
        self.ray: Any = None
        self.started = False

    def start(self, study_dir: Path) -> None:
        """Import Ray and connect; refuse in one line (exit 2) before anything is written."""
        c = self.config
        if c.remote_cluster and not study_dir.is_absolute():
            raise EdgexferError(
                f"--out {study_dir} is a relative path, which each Ray node would resolve against its own folder",
                "pass an absolute path on a filesystem every node of the cluster mounts (NFS, a cluster filesystem)")

        with missing_extra("--executor ray"):  # the distributed extra
            import ray
        self.ray = ray
        if ray.is_initialized():
            return
        if c.ray_address is not None and c.ray_address != "auto":
            _check_reachable(c.ray_address)
        try:
            if c.ray_address is None:
                # "local": a new instance even where a cluster runs on this machine (ray.init() would join it)
                ray.init(address="local", object_store_memory=OBJECT_STORE_BYTES, include_dashboard=False,
                         logging_level=logging.WARNING)
            else:
                ray.init(address=c.ray_address, logging_level=logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = f"the Ray cluster at {c.ray_address}" if c.ray_address else "a local Ray instance"
            raise EdgexferError(f"cannot connect to {where} ({str(exc).splitlines()[0] if str(exc) else exc!r})",
                                "start it with `ray start --head` (or check --ray-address; a cluster with token "
                                "authentication needs its token here, see Ray's docs), or use --executor local"
                                ) from None
        self.started = True
        if c.ray_address is None:
            self._check_resources()

    def _check_resources(self) -> None:
        """On the local instance, a job asking for more than the machine has would wait forever: refuse it now.
        (On a cluster an autoscaler may add such a node; Ray itself warns about tasks no node can run.)"""
        c = self.config
        nodes = [n.get("Resources", {}) for n in self.ray.nodes() if n.get("Alive")]
        fits = [r for r in nodes if r.get("CPU", 0) >= c.cpus_per_job and r.get("GPU", 0) >= c.gpus_per_job]
        if nodes and not fits:
            most = max(nodes, key=lambda r: (r.get("GPU", 0), r.get("CPU", 0)))
            self.stop()
            raise EdgexferError(
                f"no Ray node has {c.cpus_per_job:g} CPU(s) and {c.gpus_per_job:g} GPU(s) for one job (the largest "
                f"has {most.get('CPU', 0):g} CPU(s), {most.get('GPU', 0):g} GPU(s))",
                "lower --cpus-per-job / --gpus-per-job, or add a node that has them")

    def check_visible(self, study_dir: Path) -> None:
        """On a cluster: every node must see the study record the driver just wrote (a shared filesystem)."""
        if not self.config.remote_cluster:
            return  # a local instance runs on this machine
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ray = self.ray
        record = study_dir / "study.json"
        digest = sha256_file(record)
        probe = ray.remote(num_cpus=0, max_retries=0)(_sees)
        nodes = [n for n in ray.nodes() if n.get("Alive") and n.get("Resources", {}).get("CPU", 0) > 0]
        refs = {n.get("NodeManagerAddress", n["NodeID"]): probe.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False)).remote(str(record), digest)
            for n in nodes}
        blind = [address for address, ref in refs.items() if not ray.get(ref)]
        if blind:
            raise EdgexferError(
                f"the study folder {study_dir} is not visible on Ray node(s) {', '.join(blind)}",
                "put --out on a filesystem every node mounts at the same path (NFS, a cluster filesystem)")

    def map(self, jobs: Sequence[Job], stages: Stages | None, log: Callable[[str], None]) -> Iterator[JobResult]:
        ray, c = self.ray, self.config
        task = ray.remote(max_calls=1)(_ray_job)  # a fresh worker per job: TensorFlow's memory goes with it
        pending = {task.options(num_cpus=c.cpus_per_job, num_gpus=c.gpus_per_job, max_retries=1,
                                name=f"edgexfer {job.key}").remote(job, stages): job for job in jobs}
        total = len(pending)
        try:
            log(f"{total} job(s) submitted to Ray ({c.cpus_per_job:g} CPU, {c.gpus_per_job:g} GPU each)")
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for ref in ready:
                    job = pending.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.RayError as error:  # the task raised, or its worker died
                        result = JobResult(job.key, error=_task_error(error))
                    log(f"[{total - len(pending)}/{total}] {job.key} " + ("done" if result.ok else f"failed: {result.error}"))
                    yield result
        except BaseException:
            for ref in pending:  # the driver stops: so do its jobs (finished ones are recorded and kept)
                ray.cancel(ref, force=True)
            raise

    def stop(self) -> None:
        if self.started and self.ray is not None:
            self.ray.shutdown()
            self.started = False


def _task_error(error: BaseException) -> str:
    """One line for a task that raised (its own error's line) or whose worker died."""
    cause = getattr(error, "cause", None)
    if isinstance(cause, EdgexferError):
        return cause.line()
    if isinstance(cause, BaseException):
        return f"{type(cause).__name__}: {cause}".splitlines()[0]
    return f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"


def _check_reachable(address: str) -> None:
    """HOST:PORT (or ray://HOST:PORT) answers on TCP, checked in seconds rather than Ray's long retries."""
    target = address.split("://", 1)[-1]
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise EdgexferError(f"--ray-address {address} is not auto or HOST:PORT", "e.g. --ray-address 10.0.0.5:6379")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise EdgexferError(f"cannot reach the Ray cluster at --ray-address {address} ({exc.strerror or exc})",
                            "start it with `ray start --head` on that machine, or check the address") from None


def make_executor(config: ExecutorConfig) -> LocalExecutor | RayExecutor:
    return RayExecutor(config) if config.kind == "ray" else LocalExecutor()

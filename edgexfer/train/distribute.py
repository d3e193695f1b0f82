"""How ``finetune`` spreads training: ``--distribute auto|none|mirrored|multiworker``.

- ``none``: TensorFlow's default strategy, one replica.
- ``mirrored``: ``tf.distribute.MirroredStrategy`` over this machine's GPUs (or its logical CPU
  devices when there is no GPU). With a single device it would train one replica through the
  collective code path, whose results differ from ``none`` at the same seed; it then runs as
  ``none`` and says so.
- ``auto``: ``mirrored`` when two or more GPUs are visible, else ``none``.
- ``multiworker``: ``tf.distribute.MultiWorkerMirroredStrategy`` over the machines of ``TF_CONFIG``
  (the variable Kubernetes operators, Slurm scripts and Ray Train's ``TensorflowTrainer`` set). The
  chief (task ``chief``, or ``worker`` 0 when the cluster has no chief) writes the run directory;
  the other workers train their share and write into a temporary folder that is removed.

:func:`read_tf_config` checks ``TF_CONFIG`` before anything is written; :func:`make_distribution`
builds the strategy and :meth:`Distribution.describe` says what it does on this machine.
TensorFlow is imported inside the functions.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from edgexfer.errors import EdgexferError

# seconds a collective waits for the other workers before the job ends (a worker that died)
COLLECTIVE_TIMEOUT_S = 300.0
TF_CONFIG_HELP = ('set TF_CONFIG on each machine, e.g. {"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
                  '"task": {"type": "worker", "index": 0}} (see docs/distributed.md)')
_ROLES = ("chief", "worker")


@dataclass(frozen=True)
class ClusterTask:
    """This process's place in a ``TF_CONFIG`` cluster."""

    cluster: dict[str, list[str]]
    task_type: str
    task_index: int

    @property
    def members(self) -> list[str]:
        """Every training process, chief first: the order of TensorFlow's task numbering."""
        return [a for role in _ROLES for a in self.cluster.get(role, [])]

    @property
    def address(self) -> str:
        return self.cluster[self.task_type][self.task_index]

    @property
    def is_chief(self) -> bool:
        """The process that writes the run: the chief, or worker 0 in a cluster without one."""
        if "chief" in self.cluster:
            return self.task_type == "chief"
        return self.task_index == 0

    @property
    def name(self) -> str:
        return f"{self.task_type} {self.task_index}"


def read_tf_config(environ: Mapping[str, str] | None = None) -> ClusterTask:
    """``TF_CONFIG`` parsed and checked; one EdgexferError naming what is wrong otherwise."""
    env = os.environ if environ is None else environ
    text = env.get("TF_CONFIG", "").strip()
    if not text:
        raise EdgexferError("--distribute multiworker needs TF_CONFIG, which is not set", TF_CONFIG_HELP)
    try:
        data = json.loads(text)
    except ValueError as exc:
        raise EdgexferError(f"TF_CONFIG is not valid JSON ({exc})", TF_CONFIG_HELP) from None
    if not isinstance(data, dict):
        raise EdgexferError("TF_CONFIG is not a JSON object", TF_CONFIG_HELP)
    cluster, task = data.get("cluster"), data.get("task")
    if not isinstance(cluster, dict) or not cluster:
        raise EdgexferError("TF_CONFIG has no cluster (a table of job name to a list of host:port)", TF_CONFIG_HELP)
    for role, addresses in cluster.items():
        if role not in _ROLES and role not in ("evaluator", "ps"):
            raise EdgexferError(f"TF_CONFIG cluster has an unknown job '{role}'", "use chief and worker jobs")
        if not isinstance(addresses, list) or not addresses or not all(_is_address(a) for a in addresses):
            raise EdgexferError(f"TF_CONFIG cluster job '{role}' is not a list of host:port addresses", TF_CONFIG_HELP)
    if "ps" in cluster or "evaluator" in cluster:
        raise EdgexferError("TF_CONFIG names a ps or evaluator job, which multi-worker mirrored training does not use",
                            "list only chief and worker jobs")
    if len(cluster.get("chief", [])) > 1:
        raise EdgexferError("TF_CONFIG has more than one chief", "name one chief, or none (worker 0 then leads)")
    if not isinstance(task, dict) or "type" not in task or "index" not in task:
        raise EdgexferError("TF_CONFIG has no task (this process's type and index)",
                            'add "task": {"type": "worker", "index": N} for this machine')
    task_type, index = task["type"], task["index"]
    if task_type not in cluster:
        raise EdgexferError(f"TF_CONFIG task type '{task_type}' is not a job of its cluster ({', '.join(cluster)})",
                            "use one of the cluster's job names")
    if not isinstance(index, int) or isinstance(index, bool) or not 0 <= index < len(cluster[task_type]):
        raise EdgexferError(f"TF_CONFIG task index {index!r} is out of range: job '{task_type}' has "
                            f"{len(cluster[task_type])} address(es)", "give each process its index in that list")
    members = [a for role in _ROLES for a in cluster.get(role, [])]
    if len(set(members)) != len(members):
        raise EdgexferError("TF_CONFIG lists one address twice", "give each process its own host:port")
    return ClusterTask({k: list(v) for k, v in cluster.items()}, str(task_type), int(index))


def _is_address(value: Any) -> bool:
    if not isinstance(value, str) or ":" not in value:
        return False
    host, _, port = value.rpartition(":")
    return bool(host) and port.isdigit() and 0 < int(port) < 65536


@dataclass
class Distribution:
    """The strategy a run trains under, and what it means on this machine."""

    kind: str                    # "none" | "mirrored" | "multiworker"
    strategy: Any
    replicas: int
    devices: list[str]
    requested: str
    cluster: ClusterTask | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def writes_run(self) -> bool:
        """False on a multi-worker worker other than the chief: it writes a temporary folder only."""
        return self.cluster is None or self.cluster.is_chief

    def describe(self) -> str:
        devices = ", ".join(self.devices)
        if self.kind == "multiworker" and self.cluster is not None:
            c = self.cluster
            line = (f"distribution: multiworker, {self.replicas} replica(s) over {len(c.members)} process(es); "
                    f"this is {c.name} at {c.address} ({'chief: writes the run' if c.is_chief else 'trains only'}), "
                    f"devices {devices}")
        elif self.kind == "mirrored":
            line = f"distribution: mirrored, {self.replicas} replica(s) on {devices}"
        else:
            line = f"distribution: none, 1 replica on {devices}"
        return "; ".join([line, *self.notes])


def make_distribution(tf: Any, requested: str, cluster: ClusterTask | None = None,
                      timeout_s: float = COLLECTIVE_TIMEOUT_S) -> Distribution:
    """The strategy for ``--distribute requested``; ``cluster`` from :func:`read_tf_config` for multiworker."""
    if requested == "multiworker":
        if cluster is None:
            cluster = read_tf_config()
        options = tf.distribute.experimental.CommunicationOptions(timeout_seconds=timeout_s)
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(communication_options=options)
        except tf.errors.OpError as exc:  # its own port taken ("Could not start gRPC server"), a bad host name
            raise EdgexferError(f"this process ({cluster.name} of TF_CONFIG) cannot listen at {cluster.address}: "
                                f"{' '.join(str(exc).split())[:120]}",
                                "free that port, or give this process a free host:port in TF_CONFIG (its own "
                                "entry is where it listens; the other processes connect to it there)") from None
        local = [d.name for d in tf.config.list_logical_devices("GPU")] or ["CPU:0"]
        notes = [] if len(cluster.members) > 1 else ["a cluster of one process trains like --distribute none"]
        return Distribution("multiworker", strategy, int(strategy.num_replicas_in_sync), _short(local), requested,
                            cluster, notes)
    gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
    default = tf.distribute.get_strategy()
    if requested == "none" or (requested == "auto" and len(gpus) < 2):
        return Distribution("none", default, 1, _short(gpus[:1] or ["CPU:0"]), requested)
    # "mirrored" without GPUs mirrors over the logical CPU devices (how it is tested on a CPU)
    devices = gpus or [d.name for d in tf.config.list_logical_devices("CPU")]
    if len(devices) < 2:
        note = (f"--distribute mirrored: only one device ({_short(devices)[0]}) is visible, "
                "so this trains as --distribute none (the same model at the same seed)")
        return Distribution("none", default, 1, _short(devices), requested, notes=[note])
    strategy = tf.distribute.MirroredStrategy(devices=devices)
    return Distribution("mirrored", strategy, int(strategy.num_replicas_in_sync), _short(devices), requested)


def _short(devices: list[str]) -> list[str]:
    """'/job:localhost/replica:0/task:0/device:GPU:1' -> 'GPU:1'."""
    return [d.rsplit("device:", 1)[-1] for d in devices]


def check_batches(batch_size: int, n_train: int | None, replicas: int) -> None:
    """Multi-worker training splits each batch over the replicas and leaves out an epoch's last partial batch
    (``n_train`` None: the data is not read yet)."""
    if batch_size < replicas:
        raise EdgexferError(f"--batch-size {batch_size} is smaller than the {replicas} replicas of the cluster",
                            f"pass --batch-size {replicas} or more (the global batch, split over the replicas)")
    if n_train is not None and n_train < batch_size:
        raise EdgexferError(f"the train split has {n_train} images, fewer than one batch of {batch_size}",
                            "pass a smaller --batch-size")


def is_worker_failure(tf: Any, exc: BaseException) -> bool:
    """True for the errors a collective raises when another worker died or stopped answering."""
    errors = tf.errors
    return isinstance(exc, (errors.UnavailableError, errors.DeadlineExceededError, errors.CancelledError,
                            errors.AbortedError))


def worker_failure(exc: BaseException, cluster: ClusterTask, out: Any) -> EdgexferError:
    first = " ".join(str(exc).split())[:160]
    return EdgexferError(f"multi-worker training stopped: another process of the cluster ({len(cluster.members)} "
                         f"in TF_CONFIG) died or stopped answering ({type(exc).__name__}: {first}…)",
                         f"start every process again with the same command: training resumes from the chief's "
                         f"last finished epoch in {out}")


@contextlib.contextmanager
def keras_multiworker_fixes(model: Any) -> Iterator[None]:
    """Work around Keras 3's ``fit`` under MultiWorkerMirroredStrategy (tensorflow/tensorflow#72388).

    Keras (3.15) reduces a step's scalar logs with ``strategy.reduce("MEAN", v, axis=0)``, which
    fails on a scalar ("Invalid reduction dimension 0 for input with 0 dimensions"), and reduces the
    first batch of a structure in one call before building, which MWMS refuses. Inside this block
    scalars are averaged over all replicas (``axis=None``: every worker logs the same numbers, so
    early stopping and the best epoch agree) and the model builds from its local batch.
    """
    import tensorflow as tf
    from keras.src import tree
    from keras.src.backend.tensorflow import trainer as keras_trainer

    original = keras_trainer.reduce_per_replica

    def reduce_per_replica(values, strategy, reduction):
        if reduction in ("auto", "mean") and keras_trainer._collective_all_reduce_multi_worker(strategy):
            def reduce(v):
                if strategy.experimental_local_results(v)[0].shape.rank == 0:
                    return strategy.reduce("MEAN", v, axis=None)
                return original(v, strategy, reduction)

            return tree.map_structure(reduce, values)
        return original(values, strategy, reduction)

    def symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, batches in iterator:
                batch = next(batches)
                break
            local = model.distribute_strategy.experimental_local_results
            data_batch = tree.map_structure(
                lambda v: local(v)[0] if isinstance(v, tf.distribute.DistributedValues) else v, batch)
        with model.distribute_strategy.scope():
            model._symbolic_build(data_batch=data_batch)

    keras_trainer.reduce_per_replica = reduce_per_replica
    model._maybe_symbolic_build = symbolic_build
    try:
        yield
    finally:
        keras_trainer.reduce_per_replica = original
        del model._maybe_symbolic_build

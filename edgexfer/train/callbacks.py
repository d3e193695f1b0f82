"""Training callbacks and the on-disk training state that lets an interrupted run resume.

Keras ``BackupAndRestore`` resumes the stage in progress (weights, optimizer and epoch); the
``RunState`` here remembers what Keras does not: which stages finished, the best epoch of the
whole run (its weights in ``checkpoints/best.weights.npz``) and every epoch's row of the history.
"""

from __future__ import annotations

import json
import math
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from edgexfer.errors import EdgexferError
from edgexfer.io import atomic_path, write_json

STATE_FILE = "state.json"
BEST_WEIGHTS = "best.weights.npz"
LAST_WEIGHTS = "last.weights.npz"
RESUME_FILE = "resume.npz"  # the stage in progress: weights, optimizer, random-generator states, epochs done


class RunState:
    """checkpoints/state.json: finished stages, the best epoch so far, the history rows."""

    def __init__(self, checkpoint_dir: str | os.PathLike[str], monitor: str):
        self.dir = Path(checkpoint_dir)
        self.monitor = monitor
        self.mode = "max" if "acc" in monitor else "min"
        path = self.dir / STATE_FILE
        try:
            data = json.loads(path.read_text()) if path.is_file() else {}
            self.completed: list[str] = list(data.get("completed", []))
            self.best: dict[str, Any] | None = data.get("best")
            self.history: list[dict[str, Any]] = list(data.get("history", []))
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise corrupt_checkpoint(path, exc) from None

    def save(self) -> None:
        write_json(self.dir / STATE_FILE, {"completed": self.completed, "best": self.best, "history": self.history})

    def improves(self, value: float) -> bool:
        if value is None or math.isnan(value):
            return False
        if self.best is None:
            return True
        return value > self.best["value"] if self.mode == "max" else value < self.best["value"]

    def record(self, row: dict[str, Any]) -> None:
        """Add an epoch's row, replacing one of the same stage and epoch (an epoch redone after a resume)."""
        self.history = [r for r in self.history if (r["stage"], r["epoch"]) != (row["stage"], row["epoch"])]
        self.history.append(row)
        self.history.sort(key=lambda r: r["epoch_global"])

    def epochs_before(self, stage: str, order: list[str]) -> int:
        """Epochs run in the stages before ``stage`` (early stopping can make a stage short)."""
        earlier = set(order[: order.index(stage)])
        return sum(1 for r in self.history if r["stage"] in earlier)


def save_weights(model, path: str | os.PathLike[str]) -> None:
    """The model's weights (not the optimizer's), in ``model.weights`` order, atomically."""
    arrays: dict[str, Any] = {f"w{i:04d}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]  # numpy's stub mistypes **kwds


def corrupt_checkpoint(path: Path, exc: BaseException) -> EdgexferError:
    """The one line for a checkpoint file a resume cannot read (a kill during a copy, a full disk, an edit)."""
    checkpoints = Path(path).parent
    return EdgexferError(f"cannot resume: {path} is damaged ({type(exc).__name__}: {exc})",
                         f"delete {checkpoints} to start this run over (the run folder's other files are rewritten)")


def load_weights(model, path: str | os.PathLike[str]) -> None:
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = [data[f"w{i:04d}"] for i in range(len(data.files))]
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        raise corrupt_checkpoint(Path(path), exc) from None
    model.set_weights(arrays)


def _seed_states(model) -> list[Any]:
    """The state variables of the model's random generators (Dropout…): not part of ``model.weights``."""
    return [sg.state for layer in model._flatten_layers() for sg in getattr(layer, "_seed_generators", [])]


def save_resume_point(model, path: str | os.PathLike[str], stage: str, epochs_done: int) -> None:
    """Everything an epoch boundary needs to continue exactly: one file, written atomically."""
    arrays: dict[str, Any] = {f"w{i:04d}": np.asarray(w) for i, w in enumerate(model.get_weights())}
    arrays.update({f"o{i:04d}": np.asarray(v) for i, v in enumerate(model.optimizer.variables)})
    arrays.update({f"r{i:04d}": np.asarray(v) for i, v in enumerate(_seed_states(model))})
    arrays["meta"] = np.asarray(json.dumps({"stage": stage, "epochs_done": int(epochs_done)}))
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]


def read_resume_point(path: str | os.PathLike[str]) -> dict[str, Any] | None:
    if not Path(path).is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            meta = json.loads(str(data["meta"]))
            meta["arrays"] = {k: data[k] for k in data.files if k != "meta"}
        meta["stage"], meta["epochs_done"] = str(meta["stage"]), int(meta["epochs_done"])
    except (OSError, ValueError, EOFError, KeyError, TypeError, zipfile.BadZipFile) as exc:
        raise corrupt_checkpoint(Path(path), exc) from None
    return meta


def restore_resume_point(model, point: dict[str, Any], *, weights: bool = True) -> None:
    """Random-generator states, and with ``weights`` the weights and optimizer variables, from
    :func:`read_resume_point` (after compile)."""
    arrays = point["arrays"]
    for variable, key in zip(_seed_states(model), sorted(k for k in arrays if k.startswith("r")), strict=True):
        variable.assign(arrays[key])
    if not weights:
        return
    model.set_weights([arrays[k] for k in sorted(arrays) if k.startswith("w")])
    if not model.optimizer.built:
        model.optimizer.build(model.trainable_variables)
    for variable, key in zip(model.optimizer.variables, sorted(k for k in arrays if k.startswith("o")), strict=True):
        variable.assign(arrays[key])


def make_resume_callback(point: dict[str, Any] | None, stage: Any, state: RunState, shared: list[Any]):
    """On ``fit`` start, the first in this process: restore the random generators of the last finished
    epoch; when that epoch belongs to this stage, also its weights and optimizer, and replay the stage's
    earlier epochs through the shared callbacks (early stopping's best value and patience count)."""
    import keras

    class Resume(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            if point is None:
                return
            same_stage = point["stage"] == stage.key
            restore_resume_point(self.model, point, weights=same_stage)
            if not same_stage:
                return
            rows = [r for r in state.history if r["stage"] == stage.key and r["epoch"] <= point["epochs_done"]]
            for row in rows:
                for callback in shared:
                    callback.on_epoch_end(row["epoch"] - 1, logs=row)

    return Resume()


def make_progress_callback(state: RunState, stage: Any, order: list[str]):
    """A Keras callback that, after every epoch, checkpoints the weights and records the history row."""
    import keras

    class RunProgress(keras.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
            logs = dict(logs or {})
            row: dict[str, Any] = {
                "phase": stage.phase,
                "stage": stage.key,
                "epoch": epoch + 1,
                "epoch_global": state.epochs_before(stage.key, order) + epoch + 1,
                "learning_rate": _learning_rate(self.model),
                "trainable_params": stage.trainable_params,
            }
            row.update({k: float(v) for k, v in sorted(logs.items()) if k != "learning_rate"})
            state.record(row)
            save_weights(self.model, state.dir / LAST_WEIGHTS)
            value = logs.get(state.monitor)
            if value is not None and state.improves(float(value)):
                save_weights(self.model, state.dir / BEST_WEIGHTS)
                state.best = {"value": float(value), "stage": stage.key, "epoch": epoch + 1,
                              "epoch_global": row["epoch_global"], "monitor": state.monitor}
            state.save()
            # last, so that a kill before it redoes this epoch (and rewrites the same row)
            save_resume_point(self.model, state.dir / RESUME_FILE, stage.key, epoch + 1)

    return RunProgress()


class StopAfterEpochs:
    """Factory of a callback that raises after ``n`` epochs: simulates an interrupted run (tests, demos)."""

    def __new__(cls, n: int):
        import keras

        class _Stop(keras.callbacks.Callback):
            def __init__(self):
                super().__init__()
                self.seen = 0

            def on_epoch_end(self, epoch, logs=None):
                self.seen += 1
                if self.seen >= n:
                    raise KeyboardInterrupt(f"stopped after {n} epoch(s) on request")

        return _Stop()


def _learning_rate(model) -> float | None:
    try:
        return float(np.asarray(model.optimizer.learning_rate))
    except (AttributeError, TypeError, ValueError):
        return None

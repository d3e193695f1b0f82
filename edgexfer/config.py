"""Options of each stage as dataclasses, saved beside every artifact and loadable from a file.

A ``--config FILE`` is JSON (``.json``) or TOML (``.toml``) holding option names as keys
(``fine_tune_epochs`` or ``fine-tune-epochs``). Options given on the command line override the file.
A run's own ``config.json`` is a valid config file, so ``--config RUN/config.json`` repeats a run.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from edgexfer.contracts import check_known_keys
from edgexfer.errors import EdgexferError
from edgexfer.limits import check_batch_fits, check_image_side

OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
MONITORS = ("val_loss", "val_accuracy")
DISTRIBUTE = ("auto", "mirrored", "none", "multiworker")
# keys a run's config.json holds beside the options; ignored when it is read back as a config file
_RECORD_KEYS = ("schema", "versions", "resolved")
# options that do not change what a run computes: they may differ when a run is resumed
RESUME_FREE = ("out", "verbose", "tensorboard")


@dataclass
class FinetuneConfig:
    """Every option of ``edgexfer finetune`` / ``edgexfer.train.finetune``.

    Learning-rate schedule: phase 1 trains the head at ``learning_rate`` on a frozen backbone;
    phase 2 runs ``unfreeze_stages`` stages over ``fine_tune_epochs`` epochs in total, stage k
    training everything above the backbone's k-th unfreeze point (top first) at
    ``fine_tune_learning_rate * stage_lr_factor ** (k - 1)``. Without pretrained weights
    (``weights="none"``) phase 1 trains every layer and there is no phase 2 unless
    ``fine_tune_epochs`` asks for one (every layer again, at ``fine_tune_learning_rate``).
    """

    data: str                              # data folder, CSV, .npz, or "demo" (synthetic set made on the fly)
    backbone: str
    out: str                               # run directory
    image_size: int | None = None          # None: the backbone's native size
    weights: str | None = None             # "imagenet" | "none" | a weights file; None: imagenet where available
    head: str = "gap"                      # "gap" | "attention"
    dropout: float = 0.2
    epochs: int = 10                       # phase 1 (head on a frozen backbone)
    fine_tune_epochs: int | None = None    # phase 2, over all its stages; None: 10 with pretrained weights, 0 without
    unfreeze_stages: int = 2
    learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    stage_lr_factor: float = 0.5
    optimizer: str = "adam"
    weight_decay: float = 0.0              # adamw only
    batch_size: int = 32
    early_stopping_patience: int = 5       # epochs without improvement of `monitor`; 0 turns it off
    monitor: str = "val_loss"              # picks the best epoch (model.keras) and drives early stopping
    seed: int = 0
    split_fractions: list[float] = field(default_factory=lambda: [0.7, 0.2, 0.1])
    split: str | None = None               # a split.json to train on instead of making one (studies share one split)
    class_weights: bool = True
    augment: bool | dict[str, Any] = True  # True: default augmentation, False: none, or AugmentConfig options
    freeze_base: bool | None = None        # phase 1 frozen backbone; None: frozen unless weights are "none"
    bn_inference: bool | None = None       # backbone BatchNorm in inference mode; None: unless weights are "none"
    mixed_precision: bool = False          # mixed_float16 on a GPU
    deterministic: bool = True             # same seed, same machine → same model (TF op determinism)
    distribute: str = "auto"               # "auto": MirroredStrategy when several GPUs are visible; "multiworker": TF_CONFIG
    jit_compile: bool | str = "auto"       # XLA for the train step: "auto" (Keras decides), true or false
    cache: bool = True                     # cache decoded images in memory
    demo_per_class: int = 100              # --data demo: images per class
    demo_size: int = 128                   # --data demo: image side in pixels
    verbose: int | str = "auto"            # Keras progress output: "auto" (bar on a terminal, a line per epoch else), 0, 1, 2
    precise_bn_batches: int = 200          # batches of the train split that re-estimate trained BatchNorm statistics; 0 off
    tensorboard: bool = False              # TensorBoard logs in RUN/tensorboard

    def __post_init__(self) -> None:
        self.validate()

    # --------------------------------------------------------------------------- checks

    def validate(self) -> None:
        """Raise one clear EdgexferError for an option out of range."""
        def bad(name: str, why: str, fix: str) -> EdgexferError:
            return EdgexferError(f"option {name}={getattr(self, name)!r} {why}", fix)

        for name in ("data", "backbone", "out"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name):
                raise bad(name, "is missing", f"pass --{name.replace('_', '-')}")
        for name in ("epochs", "early_stopping_patience", "precise_bn_batches"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 0:
                raise bad(name, "is not a whole number ≥ 0", "pass 0 or more")
        if self.fine_tune_epochs is not None and (not _is_int(self.fine_tune_epochs) or self.fine_tune_epochs < 0):
            raise bad("fine_tune_epochs", "is not a whole number ≥ 0", "pass 0 or more")
        if self.epochs == 0 and self.fine_tune_epochs == 0:
            raise EdgexferError("--epochs 0 and --fine-tune-epochs 0: nothing to train", "pass --epochs 1 or more")
        for name in ("unfreeze_stages", "batch_size", "demo_per_class", "demo_size"):
            if not _is_int(getattr(self, name)) or getattr(self, name) < 1:
                raise bad(name, "is not a whole number ≥ 1", "pass 1 or more")
        if self.image_size is not None and (not _is_int(self.image_size) or self.image_size < 1):
            raise bad("image_size", "is not a positive whole number", "pass a size in pixels, e.g. 224")
        if self.image_size is not None:
            check_image_side(self.image_size, "--image-size")
            check_batch_fits(self.batch_size, self.image_size, self.image_size)
        check_image_side(self.demo_size, "--demo-size")
        if not _is_int(self.seed):
            raise bad("seed", "is not a whole number", "pass an integer seed")
        for name in ("learning_rate", "fine_tune_learning_rate", "stage_lr_factor"):
            if not _is_number(getattr(self, name)) or getattr(self, name) <= 0:
                raise bad(name, "is not a positive number", "pass e.g. 1e-3")
        if not _is_number(self.weight_decay) or self.weight_decay < 0:
            raise bad("weight_decay", "is negative or not a number", "pass 0 or more")
        if not _is_number(self.dropout) or not 0 <= self.dropout < 1:
            raise bad("dropout", "is not in [0, 1)", "pass e.g. 0.2")
        if self.optimizer not in OPTIMIZERS:
            raise bad("optimizer", "is unknown", f"use one of {', '.join(OPTIMIZERS)}")
        if self.monitor not in MONITORS:
            raise bad("monitor", "is unknown", f"use one of {', '.join(MONITORS)}")
        if self.distribute not in DISTRIBUTE:
            raise bad("distribute", "is unknown", f"use one of {', '.join(DISTRIBUTE)}")
        if self.head not in ("gap", "attention"):
            raise bad("head", "is unknown", "use gap or attention")
        if self.jit_compile not in ("auto", True, False):
            raise bad("jit_compile", "is unknown", "use auto, true or false")
        if self.verbose not in ("auto", 0, 1, 2):
            raise bad("verbose", "is unknown", "use auto, 0, 1 or 2")
        fr = self.split_fractions
        if (not isinstance(fr, (list, tuple)) or len(fr) != 3 or not all(_is_number(v) and v >= 0 for v in fr)
                or abs(sum(fr) - 1) > 1e-6 or min(fr) <= 0):
            raise bad("split_fractions", "is not three positive fractions summing to 1", "pass e.g. [0.7, 0.2, 0.1]")
        self.split_fractions = [float(v) for v in fr]
        if self.split is not None and (not isinstance(self.split, str) or not self.split):
            raise bad("split", "is not the path of a split.json", "pass the split.json of a run or study")
        if not isinstance(self.augment, (bool, dict)):
            raise bad("augment", "is neither true/false nor a table of augmentation options", "pass true, false or options")
        for name in ("class_weights", "mixed_precision", "deterministic", "cache", "tensorboard"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "is not true or false", "pass true or false")
        for name in ("freeze_base", "bn_inference"):
            if getattr(self, name) not in (None, True, False):
                raise bad(name, "is not true, false or unset", "pass true or false")

    # --------------------------------------------------------------------------- I/O

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def option_names(cls) -> list[str]:
        return [f.name for f in fields(cls)]

    @classmethod
    def from_dict(cls, values: dict[str, Any], where: str = "config") -> FinetuneConfig:
        """Build from a mapping of option names (``-`` or ``_``); unknown names are refused."""

        options = {str(key).replace("-", "_"): value for key, value in values.items() if key not in _RECORD_KEYS}
        check_known_keys(cls, options, "fine-tune", source=where)
        missing = [n for n in ("data", "backbone", "out") if n not in options]
        if missing:
            raise EdgexferError(f"{where} lacks {', '.join(missing)}", "give them in the file or on the command line")
        try:
            return cls(**options)
        except TypeError as exc:
            raise EdgexferError(f"{where} does not fit FinetuneConfig ({exc})", "check the option names") from None


def load_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON or TOML config file into a dict; one clear error when it cannot be read."""
    p = Path(path)
    if not p.is_file():
        raise EdgexferError(f"config file {p} does not exist", "check the --config path")
    try:
        text = p.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise EdgexferError(f"config file {p} cannot be read ({exc})", "pass a UTF-8 JSON or TOML file") from None
    suffix = p.suffix.lower()
    parsers = [_parse_json] if suffix == ".json" else [_parse_toml] if suffix == ".toml" else [_parse_json, _parse_toml]
    errors = []
    for parse in parsers:
        try:
            data = parse(text)
        except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
            errors.append(str(exc))
            continue
        if not isinstance(data, dict):
            raise EdgexferError(f"config file {p} does not hold a table of options", "write {\"option\": value, …}")
        return data
    raise EdgexferError(f"config file {p} is not valid {'/'.join(f.__name__[7:].upper() for f in parsers)} "
                        f"({'; '.join(errors)})", "fix its syntax")


def _parse_json(text: str) -> Any:
    return json.loads(text)


def _parse_toml(text: str) -> Any:
    try:
        import tomllib
    except ImportError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ImportError:
            raise ValueError("TOML needs Python 3.11 or the tomli package; use a JSON file") from None
    return tomllib.loads(text)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    """A real, finite number: NaN and ±inf (``--learning-rate nan``, ``NaN`` in a JSON config) are not options."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def finetune_config_from(config_file: str | os.PathLike[str] | None, options: dict[str, Any]) -> FinetuneConfig:
    """A FinetuneConfig from a config file (optional) overridden by ``options`` that are not None."""
    values: dict[str, Any] = dict(load_config_file(config_file)) if config_file else {}
    values = {str(k).replace("-", "_"): v for k, v in values.items()}
    values.update({k: v for k, v in options.items() if v is not None})
    where = f"config file {config_file}" if config_file else "the options"
    if not config_file:
        missing = [n for n in ("data", "backbone", "out") if n not in values]
        if missing:
            raise EdgexferError(f"missing {', '.join('--' + n for n in missing)}", "pass them, or a --config file holding them")
    return FinetuneConfig.from_dict(values, where=where)

"""What `edgexfer bench` is asked (``BenchConfig``, checked when made) and where it writes: the checks of its
options against the export and of its output folder, made before any work."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from edgexfer.contracts.bench import default_bench_dir as bench_dir_of
from edgexfer.contracts.bench import is_bench_dir
from edgexfer.errors import EdgexferError
from edgexfer.evaluate.exported import ExportDir
from edgexfer.evaluate.gate import Thresholds, parse_fraction
from edgexfer.limits import check_threads


@dataclass
class BenchConfig:
    """Options of `edgexfer bench` (one field per CLI option)."""

    export_dir: Path
    out: Path | None = None  # default: benchmarks/<export name> beside the export's parent (default_bench_dir)
    data: Path | None = None  # default: the run's test split
    unlabeled: Path | None = None  # a folder of images that add to the agreement with FP32 (no labels needed)
    positive_class: str | None = None  # clinical operating point: this class against the rest (binary: the 2nd)
    target_sensitivity: float | None = None  # the threshold's sensitivity on validation images (None: Youden's J)
    runtimes: list[str] | None = None  # default: every runtime usable here
    batch_sizes: tuple[int, ...] = (1, 8, 32)
    warmup: int = 10
    iterations: int = 50
    threads: int | None = None  # ONNX Runtime intra-op threads (None: library default)
    thresholds: Thresholds = field(default_factory=Thresholds)
    end_to_end_images: int = 20  # images timed from file (decode + resize + predict at batch 1)
    eval_batch_size: int = 32
    progress: bool = True
    log: Callable[[str], None] | None = None  # where to say what was skipped (stderr by default)

    def __post_init__(self) -> None:
        self.export_dir = Path(self.export_dir)
        self.out = Path(self.out) if self.out is not None else None
        self.data = Path(self.data) if self.data is not None else None
        self.unlabeled = Path(self.unlabeled) if self.unlabeled is not None else None
        if not self.batch_sizes or any(int(b) < 1 for b in self.batch_sizes):
            raise EdgexferError(f"batch sizes {list(self.batch_sizes)} must be positive integers", "e.g. --batch-sizes 1,8,32")
        self.batch_sizes = tuple(sorted({int(b) for b in self.batch_sizes}))
        if self.iterations < 1 or self.warmup < 0:
            raise EdgexferError("--iterations must be at least 1 and --warmup at least 0", "e.g. --warmup 10 --iterations 50")
        if self.target_sensitivity is not None:
            self.target_sensitivity = parse_fraction("--target-sensitivity", self.target_sensitivity)
        check_threads(self.threads)
        if isinstance(self.thresholds, dict):
            self.thresholds = Thresholds(**self.thresholds)
        if not isinstance(self.thresholds, Thresholds):
            raise EdgexferError(f"thresholds {self.thresholds!r} are not a Thresholds", "pass edgexfer.evaluate.gate.Thresholds")


def default_bench_dir(export: ExportDir) -> Path:
    """``benchmarks/<export name>`` beside the export's parent folder: derived from the export, not from the
    current directory, so that predict and package find it from the export alone."""
    return bench_dir_of(export.path, export.name)


def check_bench_out(out: Path) -> None:
    """--out may be new, empty, or an earlier bench folder (its files are replaced); anything else is refused,
    so that results.json, report.md and plots/ never land in a data folder (where plots/ would become a class)."""
    if out.exists() and not out.is_dir():
        raise EdgexferError(f"bench output {out} is a file", "pass a folder to --out")
    if out.is_dir() and any(out.iterdir()) and not is_bench_dir(out):
        raise EdgexferError(f"{out} is not empty and is not a bench folder (no bench results.json)",
                            "choose another --out or empty the folder")


def check_recorded_point(export: ExportDir, config: BenchConfig) -> None:
    """The export's recorded operating point is the one served, so it is the one judged: asking bench for
    another positive class or target sensitivity is one line (exit 2) before any work."""
    recorded = export.operating_point
    if recorded is None or (config.positive_class is None and config.target_sensitivity is None):
        return
    asked_class = config.positive_class or recorded.positive_class
    if asked_class != recorded.positive_class or config.target_sensitivity not in (None, recorded.target_sensitivity):
        target = (f"sensitivity {recorded.target_sensitivity:g}" if recorded.target_sensitivity is not None
                  else "Youden's J")
        raise EdgexferError(f"export {export.path} records the operating point '{recorded.positive_class}' at "
                            f"{recorded.threshold:.6g} ({target}), the one predict and package serve, not the "
                            "--positive-class/--target-sensitivity asked for",
                            "leave those options out to judge the recorded one, or re-export with them")

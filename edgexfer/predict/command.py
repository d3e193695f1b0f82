"""What ``edgexfer predict`` does: check the options, expand the inputs, predict, write the list."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from edgexfer._folders import refuse_overlap
from edgexfer.errors import EdgexferError
from edgexfer.io import check_writable
from edgexfer.predict.inputs import collect_inputs
from edgexfer.predict.predictor import DEFAULT_BATCH_SIZE, Predictor, check_batch_size
from edgexfer.predict.records import PredictionRun, check_output_path


def predict_inputs(export_dir: str | os.PathLike[str], inputs: Sequence[str | os.PathLike[str]], *,
                   precision: str = "auto", runtime: str = "auto", batch_size: int = DEFAULT_BATCH_SIZE,
                   out: str | os.PathLike[str] | None = None, bench: str | os.PathLike[str] | None = None,
                   allow_failed: bool = False, threads: int | None = None, progress: bool = False,
                   log: Callable[[str], None] | None = None) -> PredictionRun:
    """What ``edgexfer predict`` does: check the options, expand the inputs, predict, write ``out``.

    Everything a user can get wrong is checked before a model is loaded or a file written. Raises
    EdgexferError when no file could be read at all (nothing is written then).
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    check_batch_size(batch_size)
    if out is not None:
        check_output_path(out)
        check_writable(out)  # a read-only folder: said now, not after every image was predicted
        # inside the export or its bench, the list is deleted by the next export/bench; over an input list, lost.
        # A folder of images may hold it: only image files are read from folders.
        refuse_overlap(out, {"export folder": export_dir, "bench folder": bench})
        for given in inputs:
            if not Path(given).is_dir():
                refuse_overlap(out, {"input": given})
    files = collect_inputs(inputs)
    with Predictor(export_dir, precision, runtime, bench=bench, allow_failed=allow_failed, threads=threads,
                   batch_size=batch_size) as model:
        log(model.choice.line())
        if model.decision is not None:
            log(f"answers follow the clinical operating point from {model.decision.source}: "
                f"{model.decision.describe()}")
        result = model.predict_files(files.paths, batch_size, progress=progress)
    result.skipped = files.skipped + result.skipped
    for s in result.skipped:
        log(f"skipped {s.path}: {s.reason}")
    if not result.predictions:
        raise EdgexferError(f"none of the {len(files.paths) + len(files.skipped)} input image(s) could be read",
                            "check the files listed above")
    if out is not None:
        result.write(out)
    return result

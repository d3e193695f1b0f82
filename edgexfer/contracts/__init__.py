"""On-disk formats, one module per format: its dataclasses, its schema string (defined once, here), one
reader that validates and one writer (atomic, ``edgexfer.io.write_json``).

- ``run``: a run directory's run.json (+ its split reference), metrics.json (with its ``sanity`` record)
  and history.csv (docs/contracts.md section 2)
- ``calibration``: a calibration set's record (section 3)
- ``manifest``: an export's manifest.json (section 4)
- ``bench``: a bench's results.json and its typed rows (section 6)
- ``study``: a study's results.json and its rows (section 7)
- ``predictions``: predict's predictions.json and Grad-CAM's index.json (docs/predict.md)

A reader refuses a missing, foreign or older/newer file in one line (``EdgexferError``, exit 2) naming the
file and the fix. ``check_known_keys`` is the one check of option names every config takes.
docs/contracts.md is tested against these definitions (tests/contracts/test_contracts.py).

Importing this package loads no TensorFlow, ONNX Runtime or matplotlib.
"""

from __future__ import annotations

from edgexfer.contracts._base import check_known_keys, read_record

__all__ = ["check_known_keys", "read_record"]

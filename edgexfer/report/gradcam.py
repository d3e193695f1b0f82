"""The bench report's Grad-CAM section, from ``<bench>/gradcam/index.json`` alone (TensorFlow-free).

``edgexfer.explain`` writes the overlays and the index; this module only reads them, so the bench report
does not depend on the module that runs the Keras model.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from edgexfer.contracts.predictions import GRADCAM_DIR, Explanation
from edgexfer.contracts.predictions import read_gradcam_index as _read_index
from edgexfer.report.formats import md, md_url


def read_gradcam_index(bench_dir: str | os.PathLike[str]) -> tuple[dict[str, Any], list[Explanation]] | None:
    """``<bench>/gradcam/index.json`` (the record and its overlays), or None when there is none."""
    index = _read_index(Path(bench_dir) / GRADCAM_DIR)
    return None if index is None else (index.to_dict(), index.images)


def gradcam_markdown(bench_dir: str | os.PathLike[str]) -> str:
    """A report section showing the overlays in ``<bench>/gradcam/`` ("" when there are none)."""
    found = read_gradcam_index(bench_dir)
    if found is None:
        return ""
    record, explanations = found
    lines = ["## Grad-CAM: misclassified test images" if record.get("selection") == "misclassified"
             else "## Grad-CAM", ""]
    if record.get("selection") == "misclassified":
        lines += [f"Where the source model (Keras, FP32) looked in {len(explanations)} of its "
                  f"{record.get('misclassified', '?')} mistakes on the {record.get('n', '?')} test images, most "
                  "confident first (`edgexfer explain RUN_DIR --misclassified BENCH_DIR`). Red: the regions that "
                  "raised the predicted class's score most.", ""]
    if not explanations:
        lines += ["No misclassified test image: nothing to show.", ""]
    for e in explanations:
        caption = f"{Path(e.source).name}: predicted {e.predicted_class} ({e.probability:.2f})" + (
            f", true {e.true_class}" if e.true_class else "")
        lines += [f"![{md(caption)}]({md_url(f'{GRADCAM_DIR}/{e.file}')})", ""]
    return "\n".join(lines) + "\n"


__all__ = ["gradcam_markdown", "read_gradcam_index"]

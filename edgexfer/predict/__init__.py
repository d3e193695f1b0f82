"""Use a verified model: ``Predictor`` runs one artifact of an export on new images, without TensorFlow.

The pixels a deployed model sees are the ones bench measured: images are read by
``edgexfer.data.images.load_image`` (the one decode + resize of training, calibration and bench),
the artifact is opened through the runtime table (``edgexfer.runtime.RUNTIMES``) and checked against
the export manifest's sha256 first (``edgexfer.evaluate.exported.load_export``) and again once loaded.
Which artifact runs is decided by :func:`choose_artifact`: ``precision="auto"`` takes what the bench
recommends (results.json ``recommended``: the fastest artifact whose accuracy gate passed, across runtimes
and precisions) where its bytes and runtime can serve here, else the fastest that passed here and says why;
an artifact whose gate failed is refused unless ``allow_failed=True``. A verdict counts only for the bytes it judged: bench rows carry the
sha256 of the file they ran, matched to the manifest's, never to an artifact's name. Bench results are
found from the export (``edgexfer.contracts.bench.bench_locations``) or named (``bench=``), never in
the current directory.

``Predictor.predict`` is safe to call from several threads at once (one model, many web requests):
ONNX Runtime sessions run concurrently; other backends (TensorRT contexts) are serialized by a lock.

The parts, each its own module under this package (this package's names are the public surface):

* ``evidence``: a bench's verdicts bound to the bytes they judged (``BenchEvidence``, ``GateVerdict``);
* ``choose``: which artifact and runtime answer (``choose_artifact``, ``Choice``);
* ``predictor``: the ``Predictor`` that runs the chosen artifact;
* ``inputs``: the image files named on a command line (``collect_inputs``);
* ``records``: what a run produced and how it is written (``Prediction``, ``PredictionRun``);
* ``command``: what ``edgexfer predict`` does (``predict_inputs``).
"""

from __future__ import annotations

from edgexfer.predict.choose import PRECISIONS as PRECISIONS
from edgexfer.predict.choose import PREDICT_RUNTIMES as PREDICT_RUNTIMES
from edgexfer.predict.choose import Choice, choose_artifact
from edgexfer.predict.command import predict_inputs
from edgexfer.predict.evidence import BenchEvidence, GateVerdict
from edgexfer.predict.evidence import bench_again as bench_again
from edgexfer.predict.inputs import InputFiles, collect_inputs
from edgexfer.predict.predictor import DEFAULT_BATCH_SIZE as DEFAULT_BATCH_SIZE
from edgexfer.predict.predictor import Predictor
from edgexfer.predict.predictor import check_unchanged as check_unchanged
from edgexfer.predict.predictor import served_decision as served_decision
from edgexfer.predict.records import Prediction, PredictionRun, SkippedImage
from edgexfer.predict.records import check_output_path as check_output_path

__all__ = ["BenchEvidence", "Choice", "GateVerdict", "InputFiles", "Prediction", "PredictionRun", "Predictor",
           "SkippedImage", "choose_artifact", "collect_inputs", "predict_inputs"]

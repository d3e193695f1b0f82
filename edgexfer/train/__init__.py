"""Training: ``finetune(FinetuneConfig) -> RunResult`` writes a run directory (docs/contracts.md §2).

    from edgexfer.config import FinetuneConfig
    from edgexfer.train import finetune
    result = finetune(FinetuneConfig(data="demo", backbone="tinycnn", out="runs/demo", image_size=64))
    result.metrics["accuracy"], result.run_dir

Importing this package does not import TensorFlow; training does.
"""

from edgexfer.config import FinetuneConfig
from edgexfer.train.trainer import RunResult, finetune, load_run

__all__ = ["FinetuneConfig", "RunResult", "finetune", "load_run"]

"""`edgexfer demo`: the whole pipeline on synthetic chest X-rays, in a few minutes on a CPU."""

from __future__ import annotations

import click

from edgexfer.cli._choices import backbone_choice


@click.command()
@click.option("--out", default="runs/demo", show_default=True, type=click.Path(file_okay=False),
              help="Folder for the data, run, export and bench.")
@click.option("--backbone", default="tinycnn", show_default=True, type=backbone_choice(), metavar="NAME",
              help="A registered backbone (`edgexfer backbones` describes them), e.g. mobilenetv3small.")
@click.option("--weights", default="none", show_default=True,
              help="imagenet (needs internet or the Keras cache), none, or a weights file.")
@click.option("--image-size", type=int, default=64, show_default=True, help="Model input side in pixels.")
@click.option("--per-class", type=int, default=500, show_default=True, help="Synthetic images per class.")
@click.option("--epochs", type=int, default=12, show_default=True, help="Epochs with the backbone frozen (or all, from scratch).")
@click.option("--fine-tune-epochs", type=int, default=4, show_default=True, help="Gradual-unfreezing epochs (pretrained weights).")
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out, backbone, weights, image_size, per_class, epochs, fine_tune_epochs, seed):
    """Synthetic chest X-rays → fine-tune → export FP32/FP16/INT8 → bench, with the accuracy gate.

    Ends with the summary table (precision × runtime) and the verdict; exit 1 when a precision breaks
    the gate, 3 when the test images are too few to decide it. Needs the train extra; checked before
    anything is written.
    """
    from edgexfer.demo import DemoConfig, run_demo

    run_demo(DemoConfig(out=out, backbone=backbone, weights=weights, image_size=image_size, per_class=per_class,
                        epochs=epochs, fine_tune_epochs=fine_tune_epochs, seed=seed))

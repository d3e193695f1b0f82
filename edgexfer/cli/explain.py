"""`edgexfer explain`: Grad-CAM overlays from a run's Keras model (needs the train extra)."""

from __future__ import annotations

import click


@click.command("explain")
@click.argument("run_dir", type=click.Path(path_type=str))
@click.argument("images", nargs=-1, type=click.Path(path_type=str))
@click.option("--out", type=click.Path(path_type=str), default=None,
              help="Folder for the overlays of IMAGES (<stem>_gradcam.png and index.json).")
@click.option("--misclassified", "bench_dir", type=click.Path(path_type=str), default=None,
              help="Instead of IMAGES: the test images of this bench folder that the model gets wrong; the "
                   "overlays go to BENCH_DIR/gradcam/ and the bench report shows them.")
@click.option("--limit", type=click.IntRange(min=1), default=6, show_default=True,
              help="With --misclassified: how many images (most confident mistakes first).")
@click.option("--class", "target_class", default=None,
              help="Explain this class instead of the predicted one (IMAGES only).")
@click.option("--batch-size", type=click.IntRange(min=1), default=16, show_default=True, help="Images per call.")
def explain(run_dir, images, out, bench_dir, limit, target_class, batch_size) -> None:
    """Where did the model look? Grad-CAM heat maps over IMAGES (files, folders or CSV lists of paths),
    computed on the last convolutional block of the run's backbone, written as PNG overlays."""
    import sys

    from edgexfer.errors import EdgexferError

    if bench_dir is None and not images:
        raise EdgexferError("no images to explain", "pass image files/folders with --out DIR, or --misclassified BENCH_DIR")
    if bench_dir is not None and (images or out or target_class):
        raise EdgexferError("--misclassified takes no IMAGES, --out or --class",
                            "run explain twice: once for the bench, once for your images")
    if bench_dir is None and out is None:
        raise EdgexferError("--out is required with IMAGES", "e.g. --out gradcam/")
    progress = sys.stderr.isatty()
    if bench_dir is not None:
        from edgexfer.explain import explain_misclassified

        done = explain_misclassified(run_dir, bench_dir, limit=limit, batch_size=batch_size, progress=progress)
        click.echo(f"{len(done)} Grad-CAM overlay(s) of misclassified test images in {bench_dir}/gradcam; "
                   f"report redrawn: {bench_dir}/report.md")
        return
    from edgexfer.explain import explain_images

    done = explain_images(run_dir, images, out, target_class=target_class, batch_size=batch_size, progress=progress,
                          log=lambda line: click.echo(line, err=True))
    click.echo(f"{len(done)} Grad-CAM overlay(s) in {out}")

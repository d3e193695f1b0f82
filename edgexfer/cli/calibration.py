"""`edgexfer calibration build RUN_DIR` and `edgexfer calibration show PATH`."""

from __future__ import annotations

from pathlib import Path

import click


@click.group()
def calibration() -> None:
    """Calibration sets: stratified samples of a run's train split, reusable on another machine."""


@calibration.command()
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Folder or .npz path (default: calibration/cal-<split fingerprint>-<H>x<W>-<images>-seed<seed>.npz: "
                   "named by the run's split, never by its folder name).")
@click.option("--size", type=int, default=500, show_default=True, help="Number of images.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--data", "data_root", type=click.Path(path_type=Path), default=None,
              help="Where the run's images are now, when they moved since training.")
def build(run_dir: Path, out: Path | None, size: int, seed: int, data_root: Path | None) -> None:
    """Draw a calibration set from the train split of RUN_DIR."""
    from edgexfer.data.calibration import build_calibration_set

    path = build_calibration_set(run_dir, out, size, seed, data_root=data_root, progress=True)
    click.echo(f"calibration set: {path} (+ {path.with_suffix('.json').name})")


@calibration.command()
@click.argument("path", type=click.Path(path_type=Path))
def show(path: Path) -> None:
    """Describe the calibration set PATH (.npz or .json), checking its hash and shapes."""
    from edgexfer.data.calibration import load_calibration_set

    info = load_calibration_set(path).describe()
    h, w = info["image_size"]
    click.echo(f"id:          {info['id']}")
    click.echo(f"file:        {info['npz']} ({info['size_bytes'] / 1e6:.1f} MB, sha256 {info['sha256'][:16]}…)")
    click.echo(f"source run:  {info['source_run']['name']} ({info['split']} split, seed {info['seed']})")
    click.echo(f"images:      {info['size']} at {h}x{w}")
    click.echo("classes:     " + ", ".join(f"{c} {n}" for c, n in info["class_counts"].items()))

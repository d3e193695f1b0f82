"""`edgexfer data …`: data set helpers (the synthetic demo set)."""

from __future__ import annotations

import click


@click.group()
def data() -> None:
    """Data set helpers."""


@data.command()
@click.argument("out_dir", type=click.Path(file_okay=False))
@click.option("--per-class", default=100, show_default=True, type=click.IntRange(min=1), help="Images per class.")
@click.option("--size", default=128, show_default=True, type=click.IntRange(min=1), help="Image side in pixels.")
@click.option("--seed", default=0, show_default=True, type=int, help="Same seed, same files.")
def demo(out_dir: str, per_class: int, size: int, seed: int) -> None:
    """Write the synthetic chest-X-ray-like demo set (normal, pneumonia, nodule) as PNG class folders."""
    from edgexfer.data.synthetic import DEMO_CLASSES, generate_demo

    path = generate_demo(out_dir, per_class=per_class, size=size, seed=seed)
    click.echo(f"wrote {per_class * len(DEMO_CLASSES)} images ({', '.join(DEMO_CLASSES)}; {size}x{size} px, seed {seed}) to {path}")

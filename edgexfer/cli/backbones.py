"""`edgexfer backbones`: the registered backbones with input size and parameter count."""

from __future__ import annotations

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the table as JSON.")
def backbones(as_json: bool) -> None:
    """List the backbones: native and minimum input size, parameters (without head), preprocessing."""
    from edgexfer.backbones.registry import list_backbones

    specs = list_backbones()
    if as_json:
        import json

        rows = [{"name": s.name, "display_name": s.display_name, "family": s.family, "native_size": s.native_size,
                 "min_size": s.min_size, "parameters": s.parameters, "preprocessing": s.preprocessing,
                 "imagenet": s.imagenet, "unfreeze_points": list(s.unfreeze_points)} for s in specs]
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'name':<18}{'family':<14}{'input':>9}{'min':>6}{'params':>10}  {'preprocessing':<10}{'imagenet':>9}")
    for s in specs:
        size = f"{s.native_size}x{s.native_size}"
        click.echo(f"{s.name:<18}{s.family:<14}{size:>9}{s.min_size:>6}{s.parameters / 1e6:>9.2f}M  "
                   f"{s.preprocessing:<10}{'yes' if s.imagenet else 'no':>9}")
    click.echo("parameters: the backbone without its head; preprocessing runs inside the model on raw 0-255 RGB.")

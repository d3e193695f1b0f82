"""`edgexfer doctor`: versions, GPU, usable runtimes and cache locations, for bug reports."""

from __future__ import annotations

import click


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON (for scripts).")
def doctor(as_json: bool) -> None:
    """What this machine has: Python, TensorFlow/Keras, ONNX, ONNX Runtime and its providers, TensorRT,
    the CUDA driver and GPU; which runtimes `edgexfer bench` would use here and why the others are
    skipped; where weights and calibration sets are cached. Paste it into bug reports. Always exits 0.
    """
    from edgexfer.doctor import diagnose, doctor_lines

    report = diagnose()
    if as_json:
        import json

        click.echo(json.dumps(report.as_dict(), indent=2))
    else:
        click.echo("\n".join(doctor_lines(report)))

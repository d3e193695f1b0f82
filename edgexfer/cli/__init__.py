"""The `edgexfer` command: a thin click layer over the library.

Each command lives in its own module and makes one library call; library imports happen inside
the command body so that `edgexfer bench --help` never imports TensorFlow. Commands are loaded
lazily from the table below.
"""

from __future__ import annotations

import importlib
import sys

import click

from edgexfer import __version__
from edgexfer.errors import EdgexferError, Interrupted

# command name -> "module:attribute"
COMMANDS: dict[str, str] = {
    "data": "edgexfer.cli.data:data",
    "backbones": "edgexfer.cli.backbones:backbones",
    "finetune": "edgexfer.cli.finetune:finetune",
    "calibration": "edgexfer.cli.calibration:calibration",
    "export": "edgexfer.cli.export:export",
    "bench": "edgexfer.cli.bench:bench",
    "compare": "edgexfer.cli.compare:compare",
    "report": "edgexfer.cli.report:report",
    "demo": "edgexfer.cli.demo:demo",
    "predict": "edgexfer.cli.predict:predict",
    "package": "edgexfer.cli.package:package",
    "explain": "edgexfer.cli.explain:explain",
    "doctor": "edgexfer.cli.doctor:doctor",
}


class UserError(click.ClickException):
    """An EdgexferError shown as one line with its own exit code (2 bad input, 1 gate failed)."""

    def __init__(self, error: EdgexferError):
        super().__init__(error.line())
        self.exit_code = error.exit_code  # type: ignore[misc]  # click declares it a ClassVar; per error here

    def show(self, file=None) -> None:  # noqa: D102 - one line, no usage dump
        click.echo(f"edgexfer: error: {self.message}", err=True)


class LazyGroup(click.Group):
    """A group whose sub-commands are imported on first use, and whose errors are one line."""

    def __init__(self, *args, lazy_commands: dict[str, str] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.lazy_commands = lazy_commands or {}

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(self.lazy_commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy_commands:
            module_name, attr = self.lazy_commands[cmd_name].split(":")
            try:
                module = importlib.import_module(module_name)
            except ModuleNotFoundError as exc:
                if exc.name == module_name:  # command not shipped in this build
                    return None
                raise
            return getattr(module, attr)
        return super().get_command(ctx, cmd_name)

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except EdgexferError as exc:
            raise UserError(exc) from None
        except KeyboardInterrupt:  # click would print "Aborted!" and exit 1, the failed-gate code
            raise UserError(Interrupted()) from None


@click.group(cls=LazyGroup, lazy_commands=COMMANDS, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="edgexfer")
@click.option("-v", "--verbose", is_flag=True,
              help="Show everything the libraries print (TensorFlow/absl notices, dependency warnings).")
def cli(verbose: bool) -> None:
    """edgexfer: fine-tune a medical-image classifier, export it to ONNX/TensorRT at FP32/FP16/INT8,
    and prove on the target that the fast model still makes the same diagnoses."""
    from edgexfer.logs import configure

    configure(verbose=verbose)  # before any command imports TensorFlow


def main(argv: list[str] | None = None) -> None:
    cli.main(args=argv, prog_name="edgexfer")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])

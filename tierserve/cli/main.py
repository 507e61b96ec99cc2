"""Entry point of the ``tierserve`` command: registers every sub-command, and prints
typer's usage errors as the CLI's one-line ``error: FLAG: ...`` (exit 1)."""

from __future__ import annotations

import sys
from importlib import resources

import typer

try:  # typer >= 0.2x vendors click
    from typer._click.exceptions import NoArgsIsHelpError, UsageError
except ImportError:  # typer on click
    from click.exceptions import NoArgsIsHelpError, UsageError  # type: ignore[assignment]

from tierserve import __version__
from tierserve.cli import apply as apply_cli
from tierserve.cli import bench as bench_cli
from tierserve.cli import dashboard as dashboard_cli
from tierserve.cli import demo as demo_cli
from tierserve.cli import engine as engine_cli
from tierserve.cli import gateway as gateway_cli
from tierserve.cli import kube as kube_cli
from tierserve.cli import kubectl as kubectl_cli
from tierserve.cli import local as local_cli
from tierserve.cli import serve as serve_cli
from tierserve.cli import simulate as simulate_cli
from tierserve.cli.output import fail, print_error, usage_error
from tierserve.errors import FieldError, ValidationError

app = typer.Typer(
    name="tierserve",
    help="Serve LLMs on your own GPUs first, overflow to cloud GPUs, give the cloud back first.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


app.add_typer(engine_cli.app, name="engine")
local_cli.register(app)
apply_cli.register(app)
kubectl_cli.register(app)
serve_cli.register(app)
demo_cli.register(app)
kube_cli.register(app)
bench_cli.register(app)
gateway_cli.register(app)
simulate_cli.register(app)
dashboard_cli.register(app)


@app.command()
def version() -> None:
    """Print tierserve's version."""
    typer.echo(__version__)


EXAMPLES = {
    "cluster": (
        "cluster.yaml",
        "Nodes for `up --cluster`: 2 IDC nodes x 2 GPUs, a virtual node (quota, price, cold start)",
    ),
    "seed": ("seed", "the seed's Secret, PV, PVC and ResourcePolicy, for `apply -f`"),
}
"""The example files in ``tierserve/examples`` (package data), by name."""


@app.command()
def example(
    name: str | None = typer.Argument(
        None, help=f"One of {', '.join(EXAMPLES)} (default: list them).", show_default=False
    ),
    path: bool = typer.Option(
        False, "--path", help="Print where the installed file is, not its text."
    ),
) -> None:
    """Print an example file that ships with tierserve (e.g. for `up --cluster`)."""
    if name is None:
        for key, (_, what) in EXAMPLES.items():
            typer.echo(f"{key:<10}{what}")
        return
    if name not in EXAMPLES:
        fail(
            ValidationError(
                "", [FieldError("NAME", f"{name!r} is not one of {', '.join(EXAMPLES)}")]
            )
        )
    found = resources.files("tierserve.examples").joinpath(EXAMPLES[name][0])
    if path:
        typer.echo(str(found))
    elif found.is_dir():
        files = sorted((f for f in found.iterdir() if f.name.endswith(".yaml")), key=str)
        typer.echo("---\n".join(f.read_text("utf-8") for f in files), nl=False)
    else:
        typer.echo(found.read_text("utf-8"), nl=False)


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except NoArgsIsHelpError as exc:  # the help is printed already
        sys.exit(exc.exit_code)
    except UsageError as exc:
        print_error(usage_error(exc))
        sys.exit(1)
    except typer.Abort:
        print_error("aborted")
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()

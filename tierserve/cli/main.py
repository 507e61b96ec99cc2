"""Entry point of the ``tierserve`` command: registers every sub-command."""

from __future__ import annotations

import typer

from tierserve import __version__
from tierserve.cli import apply as apply_cli
from tierserve.cli import bench as bench_cli
from tierserve.cli import demo as demo_cli
from tierserve.cli import engine as engine_cli
from tierserve.cli import gateway as gateway_cli
from tierserve.cli import kube as kube_cli
from tierserve.cli import kubectl as kubectl_cli
from tierserve.cli import local as local_cli
from tierserve.cli import serve as serve_cli

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


@app.command()
def version() -> None:
    """Print tierserve's version."""
    typer.echo(__version__)


def main() -> None:
    app()


if __name__ == "__main__":
    main()

"""Options and helpers every control-plane command shares."""

from __future__ import annotations

from pathlib import Path

import typer

from tierserve.cli.output import fail
from tierserve.errors import TierserveError
from tierserve.runtime.local.client import Client
from tierserve.runtime.local.config import ENV_STATE_DIR, state_dir

StateDirOption = typer.Option(
    None,
    "--state-dir",
    envvar=ENV_STATE_DIR,
    help=f"State directory of the control plane (default: ${ENV_STATE_DIR}, then the "
    "user's data directory).",
    show_default=False,
)
NamespaceOption = typer.Option("default", "-n", "--namespace", help="Namespace.")


def root_of(explicit: Path | None) -> Path:
    return state_dir(explicit)


def client_for(explicit: Path | None) -> Client:
    """A client of the control plane of this state directory, or exit with why not."""
    try:
        return Client.from_state_dir(root_of(explicit))
    except TierserveError as exc:
        fail(exc)

"""Shared CLI output helpers: errors to stderr with a non-zero exit, kubectl-style names."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console

from tierserve.errors import TierserveError, ValidationError
from tierserve.model import TypedObject

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def fail(error: TierserveError | str, code: int = 1) -> NoReturn:
    """Print ``error: ...`` (every field of a ValidationError on its own line) and exit."""
    if isinstance(error, ValidationError):
        for field in error.errors:
            err_console.print(f"error: {field.render(error.subject)}", markup=False)
    else:
        err_console.print(f"error: {error}", markup=False)
    raise typer.Exit(code)


def resource_name(obj: TypedObject) -> str:
    """kubectl's ``kind.group/name`` form, e.g. ``resourcepolicy.scheduling.tierserve.io/x``."""
    group = obj.api_version.split("/")[0] if "/" in obj.api_version else ""
    kind = obj.kind.lower()
    return f"{kind}.{group}/{obj.name}" if group else f"{kind}/{obj.name}"

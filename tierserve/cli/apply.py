"""``tierserve apply`` and ``tierserve validate``: load manifests and check them field by field."""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from tierserve.cli.common import StateDirOption, root_of
from tierserve.cli.output import fail, resource_name
from tierserve.errors import FieldError, NotFoundError, TierserveError, ValidationError
from tierserve.model import TypedObject, dump_documents, load_documents
from tierserve.runtime.local.client import Client

_YAML_SUFFIXES = (".yaml", ".yml", ".json")


def read_sources(files: list[str]) -> list[tuple[str, str]]:
    """(source name, text) for each file, directory entry (*.yaml, *.yml, *.json) or ``-``."""
    sources: list[tuple[str, str]] = []
    for name in files:
        if name == "-":
            sources.append(("<stdin>", sys.stdin.read()))
            continue
        path = Path(name)
        if path.is_dir():
            entries = sorted(p for p in path.iterdir() if p.suffix in _YAML_SUFFIXES)
            if not entries:
                fail(ValidationError(name, [FieldError("", "directory holds no .yaml/.yml/.json")]))
            sources.extend((str(p), p.read_text(encoding="utf-8")) for p in entries)
        elif path.is_file():
            sources.append((name, path.read_text(encoding="utf-8")))
        else:
            fail(ValidationError(name, [FieldError("", "no such file or directory")]))
    return sources


def load_manifests(files: list[str]) -> list[TypedObject]:
    """Every object of every file, or exit non-zero listing every bad field of every file."""
    objects: list[TypedObject] = []
    errors: list[ValidationError] = []
    for source, text in read_sources(files):
        try:
            objects.extend(load_documents(text, source))
        except ValidationError as exc:
            errors.append(exc)
    if errors:
        for earlier in errors[:-1]:
            for field in earlier.errors:
                typer.echo(f"error: {field.render(earlier.subject)}", err=True)
        fail(errors[-1])
    return objects


FilesOption = typer.Option(..., "-f", "--filename", help="File, directory or - for stdin.")


def register(app: typer.Typer) -> None:
    @app.command()
    def validate(files: list[str] = FilesOption) -> None:
        """Check manifests field by field without changing anything."""
        for obj in load_manifests(files):
            typer.echo(f"{resource_name(obj)} valid")

    @app.command()
    def apply(
        files: list[str] = FilesOption,
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Validate and print what would change; change nothing."
        ),
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Create or update objects from manifests (kubectl apply -f).

        Every document of every file is validated first; if any is bad nothing changes.
        With --dry-run and no control plane running, the manifests are only validated.
        """
        objects = load_manifests(files)
        try:
            client = Client.from_state_dir(root_of(state_dir))
        except NotFoundError:
            if not dry_run:
                fail(
                    NotFoundError(
                        f"no control plane found in {root_of(state_dir)}: start one with "
                        "`tierserve up` (or validate only with --dry-run)"
                    )
                )
            for obj in objects:
                typer.echo(f"{resource_name(obj)} created (dry run)")
            return
        suffix = " (dry run)" if dry_run else ""
        documents = dump_documents(objects, redact=False)
        try:
            source = ", ".join("<stdin>" if f == "-" else f for f in files)
            results = client.apply(documents, source, dry_run=dry_run)
        except TierserveError as exc:
            fail(exc)
        by_key = {(o.KIND, o.name): o for o in objects}
        for r in results:
            obj = by_key[(r["kind"], r["name"])]
            typer.echo(f"{resource_name(obj)} {r['action']}{suffix}")

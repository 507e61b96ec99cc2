"""kubectl-like verbs against the local control plane: ``get`` (``-l``, ``-o name``,
``--watch``, ``get events``), ``describe``, ``delete``. This module asks the API and prints;
the rows, names and describe sections it prints are laid out in ``kubectl_layout.py``."""

from __future__ import annotations

import contextlib
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path

import typer
import yaml

from tierserve.cli.apply import FilesOption, read_sources
from tierserve.cli.common import (
    NamespaceOption,
    Requirement,
    SelectorOption,
    StateDirOption,
    client_for,
    parse_selector,
    selected,
)
from tierserve.cli.kubectl_layout import (
    UNKNOWN_HOST,
    WITHOUT_EVENTS,
    Host,
    Obj,
    Row,
    describe_generic,
    describe_node,
    describe_pod,
    describe_secret,
    describe_service,
    gone_row,
    labels,
    name_of,
    table,
)
from tierserve.cli.output import fail, object_name
from tierserve.cli.tables import column_widths, describe_events, describe_lines, render, render_row
from tierserve.errors import FieldError, TierserveError, ValidationError
from tierserve.model.names import PLURALS, resolve_resource
from tierserve.runtime.local.client import Client

EVENTS = ("events", "event", "ev")
"""``get events``: what the control plane recorded (``GET /api/v1/events``); not objects."""
WATCH_POLL_S = 0.5
"""How often ``get --watch`` lists again (the API has no watch endpoint)."""
OUTPUTS = ("wide", "yaml", "json", "name")


def _os_image() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return platform.system()


def _table(
    plural: str, items: list[Obj], output: str | None, all_namespaces: bool, now: float
) -> tuple[Row, list[Row]]:
    """``table`` with this machine as the host (asked only for ``get nodes -o wide``)."""
    wide_nodes = plural == "nodes" and output == "wide"
    host = Host(_os_image(), platform.release()) if wide_nodes else UNKNOWN_HOST
    return table(plural, items, output, all_namespaces, now, host)


def _print_objects(items: list[Obj], output: str, single: bool) -> None:
    if output == "json":
        typer.echo(json.dumps(items[0] if single else {"kind": "List", "items": items}, indent=2))
    else:
        doc = items[0] if single else {"apiVersion": "v1", "kind": "List", "items": items}
        typer.echo(yaml.safe_dump(doc, sort_keys=False).rstrip())


def _describe(client: Client, plural: str, namespaced: bool, obj: Obj, now: float) -> list[str]:
    """Ask the API for what ``plural``'s section shows besides ``obj``; lay it out."""
    meta = obj["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    if plural == "pods":
        entries = describe_pod(
            obj, {n["metadata"]["name"]: n for n in client.list_objects("nodes")}
        )
    elif plural == "nodes":
        entries = describe_node(obj, client.list_objects("pods", None), now)
    elif plural == "inferenceservices":
        entries = describe_service(obj, client.cost()["services"].get(f"{namespace}/{name}"))
    elif plural == "secrets":
        entries = describe_secret(obj)
    else:
        entries = describe_generic(obj, namespaced)
    if plural not in WITHOUT_EVENTS:
        entries += describe_events(
            client.events(resource=plural, name=name, namespace=namespace), now
        )
    return describe_lines(entries)


# -- get --watch -------------------------------------------------------------------------------


def _watch(
    list_items: Callable[[], list[Obj]],
    plural: str,
    output: str | None,
    all_namespaces: bool,
    where: str,
) -> None:
    """``get -w``: the table, then a row for each object that appears, changes (any column
    but AGE) or goes (its last row again, as kubectl prints a deletion). Lists every
    ``WATCH_POLL_S``; Ctrl-C ends it (exit 0, in the caller)."""
    shown: dict[tuple[str, str], tuple[list[str], list[str]]] = {}  # key -> (row, w/o AGE)
    widths: list[int] | None = None
    first = True
    while True:
        items = list_items()
        now = time.time()
        headers, rows = _table(plural, items, output, all_namespaces, now)
        age_at = headers.index("AGE") if "AGE" in headers else None
        current: dict[tuple[str, str], tuple[list[str], list[str]]] = {}
        for item, row in zip(items, rows, strict=True):
            key = (item["metadata"].get("namespace", ""), item["metadata"]["name"])
            text = name_of(item) if output == "name" else ""
            signature = [c for i, c in enumerate(row) if i != age_at]
            current[key] = ([text] if output == "name" else row, signature)
        changed = [v[0] for k, v in current.items() if k not in shown or shown[k][1] != v[1]]
        changed += [gone_row(plural, headers, v[0]) for k, v in shown.items() if k not in current]
        if first and not items:
            typer.echo(f"No resources found{where}.", err=True)
        if output == "name":
            for line in changed:
                typer.echo(line[0])
        elif changed:
            if widths is None:
                widths = column_widths(headers, changed)
                typer.echo(render_row(widths, headers))
            for row in changed:
                typer.echo(render_row(widths, row))
        shown, first = current, False
        time.sleep(WATCH_POLL_S)


def _get_events(
    state_dir: Path | None,
    name: str | None,
    output: str | None,
    requirements: list[Requirement],
    watch: bool,
    namespace: str,
    all_namespaces: bool,
) -> None:
    """``get events``: a table (or -o yaml/json) of what ``GET /api/v1/events`` answers;
    events have neither names nor labels, and the API no watch."""
    errors = []
    if name:
        errors.append(
            FieldError("NAME", "events have no names; `describe KIND NAME` shows an "
                       "object's events")
        )  # fmt: skip
    if requirements:
        errors.append(FieldError("-l", "events have no labels"))
    if output in ("name", "wide") or watch:
        errors.append(FieldError("-o" if output else "-w", "get events prints a table, "
                                 "-o yaml or -o json"))  # fmt: skip
    if errors:
        raise ValidationError("", errors)
    client = client_for(state_dir)
    query = {} if all_namespaces else {"namespace": namespace}
    items = sorted(client.events(**query), key=lambda e: e["lastTimestamp"])
    if output in ("yaml", "json"):
        _print_objects(items, output, single=False)
    elif not items:
        where = "" if all_namespaces else f" in {namespace} namespace"
        typer.echo(f"No resources found{where}.", err=True)
    else:
        typer.echo(render(*_table("events", items, None, all_namespaces, time.time())))


def register(app: typer.Typer) -> None:
    @app.command()
    def get(
        resource: str = typer.Argument(
            ...,
            help="nodes, pods, resourcepolicies (rp), inferenceservices (isvc), pv, pvc, "
            "secrets, events (ev)",
        ),
        name: str | None = typer.Argument(None),
        output: str | None = typer.Option(
            None, "-o", "--output", help="wide|yaml|json|name (default: a table)."
        ),
        selector: str | None = SelectorOption,
        watch: bool = typer.Option(
            False, "-w", "--watch", help="After the table, a line per change, until Ctrl-C."
        ),
        namespace: str = NamespaceOption,
        all_namespaces: bool = typer.Option(
            False, "-A", "--all-namespaces", help="Every namespace (default: -n's)."
        ),
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Display objects (kubectl get)."""
        errors = []
        if output not in (None, *OUTPUTS):
            errors.append(FieldError("-o", f"{output!r} is not one of {', '.join(OUTPUTS)}"))
        if watch and output in ("yaml", "json"):
            errors.append(FieldError("-w", f"prints table rows or names, not -o {output}"))
        if selector is not None and name:
            errors.append(FieldError("-l", "a NAME and a selector cannot be given together"))
        if errors:
            fail(ValidationError("", errors))
        try:
            requirements = parse_selector(selector) if selector is not None else []
            if resource.lower() in EVENTS:
                _get_events(state_dir, name, output, requirements, watch, namespace, all_namespaces)
                return
            cls = resolve_resource(resource)
            client = client_for(state_dir)
            plural = PLURALS[cls]
            by_namespace = cls.NAMESPACED and all_namespaces
            where = f" in {namespace} namespace" if cls.NAMESPACED and not all_namespaces else ""

            def list_items() -> list[Obj]:
                items = client.list_objects(plural, None if by_namespace else namespace)
                if name:
                    items = [i for i in items if i["metadata"]["name"] == name]
                return [i for i in items if selected(labels(i), requirements)]

            if watch:
                if name:
                    client.get(plural, name, namespace)  # NotFound: say so, as kubectl
                with contextlib.suppress(KeyboardInterrupt):
                    _watch(list_items, plural, output, by_namespace, where)
                return
            items = [client.get(plural, name, namespace)] if name else list_items()
        except TierserveError as exc:
            fail(exc)
        if output in ("yaml", "json"):
            _print_objects(items, output, single=bool(name))
        elif output == "name":
            for item in items:
                typer.echo(name_of(item))
        elif not items:
            typer.echo(f"No resources found{where}.", err=True)
        else:
            typer.echo(render(*_table(plural, items, output, by_namespace, time.time())))

    @app.command()
    def describe(
        resource: str = typer.Argument(...),
        name: str = typer.Argument(...),
        namespace: str = NamespaceOption,
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Show one object in detail, with its events (kubectl describe)."""
        try:
            cls = resolve_resource(resource)
            client = client_for(state_dir)
            plural = PLURALS[cls]
            obj = client.get(plural, name, namespace)
            lines = _describe(client, plural, cls.NAMESPACED, obj, time.time())
        except TierserveError as exc:
            fail(exc)
        typer.echo("\n".join(lines))

    @app.command()
    def delete(
        resource: str | None = typer.Argument(None),
        names: list[str] | None = typer.Argument(None),
        files: list[str] | None = typer.Option(
            None, "-f", "--filename", help="Delete what these manifests name."
        ),
        namespace: str = NamespaceOption,
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Delete objects by name or by manifest (kubectl delete)."""
        try:
            client = client_for(state_dir)
            results: list[dict[str, str]] = []
            if files:
                for source, text in read_sources(files):
                    results += client.delete_documents(text, source)
            elif resource and names:
                plural = PLURALS[resolve_resource(resource)]
                for name in names:
                    results += client.delete(plural, name, namespace)
            else:
                fail(
                    ValidationError(
                        "delete", [FieldError("", "expected RESOURCE NAME... or -f FILE")]
                    )
                )
        except TierserveError as exc:
            fail(exc)
        for r in results:
            typer.echo(
                f"{object_name(r['kind'], r.get('apiVersion', ''), r['name'])} {r['action']}"
            )


__all__ = ["FilesOption", "register"]

"""kubectl-like verbs against the local control plane: ``get`` (``-l``, ``-o name``,
``--watch``, ``get events``), ``describe``, ``delete``; the per-kind table rows and describe
sections (the generic layout is in ``tables.py``)."""

from __future__ import annotations

import contextlib
import json
import platform
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
import yaml

from tierserve import __version__
from tierserve.cli.apply import FilesOption, read_sources
from tierserve.cli.arena_layout import instance_status
from tierserve.cli.common import (
    NamespaceOption,
    Requirement,
    SelectorOption,
    StateDirOption,
    client_for,
    parse_selector,
    selected,
)
from tierserve.cli.output import fail, kind_name, object_name
from tierserve.cli.tables import (
    Entry,
    age_of,
    column_widths,
    describe_events,
    describe_lines,
    event_age,
    indented_table,
    mapping_entries,
    nested_entries,
    parse_timestamp,
    render,
    render_row,
    timestamp,
)
from tierserve.errors import FieldError, TierserveError, ValidationError
from tierserve.model.names import PLURALS, resolve_resource
from tierserve.model.quantity import parse_milli
from tierserve.model.replica import TIER_LABEL
from tierserve.model.resources import CPU, GPU, MEMORY, format_amount
from tierserve.runtime.local.client import Client

Row = list[str]
Obj = dict[str, Any]

NODE_VERSION = f"v{__version__}-tierserve"


def _os_image() -> str:
    try:
        return platform.freedesktop_os_release().get("PRETTY_NAME", platform.system())
    except OSError:
        return platform.system()


def _labels(obj: Obj) -> dict[str, str]:
    labels: dict[str, str] = obj["metadata"].get("labels") or {}
    return labels


def _node_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
    headers = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    if wide:
        headers += [
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME",
            "GPU",
            "TIER",
        ]
    rows = []
    for n in items:
        spec, status = n.get("spec", {}), n.get("status", {})
        virtual = "virtual" in spec
        roles = _labels(n).get("kubernetes.io/role", "<none>")
        state = "Ready,SchedulingDisabled" if spec.get("unschedulable") else "Ready"
        row = [
            n["metadata"]["name"],
            state,
            roles,
            age_of(n["metadata"].get("creationTimestamp"), now),
            NODE_VERSION,
        ]
        if wide:
            ips = [a["address"] for a in status.get("addresses", []) if a["type"] == "InternalIP"]
            gpus = status.get("allocatable", {}).get(GPU, "0")
            gpu = spec.get("gpu") or {}
            model = gpu.get("model", "")
            if virtual and spec["virtual"].get("gpuQuota") is not None:
                gpus = str(spec["virtual"]["gpuQuota"])
            label = f"{gpus}x{model}" + (" (emulated)" if gpu.get("emulated") else "")
            row += [
                ips[0] if ips else "<none>",
                "<none>",
                "<unknown>" if virtual else _os_image(),
                "<unknown>" if virtual else platform.release(),
                "<unknown>" if virtual else "process://tierserve",
                label if model else gpus,
                "cloud" if virtual else "idc",
            ]
        rows.append(row)
    return headers, rows


def _pod_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
    """kubectl's pod columns; STATUS and READY as arena's instances show them (a Ready
    replica is ``Running 1/1``, a virtual node's cold start ``ContainerCreating``);
    ``-o wide`` adds tierserve's own PHASE."""
    headers = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        headers += ["IP", "NODE", "PORT", "UNIT", "TIER", "PHASE"]
    rows = []
    for p in items:
        st = p.get("status", {})
        status, ready = instance_status(p)
        row = [
            p["metadata"]["name"],
            f"{ready}/1",
            status,
            str(st.get("restarts", 0)),
            age_of(st.get("createdS"), now),
        ]
        if wide:
            unit = st.get("unit")
            row += [
                "127.0.0.1" if st.get("port") else "<none>",
                st.get("nodeName") or "<none>",
                str(st.get("port") or "<none>"),
                "<none>" if unit is None else str(unit),
                _labels(p).get(TIER_LABEL, "<none>"),
                st.get("phase", "Pending"),
            ]
        rows.append(row)
    return headers, rows


def _policy_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
    headers = ["NAME", "AGE"] + (["STRATEGY", "UNITS", "SELECTOR"] if wide else [])
    rows = []
    for p in items:
        row = [p["metadata"]["name"], age_of(p["metadata"].get("creationTimestamp"), now)]
        if wide:
            spec = p["spec"]
            units = ",".join(u.get("resource", "ecs") for u in spec["units"])
            selector = ",".join(f"{k}={v}" for k, v in spec["selector"].items())
            row += [spec.get("strategy", "prefer"), units, selector]
        rows.append(row)
    return headers, rows


def _service_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
    headers = ["NAME", "DESIRED", "AVAILABLE", "HOST", "AGE"]
    if wide:
        headers += ["GPUS", "MIN", "MAX", "METRIC", "TARGET"]
    rows = []
    for s in items:
        spec, st = s["spec"], s.get("status", {})
        name, ns = s["metadata"]["name"], s["metadata"].get("namespace", "default")
        row = [
            name,
            str(spec.get("replicas", 1)),
            str(st.get("availableReplicas", 0)),
            f"{name}-{ns}.example.com",
            age_of(s["metadata"].get("creationTimestamp"), now),
        ]
        if wide:
            row += [
                str(spec.get("gpus", 0)),
                str(spec.get("minReplicas", "<none>")),
                str(spec.get("maxReplicas", "<none>")),
                spec.get("scaleMetric", "<none>"),
                str(spec.get("scaleTarget", "<none>")),
            ]
        rows.append(row)
    return headers, rows


def _pv_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
    headers = ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "AGE"]
    abbreviations = {
        "ReadWriteOnce": "RWO",
        "ReadOnlyMany": "ROX",
        "ReadWriteMany": "RWX",
        "ReadWriteOncePod": "RWOP",
    }
    rows = []
    for v in items:
        spec = v["spec"]
        modes = ",".join(abbreviations.get(m, m) for m in spec.get("accessModes", []))
        rows.append(
            [
                v["metadata"]["name"],
                spec.get("capacity", {}).get("storage", ""),
                modes,
                spec.get("persistentVolumeReclaimPolicy", "Retain"),
                age_of(v["metadata"].get("creationTimestamp"), now),
            ]
        )
    return headers, rows


def _pvc_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
    headers = ["NAME", "CAPACITY", "ACCESS MODES", "AGE"]
    rows = []
    for c in items:
        spec = c["spec"]
        rows.append(
            [
                c["metadata"]["name"],
                spec.get("resources", {}).get("requests", {}).get("storage", ""),
                ",".join(spec.get("accessModes", [])),
                age_of(c["metadata"].get("creationTimestamp"), now),
            ]
        )
    return headers, rows


def _secret_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
    headers = ["NAME", "TYPE", "DATA", "AGE"]
    rows = [
        [
            s["metadata"]["name"],
            s.get("type", "Opaque"),
            str(len(s.get("data", {})) + len(s.get("stringData", {}))),
            age_of(s["metadata"].get("creationTimestamp"), now),
        ]
        for s in items
    ]
    return headers, rows


def _event_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
    """kubectl's ``get events`` columns, oldest first (the newest at the bottom)."""
    headers = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    rows = [
        [event_age(e, now), e["type"], e["reason"], f"{kind_name(e['kind'])}/{e['name']}",
         e["message"]]
        for e in items
    ]  # fmt: skip
    return headers, rows


TABLES: dict[str, Callable[[list[Obj], bool, float], tuple[Row, list[Row]]]] = {
    "nodes": _node_rows,
    "pods": _pod_rows,
    "resourcepolicies": _policy_rows,
    "inferenceservices": _service_rows,
    "persistentvolumes": _pv_rows,
    "persistentvolumeclaims": _pvc_rows,
    "secrets": _secret_rows,
    "events": _event_rows,  # not a kind: what GET /api/v1/events answers
}


EVENTS = ("events", "event", "ev")
"""``get events``: what the control plane recorded (``GET /api/v1/events``); not objects."""
WATCH_POLL_S = 0.5
"""How often ``get --watch`` lists again (the API has no watch endpoint)."""
OUTPUTS = ("wide", "yaml", "json", "name")


def _print_objects(items: list[Obj], output: str, single: bool) -> None:
    if output == "json":
        typer.echo(json.dumps(items[0] if single else {"kind": "List", "items": items}, indent=2))
    else:
        doc = items[0] if single else {"apiVersion": "v1", "kind": "List", "items": items}
        typer.echo(yaml.safe_dump(doc, sort_keys=False).rstrip())


def _name_of(obj: Obj) -> str:
    return object_name(obj["kind"], obj.get("apiVersion", ""), obj["metadata"]["name"])


def _table(
    plural: str, items: list[Obj], output: str | None, all_namespaces: bool, now: float
) -> tuple[Row, list[Row]]:
    headers, rows = TABLES[plural](items, output == "wide", now)
    if all_namespaces:
        headers = ["NAMESPACE", *headers]
        rows = [
            [i.get("namespace") or i.get("metadata", {}).get("namespace", "default"), *r]
            for i, r in zip(items, rows, strict=True)
        ]
    return headers, rows


# -- describe ----------------------------------------------------------------------------------


def _header(obj: Obj, namespaced: bool) -> list[Entry]:
    meta = obj["metadata"]
    entries: list[Entry] = [("Name:", meta["name"])]
    if namespaced:
        entries.append(("Namespace:", meta.get("namespace", "default")))
    entries += mapping_entries("Labels:", meta.get("labels") or {})
    entries += mapping_entries("Annotations:", meta.get("annotations") or {})
    return entries


def _created(obj: Obj) -> Entry:
    return (
        "CreationTimestamp:",
        timestamp(parse_timestamp(obj["metadata"].get("creationTimestamp"))),
    )


def _toleration(t: Obj) -> str:
    """kubectl's ``key=value:Effect`` (``key:Effect op=Exists``; ``op=Exists``: all)."""
    exists = t.get("operator") == "Exists"
    if not t.get("key"):
        return "op=Exists" if exists else "<none>"
    text = t["key"] if exists else f"{t['key']}={t.get('value', '')}"
    text += f":{t['effect']}" if t.get("effect") else ""
    return text + (" op=Exists" if exists else "")


def _describe_pod(pod: Obj, nodes: dict[str, Obj]) -> list[Entry]:
    spec, st = pod.get("spec", {}), pod.get("status", {})
    status, ready = instance_status(pod)
    node = st.get("nodeName")
    addresses = nodes.get(node or "", {}).get("status", {}).get("addresses", [])
    ip = next((a["address"] for a in addresses if a.get("type") == "InternalIP"), "")
    entries = _header(pod, namespaced=True)
    entries[2:2] = [
        ("Node:", f"{node}/{ip}" if node and ip else node or "<none>"),
        ("Start Time:", timestamp(st.get("startedS"))),
    ]
    entries += [("Status:", status), ("Phase:", st.get("phase", "Pending"))]
    entries += [(f"{k}:", st[k.lower()]) for k in ("Reason", "Message") if st.get(k.lower())]
    entries += [
        ("IP:", "127.0.0.1" if st.get("port") else "<none>"),
        ("Port:", str(st.get("port") or "<none>")),
        ("PID:", str(st.get("pid") or "<none>")),
        ("Controlled By:", f"InferenceService/{spec.get('service', '')}"),
        ("Unit:", "<none>" if st.get("unit") is None else str(st["unit"])),
        ("Tier:", _labels(pod).get(TIER_LABEL, "<none>")),
        ("Ready:", "True" if ready else "False"),
        ("Restart Count:", str(st.get("restarts", 0))),
        "Requests:",
        *[(f"  {k}:", str(v)) for k, v in (spec.get("requests") or {}).items()],
    ]
    selector = spec.get("nodeSelector") or {}
    entries += mapping_entries("Node-Selectors:", selector)
    tolerations = [_toleration(t) for t in spec.get("tolerations") or []] or ["<none>"]
    entries += [("Tolerations:", tolerations[0]), *[("", t) for t in tolerations[1:]]]
    entries += [
        "Conditions:",
        *indented_table(
            ["Type", "Status"],
            [["PodScheduled", str(bool(node))], ["Ready", str(bool(ready))]],
            dashes=False,
        ),
    ]
    return entries


def _percent(used: int, total: int | None) -> str:
    return f" ({100 * used // total}%)" if total else ""


def _describe_node(node: Obj, pods: list[Obj], now: float) -> list[Entry]:
    spec, st = node.get("spec", {}), node.get("status", {})
    entries = _header(node, namespaced=False)
    entries.insert(1, ("Roles:", _labels(node).get("kubernetes.io/role", "<none>")))
    taints = [
        f"{t['key']}" + (f"={t['value']}" if t.get("value") else "") + f":{t['effect']}"
        for t in spec.get("taints") or []
    ] or ["<none>"]
    gpu = spec.get("gpu") or {}
    virtual = spec.get("virtual")
    entries += [
        _created(node),
        ("Taints:", taints[0]),
        *[("", t) for t in taints[1:]],
        ("Unschedulable:", str(bool(spec.get("unschedulable"))).lower()),
        ("Tier:", "cloud" if virtual is not None else "idc"),
        (
            "GPU:",
            (gpu.get("model", "") + (" (emulated)" if gpu.get("emulated") else "")) or "<none>",
        ),
    ]
    if virtual is not None:
        quota = virtual.get("gpuQuota")
        entries += [
            "Virtual:",
            ("  Cold Start:", f"{virtual.get('coldStartSeconds', 0):g}s"),
            ("  Price Per GPU-Hour:", f"{virtual.get('pricePerGpuHour', 0):g}"),
            ("  GPU Quota:", "<none>" if quota is None else str(quota)),
        ]
    entries += ["Addresses:", *[(f"  {a['type']}:", a["address"]) for a in st.get("addresses", [])]]
    for title, key in (("Capacity:", "capacity"), ("Allocatable:", "allocatable")):
        entries += [title, *[(f"  {k}:", str(v)) for k, v in (st.get(key) or {}).items()]]
    allocatable = {k: parse_milli(v) for k, v in (st.get("allocatable") or {}).items()}
    if virtual is not None and virtual.get("gpuQuota") is not None:
        allocatable[GPU] = min(allocatable.get(GPU, 0), virtual["gpuQuota"] * 1000)
    names = (CPU, MEMORY, GPU)
    requested = {n: 0 for n in names}
    rows = []
    for p in pods:
        req = {n: parse_milli(p["spec"].get("requests", {}).get(n, "0")) for n in names}
        for n in names:
            requested[n] += req[n]
        rows.append(
            [p["metadata"]["namespace"], p["metadata"]["name"]]
            + [format_amount(n, req[n]) + _percent(req[n], allocatable.get(n)) for n in names]
            + [age_of(p["status"].get("createdS"), now)]
        )
    entries += [("Non-terminated Pods:", f"({len(pods)} in total)")]
    entries += indented_table(
        ["Namespace", "Name", "CPU Requests", "Memory Requests", "GPU Requests", "Age"], rows
    )
    entries += ["Allocated resources:"]
    entries += indented_table(
        ["Resource", "Requests"],
        [[n, format_amount(n, requested[n]) + _percent(requested[n], allocatable.get(n))]
         for n in names],
    )  # fmt: skip
    return entries


def _describe_service(svc: Obj, cost: Obj | None) -> list[Entry]:
    spec, st = svc.get("spec", {}), svc.get("status", {})
    entries = _header(svc, namespaced=True)
    entries += [
        ("API Version:", svc.get("apiVersion", "")),
        ("Kind:", svc.get("kind", "")),
        _created(svc),
        ("Replicas:", f"{spec.get('replicas', 1)} desired | {st.get('availableReplicas', 0)} "
         "available"),
        "Spec:",
        *nested_entries(spec),
        "Status:",
        *nested_entries(st),
    ]  # fmt: skip
    if cost:
        gpu_s = ", ".join(f"{t} {v:.1f}" for t, v in sorted(cost["gpuSeconds"].items()))
        entries += [
            "Cost:",
            ("  GPU-seconds:", gpu_s or "0"),
            ("  Cloud cost:", f"{cost['cloudCost']:.4f}"),
        ]
    return entries


def _describe_secret(secret: Obj) -> list[Entry]:
    keys = sorted({*secret.get("data", {}), *secret.get("stringData", {})})
    return [
        *_header(secret, namespaced=True),
        "",
        ("Type:", secret.get("type", "Opaque")),
        "",
        "Data",
        "====",
        *[(f"{k}:", "<redacted>") for k in keys],
    ]


def _describe_generic(obj: Obj, namespaced: bool) -> list[Entry]:
    return [
        *_header(obj, namespaced),
        ("API Version:", obj.get("apiVersion", "")),
        ("Kind:", obj.get("kind", "")),
        _created(obj),
        *(["Spec:", *nested_entries(obj["spec"])] if obj.get("spec") else []),
        *(["Status:", *nested_entries(obj["status"])] if obj.get("status") else []),
    ]


def _describe(client: Client, plural: str, namespaced: bool, obj: Obj, now: float) -> list[str]:
    meta = obj["metadata"]
    name, namespace = meta["name"], meta.get("namespace", "default")
    if plural == "pods":
        entries = _describe_pod(
            obj, {n["metadata"]["name"]: n for n in client.list_objects("nodes")}
        )
    elif plural == "nodes":
        pods = [
            p
            for p in client.list_objects("pods", None)
            if p["status"].get("nodeName") == name and p["status"].get("phase") != "Failed"
        ]
        entries = _describe_node(obj, pods, now)
    elif plural == "inferenceservices":
        entries = _describe_service(obj, client.cost()["services"].get(f"{namespace}/{name}"))
    elif plural == "secrets":
        entries = _describe_secret(obj)
    else:
        entries = _describe_generic(obj, namespaced)
    if plural != "secrets":  # kubectl shows no events for a Secret
        entries += describe_events(
            client.events(resource=plural, name=name, namespace=namespace), now
        )
    return describe_lines(entries)


# -- get --watch -------------------------------------------------------------------------------


def _gone(plural: str, headers: Row, row: Row) -> Row:
    """The last row of an object that is gone. A replica ends Terminating (one that drained
    faster than a poll was last seen in its earlier status) unless it Failed: its row says
    so, as kubectl's deletion line does."""
    if plural != "pods" or "STATUS" not in headers:
        return row
    at = headers.index("STATUS")
    return row if row[at] == "Error" else [*row[:at], "Terminating", *row[at + 1 :]]


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
            text = _name_of(item) if output == "name" else ""
            signature = [c for i, c in enumerate(row) if i != age_at]
            current[key] = ([text] if output == "name" else row, signature)
        changed = [v[0] for k, v in current.items() if k not in shown or shown[k][1] != v[1]]
        changed += [_gone(plural, headers, v[0]) for k, v in shown.items() if k not in current]
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
                return [i for i in items if selected(_labels(i), requirements)]

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
                typer.echo(_name_of(item))
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

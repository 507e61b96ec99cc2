"""kubectl-like verbs against the local control plane: ``get``, ``describe``, ``delete``."""

from __future__ import annotations

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
from tierserve.cli.common import NamespaceOption, StateDirOption, client_for
from tierserve.cli.output import fail
from tierserve.cli.tables import age, age_of, render
from tierserve.errors import FieldError, TierserveError, ValidationError
from tierserve.model.names import PLURALS, resolve_resource
from tierserve.model.quantity import parse_milli
from tierserve.model.replica import TIER_LABEL
from tierserve.model.resources import GPU, format_amount

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
    headers = ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    if wide:
        headers += ["IP", "NODE", "PORT", "UNIT", "TIER"]
    rows = []
    for p in items:
        st = p.get("status", {})
        phase = st.get("phase", "Pending")
        row = [
            p["metadata"]["name"],
            "1/1" if phase == "Ready" else "0/1",
            phase,
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


TABLES: dict[str, Callable[[list[Obj], bool, float], tuple[Row, list[Row]]]] = {
    "nodes": _node_rows,
    "pods": _pod_rows,
    "resourcepolicies": _policy_rows,
    "inferenceservices": _service_rows,
    "persistentvolumes": _pv_rows,
    "persistentvolumeclaims": _pvc_rows,
    "secrets": _secret_rows,
}


def _print_objects(items: list[Obj], output: str, single: bool) -> None:
    if output == "json":
        typer.echo(json.dumps(items[0] if single else {"kind": "List", "items": items}, indent=2))
    else:
        doc = items[0] if single else {"apiVersion": "v1", "kind": "List", "items": items}
        typer.echo(yaml.safe_dump(doc, sort_keys=False).rstrip())


def _describe_lines(obj: Obj, plural: str, events: list[Obj], now: float) -> list[str]:
    meta = obj["metadata"]
    lines = [f"Name:         {meta['name']}"]
    if plural not in ("nodes", "persistentvolumes"):
        lines.append(f"Namespace:    {meta.get('namespace', 'default')}")
    for title, key in (("Labels:", "labels"), ("Annotations:", "annotations")):
        values = meta.get(key) or {}
        pairs = [f"{k}={v}" for k, v in values.items()] or ["<none>"]
        lines.append(f"{title:<14}{pairs[0]}")
        lines += [f"{'':<14}{p}" for p in pairs[1:]]
    if meta.get("creationTimestamp"):
        lines.append(f"Created:      {meta['creationTimestamp']}")
    body = {k: v for k, v in obj.items() if k in ("spec", "status", "type")}
    if plural == "secrets":
        keys = sorted({*obj.get("data", {}), *obj.get("stringData", {})})
        body = {"type": obj.get("type", "Opaque"), "data": [f"{k}: <redacted>" for k in keys]}
    text = yaml.safe_dump(body, sort_keys=False).rstrip()
    lines += [""] + [line for line in text.splitlines()]
    lines += ["", "Events:"]
    if not events:
        lines.append("  <none>")
    else:
        rows = [
            [
                e["type"],
                e["reason"],
                age(now - e["lastTimestamp"]) + (f" (x{e['count']})" if e["count"] > 1 else ""),
                "tierserve",
                e["message"],
            ]
            for e in events
        ]
        table = render(["Type", "Reason", "Age", "From", "Message"], rows)
        lines += ["  " + line for line in table.splitlines()]
    return lines


def _gpu_total(items: list[Obj]) -> str:
    return format_amount(
        GPU, sum(parse_milli(i["spec"].get("requests", {}).get(GPU, "0")) for i in items)
    )


def register(app: typer.Typer) -> None:
    @app.command()
    def get(
        resource: str = typer.Argument(
            ...,
            help="nodes, pods, resourcepolicies (rp), inferenceservices (isvc), pv, pvc, secrets",
        ),
        name: str | None = typer.Argument(None),
        output: str | None = typer.Option(None, "-o", "--output", help="wide|yaml|json"),
        namespace: str = NamespaceOption,
        all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces"),
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Display objects (kubectl get)."""
        if output not in (None, "wide", "yaml", "json"):
            fail(
                ValidationError(
                    "-o", [FieldError("", f"{output!r} is not one of wide, yaml, json")]
                )
            )
        try:
            cls = resolve_resource(resource)
            client = client_for(state_dir)
            plural = PLURALS[cls]
            if name:
                items = [client.get(plural, name, namespace)]
            else:
                items = client.list_objects(plural, None if all_namespaces else namespace)
        except TierserveError as exc:
            fail(exc)
        if output in ("yaml", "json"):
            _print_objects(items, output, single=bool(name))
            return
        if not items:
            where = "" if not cls.NAMESPACED else f" in {namespace} namespace"
            typer.echo(f"No resources found{where}.", err=True)
            return
        headers, rows = TABLES[plural](items, output == "wide", time.time())
        if all_namespaces and cls.NAMESPACED:
            headers = ["NAMESPACE", *headers]
            rows = [
                [i["metadata"].get("namespace", "default"), *r]
                for i, r in zip(items, rows, strict=True)
            ]
        typer.echo(render(headers, rows))

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
            events = client.events(resource=plural, name=name, namespace=namespace)
            now = time.time()
            lines = _describe_lines(obj, plural, events, now)
            if plural == "inferenceservices":
                cost = client.cost()["services"].get(f"{namespace}/{name}")
                if cost:
                    gpu_s = ", ".join(f"{t} {v:.1f}" for t, v in sorted(cost["gpuSeconds"].items()))
                    lines += [
                        "",
                        "Cost:",
                        f"  GPU-seconds:  {gpu_s}",
                        f"  Cloud cost:   {cost['cloudCost']:.4f}",
                    ]
            if plural == "nodes":
                pods = [
                    p
                    for p in client.list_objects("pods", None)
                    if p["status"].get("nodeName") == name and p["status"].get("phase") != "Failed"
                ]
                lines += ["", f"Non-terminated replicas: ({len(pods)} in total)"]
                lines += [
                    f"  {p['metadata']['namespace']}/{p['metadata']['name']}  "
                    f"{p['status']['phase']}"
                    for p in pods
                ]
                lines += [f"Allocated GPUs: {_gpu_total(pods)}"]
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
            typer.echo(f"{r['kind'].lower()}/{r['name']} {r['action']}")


__all__ = ["FilesOption", "register"]

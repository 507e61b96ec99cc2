"""kubectl's printed layouts of the local runtime's objects, pure: ``get``'s per-kind rows
and columns (``-o wide``, ``-A``), ``-o name``, the ``get events`` table, ``get --watch``'s
line for a gone object and ``describe``'s per-kind sections.

Nothing here talks to the control plane, reads the clock or asks the machine anything:
``kubectl.py`` passes the objects (as the API returns them), ``now`` and the ``Host`` in,
and prints what comes back. The kind-agnostic layout (columns, human ages, describe's
``Key:  value`` alignment) is in ``tables.py``; label selectors are in ``common.py``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tierserve import __version__
from tierserve.cli.arena_layout import instance_status
from tierserve.cli.output import kind_name, object_name
from tierserve.cli.tables import (
    Entry,
    age_of,
    event_age,
    indented_table,
    mapping_entries,
    nested_entries,
    parse_timestamp,
    timestamp,
)
from tierserve.model.quantity import parse_milli
from tierserve.model.replica import TIER_LABEL
from tierserve.model.resources import CPU, GPU, MEMORY, format_amount

Row = list[str]
Obj = dict[str, Any]

NODE_VERSION = f"v{__version__}-tierserve"


@dataclass(frozen=True)
class Host:
    """The machine a real (idc) node's replicas run on, as ``get nodes -o wide`` shows it:
    OS-IMAGE and KERNEL-VERSION. A virtual node shows ``UNKNOWN_HOST``."""

    os_image: str
    kernel: str


UNKNOWN_HOST = Host(os_image="<unknown>", kernel="<unknown>")


def labels(obj: Obj) -> dict[str, str]:
    found: dict[str, str] = obj["metadata"].get("labels") or {}
    return found


def name_of(obj: Obj) -> str:
    """``-o name``'s line for an object: ``pod/x``, ``inferenceservice.serving.../x``."""
    return object_name(obj["kind"], obj.get("apiVersion", ""), obj["metadata"]["name"])


# -- get: per-kind rows ------------------------------------------------------------------------


def node_rows(items: list[Obj], wide: bool, now: float, host: Host) -> tuple[Row, list[Row]]:
    headers = ["NAME", "STATUS", "ROLES", "AGE", "VERSION"]
    if wide:
        headers += ["INTERNAL-IP", "EXTERNAL-IP", "OS-IMAGE", "KERNEL-VERSION",
                    "CONTAINER-RUNTIME", "GPU", "TIER"]  # fmt: skip
    rows = []
    for n in items:
        spec, status = n.get("spec", {}), n.get("status", {})
        virtual = "virtual" in spec
        roles = labels(n).get("kubernetes.io/role", "<none>")
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
            machine = UNKNOWN_HOST if virtual else host
            row += [
                ips[0] if ips else "<none>",
                "<none>",
                machine.os_image,
                machine.kernel,
                "<unknown>" if virtual else "process://tierserve",
                label if model else gpus,
                "cloud" if virtual else "idc",
            ]
        rows.append(row)
    return headers, rows


def pod_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
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
                labels(p).get(TIER_LABEL, "<none>"),
                st.get("phase", "Pending"),
            ]
        rows.append(row)
    return headers, rows


def policy_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
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


def service_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
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


ACCESS_MODES = {
    "ReadWriteOnce": "RWO",
    "ReadOnlyMany": "ROX",
    "ReadWriteMany": "RWX",
    "ReadWriteOncePod": "RWOP",
}
"""kubectl's short access modes (a PersistentVolume's ACCESS MODES column)."""


def pv_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
    headers = ["NAME", "CAPACITY", "ACCESS MODES", "RECLAIM POLICY", "AGE"]
    rows = [
        [
            v["metadata"]["name"],
            v["spec"].get("capacity", {}).get("storage", ""),
            ",".join(ACCESS_MODES.get(m, m) for m in v["spec"].get("accessModes", [])),
            v["spec"].get("persistentVolumeReclaimPolicy", "Retain"),
            age_of(v["metadata"].get("creationTimestamp"), now),
        ]
        for v in items
    ]
    return headers, rows


def pvc_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
    headers = ["NAME", "CAPACITY", "ACCESS MODES", "AGE"]
    rows = [
        [
            c["metadata"]["name"],
            c["spec"].get("resources", {}).get("requests", {}).get("storage", ""),
            ",".join(c["spec"].get("accessModes", [])),
            age_of(c["metadata"].get("creationTimestamp"), now),
        ]
        for c in items
    ]
    return headers, rows


def secret_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
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


def event_rows(items: list[Obj], wide: bool, now: float) -> tuple[Row, list[Row]]:
    """kubectl's ``get events`` columns, oldest first (the newest at the bottom)."""
    headers = ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"]
    rows = [
        [event_age(e, now), e["type"], e["reason"], f"{kind_name(e['kind'])}/{e['name']}",
         e["message"]]
        for e in items
    ]  # fmt: skip
    return headers, rows


TABLES: dict[str, Callable[[list[Obj], bool, float], tuple[Row, list[Row]]]] = {
    "pods": pod_rows,
    "resourcepolicies": policy_rows,
    "inferenceservices": service_rows,
    "persistentvolumes": pv_rows,
    "persistentvolumeclaims": pvc_rows,
    "secrets": secret_rows,
    "events": event_rows,  # not a kind: what GET /api/v1/events answers
}
"""Rows by plural, from the objects, ``-o wide`` and ``now``; nodes' rows also need the
``Host`` (``node_rows``)."""


def table(
    plural: str, items: list[Obj], output: str | None, all_namespaces: bool, now: float,
    host: Host,
) -> tuple[Row, list[Row]]:  # fmt: skip
    """``get``'s headers and rows for ``items`` of one plural; ``-A`` puts NAMESPACE first."""
    wide = output == "wide"
    if plural == "nodes":
        headers, rows = node_rows(items, wide, now, host)
    else:
        headers, rows = TABLES[plural](items, wide, now)
    if all_namespaces:
        headers = ["NAMESPACE", *headers]
        rows = [
            [i.get("namespace") or i.get("metadata", {}).get("namespace", "default"), *r]
            for i, r in zip(items, rows, strict=True)
        ]
    return headers, rows


def gone_row(plural: str, headers: Row, row: Row) -> Row:
    """``get --watch``'s last row of an object that is gone. A replica ends Terminating (one
    that drained faster than a poll was last seen in its earlier status) unless it Failed:
    its row says so, as kubectl's deletion line does."""
    if plural != "pods" or "STATUS" not in headers:
        return row
    at = headers.index("STATUS")
    return row if row[at] == "Error" else [*row[:at], "Terminating", *row[at + 1 :]]


# -- describe ----------------------------------------------------------------------------------

WITHOUT_EVENTS = frozenset({"secrets"})
"""Plurals whose ``describe`` has no Events section (kubectl shows none for a Secret)."""


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


def describe_pod(pod: Obj, nodes: Mapping[str, Obj]) -> list[Entry]:
    """A replica as kubectl describes a pod; ``nodes`` by name give its node's IP."""
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
        ("Tier:", labels(pod).get(TIER_LABEL, "<none>")),
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


def describe_node(node: Obj, pods: list[Obj], now: float) -> list[Entry]:
    """A node as kubectl describes one; ``pods``: every replica (those on this node and not
    Failed are its Non-terminated Pods and count towards its Allocated resources)."""
    spec, st = node.get("spec", {}), node.get("status", {})
    name = node["metadata"]["name"]
    pods = [
        p
        for p in pods
        if p["status"].get("nodeName") == name and p["status"].get("phase") != "Failed"
    ]
    entries = _header(node, namespaced=False)
    entries.insert(1, ("Roles:", labels(node).get("kubernetes.io/role", "<none>")))
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


def describe_service(svc: Obj, cost: Obj | None) -> list[Entry]:
    """An InferenceService with its ``cost`` (the API's ``/cost`` entry for it, if any)."""
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


def describe_secret(secret: Obj) -> list[Entry]:
    """A Secret's keys, never its values."""
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


def describe_generic(obj: Obj, namespaced: bool) -> list[Entry]:
    """Any other kind, as kubectl describes a custom resource."""
    return [
        *_header(obj, namespaced),
        ("API Version:", obj.get("apiVersion", "")),
        ("Kind:", obj.get("kind", "")),
        _created(obj),
        *(["Spec:", *nested_entries(obj["spec"])] if obj.get("spec") else []),
        *(["Status:", *nested_entries(obj["status"])] if obj.get("status") else []),
    ]

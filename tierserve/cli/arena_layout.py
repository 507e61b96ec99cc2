"""arena's printed layouts, pure: ``serve get``, ``serve list``, submit lines.

Nothing here talks to the control plane or reads the clock: ``serve.py`` passes the
objects (as the API returns them) and ``now`` in, and prints what comes back.

Instance STATUS is what arena (``kubectl get pods``) would print for the replica's pod:

=============  ====================  =====
phase          STATUS                READY
=============  ====================  =====
Pending        ``Pending``           0/1
Provisioning   ``ContainerCreating`` 0/1    (a virtual node's cold start: the sandbox)
Starting       ``Running``           0/1    (the engine loads: readiness probe not yet)
Ready          ``Running``           1/1
Terminating    ``Terminating``       0/1 or 1/1 (ready while it drains)
Failed         ``Error``             0/1
=============  ====================  =====
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from tierserve.cli.arena import PORT, SERVING_TYPE, TYPE_ALIAS, VERSION
from tierserve.cli.tables import parse_timestamp
from tierserve.errors import FieldError, NotFoundError, ValidationError
from tierserve.model import InferenceService
from tierserve.model.quantity import QuantityError, parse_milli
from tierserve.model.replica import TIER_LABEL
from tierserve.model.resources import GPU

Obj = dict[str, Any]


def arena_age(seconds: float) -> str:
    """arena's ShortHumanDuration: 59s, 1m, 18m, 3h, 10d, 2y (one unit, rounded down)."""
    s = int(seconds)
    if s < -1:
        return "<invalid>"
    if s < 60:
        return f"{max(s, 0)}s"
    if s < 3600:
        return f"{s // 60}m"
    if s < 86400:
        return f"{s // 3600}h"
    if s < 86400 * 365:
        return f"{s // 86400}d"
    return f"{s // (86400 * 365)}y"


def tabwrite(rows: Sequence[Sequence[str]], indent: str = "") -> list[str]:
    """Go's ``tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)``: columns two spaces apart."""
    if not rows:
        return []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for row in rows:
        cells = [c.ljust(w + 2) for c, w in zip(row, widths, strict=False)]
        lines.append((indent + "".join(cells) + row[-1]).rstrip())
    return lines


def _number(value: float) -> str:
    """Go's ``%v`` of a float64: 1, 0.5, 3."""
    return f"{value:g}"


def _created_s(obj: Obj) -> float | None:
    return parse_timestamp(obj["metadata"].get("creationTimestamp"))


def _service_age(service: Obj, now: float) -> str:
    created = _created_s(service)
    return "<unknown>" if created is None else arena_age(now - created)


def instance_status(pod: Obj) -> tuple[str, int]:
    """(STATUS, ready containers) arena would show for a replica; see the module docstring."""
    phase = pod.get("status", {}).get("phase", "Pending")
    status = {
        "Provisioning": "ContainerCreating",
        "Starting": "Running",
        "Ready": "Running",
        "Failed": "Error",
    }.get(phase, phase)
    ready = (
        1
        if phase == "Ready" or (phase == "Terminating" and pod["status"].get("readyS") is not None)
        else 0
    )
    return status, ready


def _gpus_of(pod: Obj) -> float:
    try:
        return parse_milli(pod.get("spec", {}).get("requests", {}).get(GPU, "0")) / 1000
    except QuantityError:
        return 0.0


def _tier(pod: Obj) -> str:
    labels: dict[str, str] = pod["metadata"].get("labels") or {}
    return labels.get(TIER_LABEL, "<none>")


def replica_cost(pod: Obj, prices: Mapping[str, float]) -> float | None:
    """Cloud cost billed so far for one replica: GPUs x billed hours x its node's price.

    None for a replica not on a priced (virtual) node. Billing runs from scheduling (for a
    virtual node: from the start of provisioning) to ``billedUntilS``, as the control
    plane's billing controller counts it.
    """
    st = pod.get("status", {})
    node = st.get("nodeName")
    if node not in prices:
        return None
    start, until = st.get("scheduledS"), st.get("billedUntilS")
    hours = max(0.0, until - start) / 3600 if start is not None and until is not None else 0.0
    return _gpus_of(pod) * hours * prices[node]


def _money(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _pods_of(service: Obj, pods: Sequence[Obj]) -> list[Obj]:
    name = service["metadata"]["name"]
    ns = service["metadata"].get("namespace", "default")
    mine = [
        p
        for p in pods
        if p.get("spec", {}).get("service") == name
        and p["metadata"].get("namespace", "default") == ns
    ]
    return sorted(mine, key=lambda p: str(p["metadata"]["name"]))


def _address(service: Obj) -> str:
    meta = service["metadata"]
    return f"http://{meta['name']}-{meta.get('namespace', 'default')}.example.com"


def job_info(
    service: Obj, pods: Sequence[Obj], now: float, prices: Mapping[str, float] | None = None
) -> Obj:
    """arena's ServingJobInfo (what ``-o json|yaml`` prints), plus each instance's tier/cost."""
    mine = _pods_of(service, pods)
    instances = []
    for p in mine:
        status, ready = instance_status(p)
        st = p.get("status", {})
        cost = replica_cost(p, prices or {})
        instances.append(
            {
                "name": p["metadata"]["name"],
                "status": status,
                "age": arena_age(now - st.get("createdS", now)),
                "readyContainers": ready,
                "totalContainers": 1,
                "restartCount": st.get("restarts", 0),
                "nodeName": st.get("nodeName", ""),
                "requestGPUs": _gpus_of(p),
                "creationTimestamp": int(st.get("createdS", 0)),
                "tier": _tier(p),
                "cloudCost": cost,
            }
        )
    spec = service["spec"]
    return {
        "uuid": service["metadata"].get("uid", ""),
        "name": service["metadata"]["name"],
        "namespace": service["metadata"].get("namespace", "default"),
        "type": TYPE_ALIAS,
        "version": VERSION,
        "age": _service_age(service, now),
        "desiredInstances": int(spec.get("replicas", 1)),
        "availableInstances": sum(1 for p in mine if p.get("status", {}).get("phase") == "Ready"),
        "endpoints": [{"name": "", "port": PORT, "nodePort": 0}],
        "ip": _address(service),
        "requestGPUs": float(spec.get("gpus", 0) * spec.get("replicas", 1)),
        "instances": instances,
        "creationTimestamp": int(_created_s(service) or 0),
    }


def format_get(
    service: Obj,
    pods: Sequence[Obj],
    now: float,
    wide: bool = False,
    prices: Mapping[str, float] | None = None,
) -> str:
    """``arena serve get NAME``: the header block, then ``Instances:`` (ends with a newline).

    GPU = gpus x Desired; as in arena, the GPU line and column are left out when it is 0.
    ``wide`` adds TIER and COST (cloud cost billed so far; ``-`` off the cloud).
    """
    info = job_info(service, pods, now, prices)
    gpus = info["requestGPUs"]
    head = [
        ("Name:", info["name"]),
        ("Namespace:", info["namespace"]),
        ("Type:", info["type"]),
        ("Version:", info["version"]),
        ("Desired:", str(info["desiredInstances"])),
        ("Available:", str(info["availableInstances"])),
        ("Age:", info["age"]),
        ("Address:", info["ip"]),
        ("Port:", f":{PORT}"),
    ]
    lines = [f"{label:<12}{value}" for label, value in head]
    lines.append(f"{'GPU:':<12}{_number(gpus)}" if gpus else "")
    lines += ["", "Instances:"]
    header = ["NAME", "STATUS", "AGE", "READY", "RESTARTS", *(["GPU"] if gpus else []), "NODE"]
    if wide:
        header += ["TIER", "COST"]
    rows = [header, ["-" * len(h) for h in header]]
    for inst in info["instances"]:
        row = [
            inst["name"],
            inst["status"],
            inst["age"],
            f"{inst['readyContainers']}/{inst['totalContainers']}",
            str(inst["restartCount"]),
        ]
        if gpus:
            row.append(_number(inst["requestGPUs"]))
        row.append(inst["nodeName"] or "<none>")
        if wide:
            row += [inst["tier"], _money(inst["cloudCost"])]
        rows.append(row)
    return "\n".join(lines + tabwrite(rows, indent="  ")) + "\n"


def _tiers(mine: Sequence[Obj]) -> str:
    counts: dict[str, int] = {}
    for p in mine:
        if p.get("status", {}).get("phase") not in ("Terminating", "Failed"):
            counts[_tier(p)] = counts.get(_tier(p), 0) + 1
    return ",".join(f"{t}={n}" for t, n in sorted(counts.items())) or "<none>"


def format_list(
    services: Sequence[Obj],
    pods: Sequence[Obj],
    now: float,
    wide: bool = False,
    costs: Mapping[str, float] | None = None,
    all_namespaces: bool = False,
) -> str:
    """``arena serve list``: NAME TYPE VERSION DESIRED AVAILABLE ADDRESS PORTS [GPU].

    ``wide`` adds TIER (live replicas per tier, e.g. ``cloud=2,idc=1``) and COST (the
    service's cloud cost so far, from ``costs`` keyed ``namespace/name``).
    """
    infos = [job_info(s, pods, now) for s in services]
    any_gpu = any(i["requestGPUs"] for i in infos)
    header = [
        *(["NAMESPACE"] if all_namespaces else []),
        "NAME",
        "TYPE",
        "VERSION",
        "DESIRED",
        "AVAILABLE",
        "ADDRESS",
        "PORTS",
        *(["GPU"] if any_gpu else []),
        *(["TIER", "COST"] if wide else []),
    ]
    rows = [header]
    for service, info in zip(services, infos, strict=True):
        row = [
            *([info["namespace"]] if all_namespaces else []),
            info["name"],
            info["type"],
            info["version"],
            str(info["desiredInstances"]),
            str(info["availableInstances"]),
            info["ip"],
            f":{PORT}",
            *([_number(info["requestGPUs"])] if any_gpu else []),
        ]
        if wide:
            key = f"{info['namespace']}/{info['name']}"
            row += [_tiers(_pods_of(service, pods)), _money((costs or {}).get(key, 0.0))]
        rows.append(row)
    return "\n".join(tabwrite(rows)) + "\n"


def pick_instance(service: Obj, pods: Sequence[Obj], instance: str | None) -> str:
    """The instance ``serve logs`` reads: ``-i``, else the first Ready one, else the only one."""
    mine = _pods_of(service, pods)
    names = [str(p["metadata"]["name"]) for p in mine]
    job = service["metadata"]["name"]
    if instance is not None:
        if instance not in names:
            expected = f"one of {', '.join(names)}" if names else "none: it has no instances"
            raise ValidationError(
                "",
                [
                    FieldError(
                        "--instance",
                        (f"{instance!r} is not an instance of {job}; expected {expected}"),
                    )
                ],
            )
        return instance
    if not names:
        raise NotFoundError(f"the serving job {job} has no instances yet")
    ready = [
        str(p["metadata"]["name"]) for p in mine if p.get("status", {}).get("phase") == "Ready"
    ]
    if ready:
        return ready[0]
    if len(names) == 1:
        return names[0]
    raise ValidationError(
        "",
        [
            FieldError(
                "--instance",
                (
                    f"{job} has {len(names)} instances and none is Ready; choose one with -i: "
                    f"{', '.join(names)}"
                ),
            )
        ],
    )


def info_line(elapsed_s: float, message: str) -> str:
    """logrus's text format as arena prints it: ``INFO[0002] message``."""
    return f"INFO[{int(elapsed_s):04d}] {message}"


def submit_lines(service: InferenceService, elapsed_s: float) -> list[str]:
    """What ``arena serve kserve`` prints after creating ``service``."""
    lines = []
    if service.spec.scale_metric is not None:
        lines.append(f"horizontalpodautoscaler.autoscaling/{service.name}-hpa created")
    lines += [
        f"inferenceservice.serving.kserve.io/{service.name} created",
        info_line(elapsed_s, f"The Job {service.name} has been submitted successfully"),
        info_line(
            elapsed_s,
            (
                f"You can run `tierserve serve get {service.name} --type {SERVING_TYPE} "
                f"-n {service.namespace}` to check the job status"
            ),
        ),
    ]
    return lines


__all__ = [
    "arena_age",
    "format_get",
    "format_list",
    "info_line",
    "instance_status",
    "job_info",
    "pick_instance",
    "replica_cost",
    "submit_lines",
    "tabwrite",
]

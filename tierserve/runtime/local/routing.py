"""What the gateway routes to: each service's Ready replicas, with their unit and tier."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from tierserve.gateway.table import Backend, ServiceRoute
from tierserve.model import InferenceService, Node, Phase, Replica


def service_routes(
    services: Iterable[InferenceService],
    replicas: Iterable[Replica],
    nodes: Mapping[str, Node],
    host: str = "127.0.0.1",
) -> list[ServiceRoute]:
    """One route per service; Ready replicas take new requests, Terminating ones (listed
    as not ready) only finish what they have."""
    by_service: dict[tuple[str, str], list[Backend]] = {}
    for r in sorted(replicas, key=lambda r: r.name):
        if r.status.port is None or r.phase not in (Phase.READY, Phase.TERMINATING):
            continue
        node = nodes.get(r.node_name or "")
        by_service.setdefault((r.namespace, r.spec.service), []).append(
            Backend(
                replica=r.name,
                url=f"http://{host}:{r.status.port}",
                unit=r.status.unit or 0,
                tier=node.tier if node is not None else "idc",
                ready=r.ready,
            )
        )
    return [
        ServiceRoute(
            namespace=s.namespace,
            name=s.name,
            host=s.host,
            model_names=(s.served_model_name(),),
            backends=tuple(by_service.get((s.namespace, s.name), ())),
        )
        for s in sorted(services, key=lambda s: (s.namespace, s.name))
    ]

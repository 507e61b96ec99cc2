"""The tier planner's read on Kubernetes: what ``runtime.planner.PlannerInputs`` needs,
from the cluster (read → decide → apply; the decide is ``policy.autoscaling.evaluate``).

* **Load** (:class:`GatewayScrape`, the planner's ``GatewayLoad``): every period each
  gateway's ``/metrics`` (``tierserve gateway --discovery kubernetes``; the URLs given
  with ``--gateway-url``, fetched as the custom metrics API fetches them) is read once:
  the arrivals counter ``tierserve_gateway_arrivals_total`` and the streamed-TTFT
  histogram ``tierserve_gateway_time_to_first_token_seconds`` of each
  (namespace, service), summed over the gateways. Each gateway's series are followed as
  Prometheus' ``increase`` follows a counter: a value that went down is a restarted
  gateway (everything it has now is new), a gateway's first answer only sets the
  baseline, and a series born after it (a service's first request there) counts whole.
  The TTFT at the SLO's quantile is the histogram's bucket deltas over the planner's
  window, interpolated as ``histogram_quantile`` does (``web.histogram``).
  When no gateway answers, there is no load to plan on: the planner keeps the size (a
  rate of 0 would give the cloud back while the gateways are merely unreachable), as
  the custom metrics API then serves no values.
* **Token mix**: the pods' own ``vllm:request_prompt_tokens``/``generation_tokens``
  sums and counts, from the scrape the autoscaler makes of each Ready pod
  (:meth:`KubePlannerInputs.scraped`).
* **Tiers**: ``policy.tiers.tiers_for`` over the cluster's Nodes, ResourcePolicies and
  pods (``runtime.kube.convert``); each tier's cold start learned from the service's pods,
  PodScheduled → Ready (the Ready condition's ``lastTransitionTime``, else the period in
  which the autoscaler saw the pod turn Ready).
* **Capacity**: ``engine.perf.capacity`` for the replica's GPU and command, in a worker
  process (``PlannerInputs``).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from tierserve.errors import TierserveError
from tierserve.model import InferenceService, Node, Replica, ResourcePolicy
from tierserve.policy.autoscaling import PlannerContext
from tierserve.policy.planner import PlannerState
from tierserve.policy.replicaset import service_key
from tierserve.policy.signals import ReplicaKey
from tierserve.runtime.kube.cache import installed_groups
from tierserve.runtime.kube.client import Api, Obj
from tierserve.runtime.kube.convert import (
    node_from_k8s,
    policy_from_k8s,
    replica_from_pod,
    timestamp_s,
)
from tierserve.runtime.kube.crd import policies_path
from tierserve.runtime.kube.custom_metrics import Fetch
from tierserve.runtime.planner import PlannerInputs
from tierserve.web import histogram

log = logging.getLogger(__name__)

ARRIVALS = "tierserve_gateway_arrivals_total"
TTFT = "tierserve_gateway_time_to_first_token_seconds"
SERVING_LABEL = "servingName"
"""Pods of a served model carry it (``serve kserve --backend kubernetes``)."""
HISTORY = 256
"""Snapshots of each service's TTFT buckets kept (one a period: an hour at 15 s)."""

ServiceKey = tuple[str, str]


@dataclass
class _Series:
    """One gateway's series followed as a counter (see the module doc)."""

    last: dict[tuple[str, ...], float] = field(default_factory=dict)
    known: bool = False
    """The gateway answered before: a series new since then was born since then."""

    def increase(self, key: tuple[str, ...], value: float) -> float:
        before = self.last.get(key)
        self.last[key] = value
        if before is None:
            # a gateway's first answer is a baseline; a series born later counts whole
            return value if self.known else 0.0
        return value - before if value >= before else value  # went down: a restart


def _samples(text: str) -> tuple[dict[ServiceKey, float], dict[ServiceKey, dict[float, float]]]:
    """A gateway's arrivals and TTFT buckets per (namespace, service)."""
    arrivals: dict[ServiceKey, float] = {}
    buckets: dict[ServiceKey, dict[float, float]] = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = (s.labels.get("namespace", ""), s.labels.get("service", ""))
            if s.name == ARRIVALS:
                arrivals[key] = arrivals.get(key, 0.0) + float(s.value)
            elif s.name == f"{TTFT}_bucket":
                le = float(s.labels.get("le", "inf"))
                per = buckets.setdefault(key, {})
                per[le] = per.get(le, 0.0) + float(s.value)
    return arrivals, buckets


class GatewayScrape:
    """The gateways' load as the tier planner reads it (``runtime.planner.GatewayLoad``),
    refreshed once a period with :meth:`refresh`."""

    def __init__(self, urls: Sequence[str], fetch: Fetch) -> None:
        self.urls = tuple(urls)
        self.fetch = fetch
        self._series: dict[str, _Series] = {}
        self._arrived: dict[ServiceKey, float] = {}
        self._ttft: dict[ServiceKey, dict[float, float]] = {}
        """Each service's TTFT buckets, cumulative over every gateway's increases."""
        self._history: dict[ServiceKey, deque[tuple[float, dict[float, float]]]] = {}
        self.answered: tuple[str, ...] = ()
        """The gateways that answered the last refresh."""

    async def refresh(self, now: float) -> tuple[str, ...]:
        """Read every gateway once; returns those that answered."""
        texts = await asyncio.gather(*(self.fetch(url) for url in self.urls))
        answered = []
        for url, text in zip(self.urls, texts, strict=True):
            if text is None:
                continue
            try:
                arrivals, buckets = _samples(text)
            except ValueError as exc:
                log.warning("bad /metrics from gateway %s: %s", url, exc)
                continue
            answered.append(url)
            series = self._series.setdefault(url, _Series())
            for key, value in arrivals.items():
                more = series.increase(("arrivals", *key), value)
                self._arrived[key] = self._arrived.get(key, 0.0) + more
            for key, per_le in buckets.items():
                total = self._ttft.setdefault(key, {})
                for le, count in per_le.items():
                    more = series.increase(("ttft", *key, repr(le)), count)
                    total[le] = total.get(le, 0.0) + more
            series.known = True
        for key, total in self._ttft.items():
            self._history.setdefault(key, deque(maxlen=HISTORY)).append((now, dict(total)))
        self.answered = tuple(answered)
        return self.answered

    # -- GatewayLoad ----------------------------------------------------------------------

    def arrived(self, namespace: str, service: str) -> int:
        """Requests the gateways routed to the service since this scrape began."""
        return round(self._arrived.get((namespace, service), 0.0))

    def service_ttft_quantile(
        self, namespace: str, service: str, q: float, window_s: float, now: float
    ) -> float | None:
        """The ``q`` quantile of the service's streamed TTFTs over the ``window_s``
        before ``now``: the bucket deltas since the snapshot at the window's start."""
        history = self._history.get((namespace, service))
        if not history:
            return None
        latest = next((b for t, b in reversed(history) if t <= now + 1e-6), None)
        start = now - window_s + 1e-6
        # the window's start, or as far back as this scrape has seen
        base = next((b for t, b in reversed(history) if t <= start), history[0][1])
        if latest is None:
            return None
        return histogram.quantile(histogram.delta(latest, base), q)


def ready_since_s(pod: Obj) -> float | None:
    """When the pod turned Ready (its Ready=True condition's ``lastTransitionTime``)."""
    for c in (pod.get("status") or {}).get("conditions") or []:
        if c.get("type") == "Ready" and c.get("status") == "True":
            return timestamp_s(c.get("lastTransitionTime")) or None
    return None


@dataclass
class World:
    """The cluster as the planner sees it this period."""

    nodes: dict[str, Node] = field(default_factory=dict)
    policies: list[ResourcePolicy] = field(default_factory=list)
    replicas: list[Replica] = field(default_factory=list)


class KubePlannerInputs:
    """The tier planner's inputs on Kubernetes: :class:`GatewayScrape` for the load, the
    pods' scraped values for the token mix, the cluster for the tiers; the rest is
    ``runtime.planner.PlannerInputs``, the local runtime's own read."""

    def __init__(
        self,
        gateways: GatewayScrape,
        time_scale: float = 1.0,
        startup_overhead_s: float = 0.0,
        metric_max_age_s: float = 30.0,
    ) -> None:
        self.gateways = gateways
        self.max_age_s = metric_max_age_s
        self._values: dict[ReplicaKey, tuple[float, Mapping[str, float]]] = {}
        self.inputs = PlannerInputs(gateways, self._latest, time_scale, startup_overhead_s)
        self.world = World()
        self._learned: set[str] = set()
        self._not_ready: set[str] = set()
        """Pods (uid) seen bound but not Ready: their turning Ready is seen here."""

    def _latest(self, key: ReplicaKey, now: float) -> Mapping[str, float]:
        seen = self._values.get(key)
        if seen is None or now - seen[0] > self.max_age_s:
            return {}
        return seen[1]

    def scraped(self, key: ReplicaKey, values: Mapping[str, float], now: float) -> None:
        """A Ready pod's ``/metrics`` of this period (the autoscaler scrapes it anyway)."""
        self._values[key] = (now, values)

    async def observe(self, kube: Api, now: float) -> None:
        """Once a period: the gateways, and the cluster's nodes, policies and pods."""
        await self.gateways.refresh(now)
        nodes = (await kube.request("GET", "/api/v1/nodes")).get("items") or []
        pods = (await kube.request("GET", "/api/v1/pods")).get("items") or []
        policies: list[ResourcePolicy] = []
        for group in await installed_groups(kube):
            listed = await kube.request("GET", policies_path(group))
            for obj in listed.get("items") or []:
                try:
                    policies.append(policy_from_k8s(obj))
                except ValueError as exc:  # the CRD schema let it through, the model not
                    log.warning("resource policy %s: %s", obj["metadata"].get("name"), exc)
        world = World({n["metadata"]["name"]: node_from_k8s(n) for n in nodes}, policies)
        for pod in pods:
            try:
                world.replicas.append(replica_from_pod(pod))
            except (ValueError, KeyError, TierserveError) as exc:
                log.warning("pod %s: %s", pod.get("metadata", {}).get("name"), exc)
        self.world = world
        self._learn(pods, now)
        live = {(r.namespace, r.name) for r in world.replicas}
        self._values = {k: v for k, v in self._values.items() if k in live}

    def _learn(self, pods: Sequence[Obj], now: float) -> None:
        """Each new pod's PodScheduled → Ready, for the tier of its node."""
        uids = set()
        for pod in pods:
            meta = pod["metadata"]
            if SERVING_LABEL not in (meta.get("labels") or {}):
                continue  # not a served model's replica (its start says nothing of one)
            uid = str(meta.get("uid"))
            uids.add(uid)
            replica = replica_from_pod(pod)
            node = self.world.nodes.get(replica.node_name or "")
            scheduled = replica.status.scheduled_s
            if uid in self._learned or node is None or scheduled is None:
                continue
            if not replica.ready:
                self._not_ready.add(uid)
                continue
            ready = ready_since_s(pod)
            if ready is None and uid in self._not_ready:
                ready = now  # seen turning Ready within this period
            self._learned.add(uid)
            if ready is not None and ready >= scheduled:
                self.inputs.learn_cold_start(node.tier, ready - scheduled)
        self._learned &= uids
        self._not_ready &= uids

    def sample(self, service: InferenceService, now: float) -> None:
        self.inputs.sample(service, now)

    def context(
        self, service: InferenceService, now: float, planned: PlannerState | None = None
    ) -> PlannerContext | None:
        """The planner's context for ``service`` this period (None: keep the size);
        ``planned``: the planner's state (its correction and held mix)."""
        w = self.world
        key = (service.namespace, service.name)
        replicas = [r for r in w.replicas if r.node_name or service_key(r) == key]
        return self.inputs.context(service, replicas, w.nodes, w.policies, now, planned)

    def close(self) -> None:
        self.inputs.close()


__all__ = ["ARRIVALS", "TTFT", "GatewayScrape", "KubePlannerInputs", "ready_since_s"]

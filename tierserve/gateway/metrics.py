"""The gateway's Prometheus metrics (its own registry per app, no globals).

Families (labels):

- ``tierserve_gateway_requests_total`` (namespace, service, tier, code): finished
  requests; ``tier`` is the replica's (``idc``/``cloud``) or ``none`` when no
  replica answered (404, 503 after holding, 4xx from the gateway itself).
- ``tierserve_gateway_arrivals_total`` (namespace, service): requests routed to the
  service (counted on arrival, before any hold: the tier planner's arrival rate, which
  finished requests understate while a queue builds).
- ``tierserve_gateway_time_to_first_byte_seconds`` (namespace, service, tier):
  from arrival to the first upstream response byte (TTFT for streams).
- ``tierserve_gateway_time_to_first_token_seconds`` (namespace, service): the same for
  successful streamed responses only (a whole answer's first byte is its last): the
  service's TTFT, what the tier planner checks its SLO on.
- ``tierserve_gateway_request_duration_seconds`` (namespace, service, tier): end to end.
- ``tierserve_gateway_replica_in_flight`` (namespace, service, replica, tier):
  requests this process has in flight per replica (gauge, read at scrape time).
- ``tierserve_gateway_service_in_flight`` (namespace, service): the same per service.
- ``tierserve_gateway_held_requests`` (namespace, service): requests waiting now
  for a Ready replica (the scale-from-zero signal).
- ``tierserve_gateway_held_total`` (namespace, service, outcome=served|timeout).
- ``tierserve_gateway_retries_total`` (namespace, service, reason=connect|5xx):
  the fault retried (``tierserve.policy.retry.Fault.metric_reason``).
- ``tierserve_gateway_ejections_total`` (namespace, service, replica).
- ``tierserve_gateway_replica_ejected`` (namespace, service, replica): 1 while ejected.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from tierserve.gateway.balancer import Balancer
from tierserve.gateway.table import RouteTable
from tierserve.policy.signals import nearest_rank

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
RECENT_TTFB = 512
"""How many recent TTFTs per replica are kept for the TTFT-quantile scale signal."""
# Gateway overhead is sub-millisecond; LLM TTFT spans 10 ms to minutes. 2 s is the default
# TTFT objective (the simulator's and the tier planner's): a bucket there makes SLO
# attainment exact from the histogram (deploy/prometheus/recording-rules.yaml).
LATENCY_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
)


class _LiveGauges(Collector):
    """Gauges computed at scrape time from the balancer, the held counts and the table."""

    def __init__(
        self,
        table: RouteTable,
        balancer: Balancer,
        held: dict[str, int],
        now: Callable[[], float],
    ) -> None:
        self.table, self.balancer, self.held, self.now = table, balancer, held, now

    def collect(self) -> Iterator[GaugeMetricFamily]:
        replica = GaugeMetricFamily(
            "tierserve_gateway_replica_in_flight",
            "Requests in flight per replica (this gateway process).",
            labels=["namespace", "service", "replica", "tier"],
        )
        service = GaugeMetricFamily(
            "tierserve_gateway_service_in_flight",
            "Requests in flight per service (this gateway process).",
            labels=["namespace", "service"],
        )
        held = GaugeMetricFamily(
            "tierserve_gateway_held_requests",
            "Requests held now for a Ready replica.",
            labels=["namespace", "service"],
        )
        ejected = GaugeMetricFamily(
            "tierserve_gateway_replica_ejected",
            "1 while outlier detection keeps the replica out of its pool.",
            labels=["namespace", "service", "replica"],
        )
        now = self.now()
        in_flight = self.balancer.in_flight
        for r in self.table.routes:
            total = 0
            for b in r.backends:
                n = in_flight.get(b.replica, 0)
                total += n
                replica.add_metric([r.namespace, r.name, b.replica, b.tier], n)
                is_out = self.balancer.outliers.ejected(b.replica, now)
                ejected.add_metric([r.namespace, r.name, b.replica], 1.0 if is_out else 0.0)
            service.add_metric([r.namespace, r.name], total)
            held.add_metric([r.namespace, r.name], self.held.get(r.key, 0))
        yield replica
        yield service
        yield held
        yield ejected


class GatewayMetrics:
    def __init__(
        self,
        table: RouteTable,
        balancer: Balancer,
        now: Callable[[], float],
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self._now = now
        self.recent_ttfb: dict[str, deque[tuple[float, float]]] = {}
        self.recent_service_ttfb: dict[tuple[str, str], deque[tuple[float, float]]] = {}
        """Recent (time, time-to-first-byte) of successful requests per replica: the
        gateway-side TTFT signal the autoscaler can scale on (``ttft_quantile``)."""
        self.held: dict[str, int] = {}
        """Requests held now, by service key (read by the live gauges)."""
        r = self.registry
        svc = ["namespace", "service"]
        self.requests = Counter(
            "tierserve_gateway_requests", "Finished requests.", [*svc, "tier", "code"], registry=r
        )
        self.arrivals = Counter(
            "tierserve_gateway_arrivals", "Requests routed to the service.", svc, registry=r
        )
        self.ttft = Histogram(
            "tierserve_gateway_time_to_first_token_seconds",
            "Arrival to the first byte of successful streamed responses (TTFT).",
            svc,
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.ttfb = Histogram(
            "tierserve_gateway_time_to_first_byte_seconds",
            "Arrival to the first upstream response byte (TTFT for streams).",
            [*svc, "tier"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.duration = Histogram(
            "tierserve_gateway_request_duration_seconds",
            "Arrival to the last byte sent to the client.",
            [*svc, "tier"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.held_total = Counter(
            "tierserve_gateway_held", "Requests that were held.", [*svc, "outcome"], registry=r
        )
        self.retries = Counter(
            "tierserve_gateway_retries", "Retries on another replica.", [*svc, "reason"], registry=r
        )
        self.ejections = Counter(
            "tierserve_gateway_ejections", "Replica ejections.", [*svc, "replica"], registry=r
        )
        r.register(_LiveGauges(table, balancer, self.held, now))
        # labels() takes a lock and hashes every call; cache the children per label tuple.
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        key = (id(metric), *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def finished(
        self,
        ns: str,
        svc: str,
        tier: str,
        code: int,
        ttfb_s: float | None,
        total_s: float,
        replica: str = "",
        streamed: bool = False,
    ) -> None:
        """One finished request. ``streamed``: ``ttfb_s`` is a streamed response's first
        byte (a time to first token); a whole answer's is not, and the service's TTFT
        window (the tier planner's SLO check) keeps only streamed ones."""
        if replica and ttfb_s is not None and code < 400:
            window = self.recent_ttfb.get(replica)
            if window is None:
                window = self.recent_ttfb[replica] = deque(maxlen=RECENT_TTFB)
            at = self._now()
            window.append((at, ttfb_s))
            if streamed:
                per_service = self.recent_service_ttfb.get((ns, svc))
                if per_service is None:
                    per_service = deque(maxlen=RECENT_TTFB)
                    self.recent_service_ttfb[(ns, svc)] = per_service
                per_service.append((at, ttfb_s))
                self._child(self.ttft, ns, svc).observe(ttfb_s)
        self._child(self.requests, ns, svc, tier, str(code)).inc()
        if tier != "none":
            if ttfb_s is not None:
                self._child(self.ttfb, ns, svc, tier).observe(ttfb_s)
            self._child(self.duration, ns, svc, tier).observe(total_s)

    def arrived(self, ns: str, svc: str) -> None:
        """A request routed to the service (on arrival, before it is held or sent)."""
        self._child(self.arrivals, ns, svc).inc()

    def retried(self, ns: str, svc: str, reason: str) -> None:
        self._child(self.retries, ns, svc, reason).inc()

    def ejected(self, ns: str, svc: str, replica: str) -> None:
        self._child(self.ejections, ns, svc, replica).inc()

    def hold_ended(self, ns: str, svc: str, outcome: str) -> None:
        self._child(self.held_total, ns, svc, outcome).inc()

    def ttft_quantile(
        self, replica: str, q: float, window_s: float, now: float | None = None
    ) -> float | None:
        """The ``q`` quantile (nearest rank) of the replica's TTFTs in the last ``window_s``
        before ``now`` (the gateway's clock; default: read it)."""
        now = self._now() if now is None else now
        recent = sorted(t for at, t in self.recent_ttfb.get(replica, ()) if now - at <= window_s)
        if not recent:
            return None
        return nearest_rank(recent, q)

    def service_ttft_quantile(
        self, ns: str, svc: str, q: float, window_s: float, now: float | None = None
    ) -> float | None:
        """The ``q`` quantile of the service's TTFTs in the last ``window_s``."""
        now = self._now() if now is None else now
        recent = self.recent_service_ttfb.get((ns, svc), ())
        values = sorted(t for at, t in recent if now - at <= window_s)
        return nearest_rank(values, q) if values else None

    def render(self) -> bytes:
        return generate_latest(self.registry)

"""What the dashboard shows, read from the control plane: sampled into a bounded history,
served as one overview and pushed to live subscribers.

Every ``interval_s`` (the autoscaler's period by default) :meth:`DashboardFeed.sample`
reads the store (services, replicas, nodes, ResourcePolicies, cost counters, events),
the gateway (requests routed, in flight) and the scraper (the engines' TTFT/TPOT
histogram buckets and generated tokens), appends one :class:`~tierserve.web.history.Point`
per service to the :class:`~tierserve.web.history.History` and pushes an update to every
subscriber (the dashboard's SSE stream). It only reads: every decision it shows was made
by the controllers and the autoscaler, and is in the events.

Quantiles, attainment and $/1M tokens cover the last ``window_s`` (the change of the
engines' histograms and counters over it), in the engines' units: under
``--emulator-time-scale`` TTFT/TPOT are emulated seconds, like the SLO they are drawn
against. The request rate is per wall second; cost is the billing ledger's.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from tierserve.model import InferenceService, Node, Phase, Replica, ResourcePolicy
from tierserve.policy.autoscaling import AutoscalerConfig
from tierserve.policy.billing import CLOUD_COST
from tierserve.runtime.local.store import Event, Store
from tierserve.runtime.promtext import BUCKETS
from tierserve.web import histogram, tables
from tierserve.web.history import (
    DEFAULT_POINTS,
    FIELDS,
    History,
    Point,
    bytes_per_service_hour,
)

log = logging.getLogger("tierserve.dashboard")

TTFT, TPOT = BUCKETS
GENERATED = "vllm:generation_tokens_total"
SUBSCRIBER_QUEUE = 64
"""Updates a slow subscriber may fall behind before it is dropped (its browser
reconnects and starts again from a fresh overview)."""


class ReplicaMetrics(Protocol):
    """What the feed asks the scraper (``MetricsScraper`` has it)."""

    def buckets(self, key: tuple[str, str]) -> dict[str, dict[float, float]]: ...

    def fresh(self, key: tuple[str, str], now_s: float, max_age_s: float) -> dict[str, float]: ...


class GatewayView(Protocol):
    """What the feed asks the gateway (``GatewayState`` has it)."""

    def arrived(self, namespace: str, service: str) -> int: ...

    def in_flight(self, replica: str) -> int: ...


@dataclass(frozen=True)
class FeedSettings:
    interval_s: float = 5.0
    """Seconds between points (default: the autoscaler's period)."""
    points: int = DEFAULT_POINTS
    """Points kept per service (the ring's size)."""
    window_s: float = 60.0
    """The window of quantiles, attainment and $/1M tokens."""
    rate_s: float = 5.0
    """The request rate is over (at least) this long, or one interval when longer: a
    shorter look at the arrival counter would show the gaps between a batch of requests
    that start and end together."""
    metric_max_age_s: float = 30.0


def _key(namespace: str, name: str) -> str:
    return f"{namespace}/{name}"


def event_dict(e: Event) -> dict[str, Any]:
    """An event as ``GET /api/v1/events`` lists it (:meth:`Event.to_dict`)."""
    return e.to_dict()


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or math.isnan(value) or math.isinf(value):
        return None
    return round(value, digits)


@dataclass
class _ReplicaSeen:
    buckets: dict[str, dict[float, float]]
    generated: float | None
    window: deque[tuple[dict[str, dict[float, float]], float]]
    """(bucket change, tokens generated) of each recent period."""


class DashboardFeed:
    def __init__(
        self,
        store: Store,
        scraper: ReplicaMetrics,
        gateway: GatewayView,
        settings: FeedSettings | None = None,
        autoscaler: AutoscalerConfig | None = None,
    ) -> None:
        self.store = store
        self.scraper = scraper
        self.gateway = gateway
        self.settings = settings or FeedSettings()
        self.autoscaler = autoscaler or AutoscalerConfig()
        self.history = History(self.settings.points)
        self._periods = max(1, math.ceil(self.settings.window_s / self.settings.interval_s))
        self._last_s: float | None = None
        self._replicas: dict[tuple[str, str], _ReplicaSeen] = {}
        self._arrived: dict[str, deque[tuple[float, int]]] = {}
        self._cloud_seen: dict[str, set[str]] = {}
        self._cost_window: dict[str, deque[float]] = {}
        self._events_seen: dict[tuple[str, str, str, str, float], tuple[int, float, str]] = {}
        self._subscribers: set[asyncio.Queue[dict[str, Any] | None]] = set()
        self._current: dict[str, Any] = {"services": [], "nodes": []}

    # -- sampling -----------------------------------------------------------------------------

    def due(self, now: float) -> bool:
        return self._last_s is None or now - self._last_s >= self.settings.interval_s

    def tick(self, now: float) -> None:
        """Sample when due (called every controller tick)."""
        if self.due(now):
            self.sample(now)

    def sample(self, now: float) -> dict[str, Any]:
        """One point per service, the current tables, the new events; pushed to every
        subscriber and returned."""
        self._last_s = now
        services = self.store.list(InferenceService, None)
        replicas = self.store.list(Replica, None)
        nodes = {n.name: n for n in self.store.list(Node)}
        policies = self.store.list(ResourcePolicy, None)
        self._observe_replicas(replicas, nodes, now)
        costs = self._cost_totals()
        points: dict[str, dict[str, Any]] = {}
        details = []
        for service in services:
            key = _key(service.namespace, service.name)
            theirs = [
                r
                for r in replicas
                if r.namespace == service.namespace and r.spec.service == service.name
            ]
            point = self._point(service, theirs, nodes, costs.get(key, 0.0), now)
            self.history.append(key, point)
            points[key] = point.to_dict()
            details.append(self._detail(service, theirs, nodes, policies, now))
        self.history.keep_only(_key(s.namespace, s.name) for s in services)
        for gone in set(self._cost_window) - set(points):
            del self._cost_window[gone]
            self._cloud_seen.pop(gone, None)
            self._arrived.pop(gone, None)
        events = self._new_events()
        self.history.add_events(events)
        self._current = {"services": details, "nodes": tables.node_rows(nodes, replicas)}
        update = {"now": now, "points": points, **self._current, "events": events}
        self._push(update)
        return update

    def _observe_replicas(
        self, replicas: Sequence[Replica], nodes: Mapping[str, Node], now: float
    ) -> None:
        live = set()
        max_age = self.settings.metric_max_age_s
        for r in replicas:
            key = (r.namespace, r.name)
            live.add(key)
            buckets = self.scraper.buckets(key)
            generated = self.scraper.fresh(key, now, max_age).get(GENERATED)
            seen = self._replicas.get(key)
            if seen is None:
                seen = self._replicas[key] = _ReplicaSeen({}, None, deque(maxlen=self._periods))
            change = {
                name: histogram.delta(b, seen.buckets.get(name) if seen.buckets else None)
                for name, b in buckets.items()
            }
            if not seen.buckets:  # the first look: what came before is not this window's
                change = {}
            tokens = 0.0
            if generated is not None and seen.generated is not None:
                tokens = generated - seen.generated if generated >= seen.generated else generated
            seen.window.append((change, tokens))
            if buckets:
                seen.buckets = {name: dict(b) for name, b in buckets.items()}
            if generated is not None:
                seen.generated = generated
        for gone in set(self._replicas) - live:
            del self._replicas[gone]

    def _window(self, replicas: Sequence[Replica], name: str) -> dict[float, float]:
        return histogram.add(
            change.get(name, {})
            for r in replicas
            if (seen := self._replicas.get((r.namespace, r.name))) is not None
            for change, _ in seen.window
        )

    def _tokens(self, replicas: Sequence[Replica]) -> float:
        return sum(
            tokens
            for r in replicas
            if (seen := self._replicas.get((r.namespace, r.name))) is not None
            for _, tokens in seen.window
        )

    def _cost_totals(self) -> dict[str, float]:
        totals: dict[str, float] = {}
        for labels, value in self.store.counters(CLOUD_COST).items():
            d = dict(labels)
            key = _key(d["namespace"], d["service"])
            totals[key] = totals.get(key, 0.0) + value
        return totals

    def _point(
        self,
        service: InferenceService,
        replicas: Sequence[Replica],
        nodes: Mapping[str, Node],
        cost_total: float,
        now: float,
    ) -> Point:
        key = _key(service.namespace, service.name)
        counts = {"idc": [0, 0], "cloud": [0, 0]}
        by_tier: dict[str, list[Replica]] = {"idc": [], "cloud": []}
        pending = 0
        cost_per_hour = 0.0
        cloud_now = set()
        for r in replicas:
            node = nodes.get(r.node_name or "")
            if r.phase == Phase.PENDING or node is None:
                pending += r.phase == Phase.PENDING
                continue
            by_tier[node.tier].append(r)
            if node.virtual and r.status.scheduled_s is not None:
                cloud_now.add(r.name)
                cost_per_hour += tables.replica_price(r, node)
            if r.terminating:
                continue
            counts[node.tier][0] += 1
            counts[node.tier][1] += r.ready
        seen = self._cloud_seen.setdefault(key, set())
        cold_starts = len(cloud_now - seen) if self.history.series.get(key) else 0
        self._cloud_seen[key] = cloud_now
        arrived = self.gateway.arrived(service.namespace, service.name)
        seen_arrivals = self._arrived.setdefault(key, deque())
        seen_arrivals.append((now, arrived))
        while len(seen_arrivals) > 2 and now - seen_arrivals[1][0] >= self.settings.rate_s:
            seen_arrivals.popleft()  # keep the oldest look at least rate_s old
        rate = None
        first_s, first = seen_arrivals[0]
        if now > first_s:
            rate = max(0, arrived - first) / (now - first_s)
        ttft = self._window(replicas, TTFT)
        tpot = self._window(replicas, TPOT)
        slo = service.spec.autoscaling.slo if service.spec.autoscaling is not None else None
        costs = self._cost_window.setdefault(key, deque(maxlen=self._periods + 1))
        costs.append(cost_total)
        window_cost = costs[-1] - costs[0]
        window_s = min(len(costs) - 1, self._periods) * self.settings.interval_s
        tokens_cloud = self._tokens(by_tier["cloud"])
        tokens_idc = self._tokens(by_tier["idc"])
        tokens_all = tokens_cloud + tokens_idc
        return Point(
            t=now,
            idc_allocated=counts["idc"][0],
            idc_ready=counts["idc"][1],
            cloud_allocated=counts["cloud"][0],
            cloud_ready=counts["cloud"][1],
            pending=pending,
            cold_starts=cold_starts,
            request_rate=_round(rate),
            ttft_p50=_round(histogram.quantile(ttft, 0.5)),
            ttft_p90=_round(histogram.quantile(ttft, 0.9)),
            tpot_p50=_round(histogram.quantile(tpot, 0.5)),
            tpot_p90=_round(histogram.quantile(tpot, 0.9)),
            attainment_ttft=_round(
                histogram.share_at_most(ttft, slo.ttft_seconds) if slo else None
            ),
            attainment_tpot=_round(
                histogram.share_at_most(tpot, slo.tpot_seconds)
                if slo is not None and slo.tpot_seconds is not None
                else None
            ),
            cloud_cost_per_hour=round(cost_per_hour, 4),
            cloud_cost_total=round(cost_total, 6),
            usd_per_m_tok_idc=0.0 if tokens_idc > 0 else None,
            usd_per_m_tok_cloud=_round(window_cost / tokens_cloud * 1e6) if tokens_cloud else None,
            output_tokens_rate=_round(tokens_all / window_s) if window_s > 0 else None,
        )

    # -- the tables -----------------------------------------------------------------------------

    def _detail(
        self,
        service: InferenceService,
        replicas: Sequence[Replica],
        nodes: Mapping[str, Node],
        policies: Sequence[ResourcePolicy],
        now: float,
    ) -> dict[str, Any]:
        return tables.service_table(
            service,
            replicas,
            nodes,
            policies,
            now,
            in_flight=self.gateway.in_flight,
            ttft_p50=lambda r: _round(histogram.quantile(self._window([r], TTFT), 0.5)),
            autoscaler=self.autoscaler,
        )

    def _new_events(self) -> list[dict[str, Any]]:
        new = []
        seen: dict[tuple[str, str, str, str, float], tuple[int, float, str]] = {}
        # The newest events only: what the history keeps, so this map stays bounded too.
        for e in self.store.events()[-self.history.events_capacity :]:
            key = (e.kind, e.namespace, e.name, e.reason, e.first_s)
            mark = (e.count, e.last_s, e.message)
            seen[key] = mark
            if self._events_seen.get(key) != mark:
                new.append(event_dict(e))
        self._events_seen = seen
        new.sort(key=lambda e: e["lastTimestamp"])
        return new

    # -- reading ------------------------------------------------------------------------------

    def overview(self, points: int | None = None) -> dict[str, Any]:
        """Everything the dashboard draws: each service's history (plain series, oldest
        first; its newest ``points`` when given) and current tables, the nodes and the
        kept events."""
        series = self.history.series
        services = []
        for detail in self._current["services"]:
            key = _key(detail["namespace"], detail["name"])
            s = series.get(key)
            history = s.columns(points) if s is not None else {}
            services.append({**detail, "history": history})
        return {
            "now": self._last_s,
            "intervalS": self.settings.interval_s,
            "windowS": self.settings.window_s,
            "points": self.settings.points,
            "fields": list(FIELDS),
            "bytesPerServiceHour": bytes_per_service_hour(self.settings.interval_s),
            "historyBytes": self.history.nbytes(),
            "services": services,
            "nodes": self._current["nodes"],
            "events": sorted(self.history.events, key=lambda e: e["lastTimestamp"]),
        }

    # -- live subscribers ---------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[dict[str, Any] | None]:
        """A queue of the updates to come; None in it means the feed is closing."""
        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self._subscribers.add(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any] | None]) -> None:
        self._subscribers.discard(queue)

    def _push(self, update: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            try:
                queue.put_nowait(update)
            except asyncio.QueueFull:  # too slow: drop it; it reconnects from scratch
                self._subscribers.discard(queue)
                _close(queue)

    def close(self) -> None:
        """End every subscriber's stream (the control plane is stopping)."""
        for queue in list(self._subscribers):
            _close(queue)
        self._subscribers.clear()


def _close(queue: asyncio.Queue[dict[str, Any] | None]) -> None:
    while True:  # make room for the end mark
        try:
            queue.put_nowait(None)
            return
        except asyncio.QueueFull:
            queue.get_nowait()

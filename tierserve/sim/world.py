"""The simulated world: nodes, services, replicas and requests on virtual time.

One :class:`Simulation` runs the control loop of the local runtime with no processes
and no sockets, calling the very functions the runtimes call:

- every ``tick_s``: the autoscaler (:func:`policy.autoscaling.evaluate`, due every
  period), then the controllers — :func:`policy.replicaset.decide` (create, scale in in
  the ResourcePolicy's reverse-unit order, replace), :func:`policy.provisioning.schedule_one`
  (ResourcePolicy placement), :func:`policy.provisioning.provisioned` (virtual-node cold
  start), :func:`policy.drain.stop_due` (drain, then stop);
- every ``metrics_interval_s``: a scrape of every Ready replica's signals, under the
  names the emulator exports (``DCGM_CUSTOM_PROCESS_SM_UTIL``, ``vllm:num_requests_*``,
  ``vllm:gpu_cache_usage_perc``) and the gateway's (``tierserve:inflight_requests``,
  ``tierserve:ttft_p90_seconds``), which the autoscaler reads as it reads scraped ones;
- every request: routed as the gateway routes (:mod:`policy.routing`, least outstanding
  among Ready replicas, IDC before cloud on ties), held while no replica is Ready (up to
  ``hold_timeout_s``, then failed as the gateway's 503), served by the replica's engine
  model (:mod:`tierserve.sim.engine`: the emulator's performance model);
- billing with :func:`policy.billing.bill` (GPU-seconds from scheduling, cloud ones at
  the node's price).

What differs from the real runtime, on purpose: a replica's process start and readiness
probe are one delay (``startup_overhead_s`` + the engine's load time, Ready at the first
tick after); the control loop skips ticks where nothing can change (no pending,
provisioning, starting or terminating replica, no replica newly Ready and no new size or
annotation), which changes no decision since every decision is level-triggered on the
same state.
"""

from __future__ import annotations

import bisect
import heapq
import math
import random
from array import array
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from tierserve.engine.perf.capacity import CapacityModel
from tierserve.model import InferenceService, Node, Phase, Replica, ResourcePolicy
from tierserve.model.autoscaling import SLO
from tierserve.model.base import TypedObject
from tierserve.policy import billing, drain, provisioning, rebalance, replicaset
from tierserve.policy.autoscaling import (
    ORACLE,
    PLANNER_MAX_REPLICAS,
    AutoscalerConfig,
    PlannerContext,
    due,
    evaluate,
    mine,
    policy_of,
)
from tierserve.policy.naming import replica_name
from tierserve.policy.planner import MIX_WEIGHT, Load
from tierserve.policy.routing import (
    SLOW_START_S,
    Candidate,
    OutstandingIndex,
    RoutingState,
    routing_policy,
)
from tierserve.policy.signals import (
    INFLIGHT_METRIC,
    TTFT_P90_METRIC,
    TTFT_WINDOW_S,
    nearest_rank,
)
from tierserve.policy.snapshot import Snapshot
from tierserve.policy.tiers import tiers_for
from tierserve.sim.engine import (
    Completion,
    ReplicaModel,
    emulator_config_for,
    make_replica,
)
from tierserve.sim.workload import (
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_PROMPT_TOKENS,
    Arrival,
    ClosedLoop,
)

Key = tuple[str, str]
TIERS = ("idc", "cloud")
RECENT_S = 5.0
"""The tier planner's recent rate covers the last 5 s of arrivals."""


@dataclass(frozen=True)
class SimSettings:
    """The controller periods and delays (the local runtime's flags, in seconds)."""

    tick_s: float = 0.5
    """The control loop period (``up --tick-s``)."""
    metrics_interval_s: float = 1.0
    """How often every Ready replica is scraped (``up --metrics-interval-s``)."""
    drain_grace_s: float = 30.0
    hold_timeout_s: float = 60.0
    """The gateway holds a request this long for a Ready replica, then answers 503."""
    startup_overhead_s: float = 0.0
    """Process start before the engine loads (python start-up, image pull on a node)."""
    autoscaler: AutoscalerConfig = field(default_factory=AutoscalerConfig)
    autoscaler_phase_s: float | None = None
    """The autoscaler evaluates each service this long after the load starts, then every
    period (None: its periods run on from the first tick, or the warm-up's). A real
    control plane's periods start when it does, so a step in the load falls at a
    different point of its period each run; a fidelity check against one real run sets
    the phase that run had."""
    metrics_phase_s: float | None = None
    """A scrape comes this long after the load starts (modulo the interval), then every
    interval (None: the scrapes run on from the first tick, or the warm-up's). With
    ``autoscaler_phase_s`` it sets how old a sample each evaluation reads: the local
    runtime's scrape loop runs just after its autoscaler's tick, so its HPA reads the
    sample taken almost one interval before."""
    autoscaler_policy: str | None = None
    """Which autoscaler of ``policy.autoscaling.AUTOSCALERS`` runs for every service;
    None: each service's own (``spec.autoscaling.policy``, default ``hpa``)."""
    routing: str = "least_outstanding"
    routing_slow_start_s: float = SLOW_START_S
    """The gateway's slow start (``policy.routing``): a newly Ready replica's share of new
    requests ramps up over this many seconds (0: off)."""
    engine_model: str = "fast"
    """``fast`` (closed form between events) or ``step`` (the step-level reference)."""
    timeline_step_s: float | None = None
    """Sampling period of the timeline (None: duration / 1000, at least ``tick_s``)."""
    warm_start: bool = False
    """The services' initial replicas are placed and Ready when the workload starts (a
    benchmark that waits for them first); their warm-up runs at negative times."""
    drain_limit_s: float = 600.0
    """After the workload ends, run this long at most for in-flight requests to finish."""
    seed: int = 0


@dataclass(frozen=True)
class Slo:
    ttft_s: float = 2.0
    tpot_s: float = 0.1


@dataclass
class Decision:
    """One decision the simulated control plane made, as its event would read."""

    t_s: float
    kind: str
    """``SuccessfulRescale``, ``Scheduled``, ``FailedScheduling``, ``Provisioned``,
    ``Killing``, ``Ready``, ..."""
    subject: str
    message: str
    count: int = 1
    service: str = ""
    """The service it concerns (``namespace/name``); empty when none."""


@dataclass
class ServicePoint:
    """One service at a timeline point (the fleet-wide figures split per service)."""

    desired: int
    allocated: dict[str, int]
    ready: dict[str, int]
    arrivals: int
    """Requests for it that arrived since the previous point."""
    cloud_cost: float
    """Its cumulative cloud cost."""
    gpu_seconds: dict[str, float]
    """Its cumulative GPU-seconds per tier."""


@dataclass
class TimelinePoint:
    t_s: float
    desired: int
    allocated: dict[str, int]
    """Replicas bound to a node of each tier (not yet Terminating)."""
    ready: dict[str, int]
    arrivals: int
    """Requests that arrived since the previous point."""
    in_flight: int
    held: int
    cloud_cost: float
    """Cumulative cloud cost at this point."""
    gpu_seconds: dict[str, float]
    """Cumulative GPU-seconds per tier."""
    services: dict[str, ServicePoint] = field(default_factory=dict)
    """The same per service (``namespace/name``), in the order of ``SimResult.services``."""


@dataclass
class Requests:
    """Every finished request (parallel compact arrays) and the failed ones."""

    arrival_s: array[float] = field(default_factory=lambda: array("d"))
    ttft_s: array[float] = field(default_factory=lambda: array("f"))
    tpot_s: array[float] = field(default_factory=lambda: array("f"))
    e2e_s: array[float] = field(default_factory=lambda: array("f"))
    output_tokens: array[int] = field(default_factory=lambda: array("l"))
    tier: array[int] = field(default_factory=lambda: array("b"))
    """0 = idc, 1 = cloud."""
    failed_arrival_s: array[float] = field(default_factory=lambda: array("d"))
    """Requests that got no answer: held past the hold timeout, or cut by a stop."""
    service: array[int] = field(default_factory=lambda: array("h"))
    """Per finished request: its service's index in ``SimResult.services`` (empty in a
    result built without it: every request then counts for the first service)."""
    failed_service: array[int] = field(default_factory=lambda: array("h"))
    """Per failed request: its service's index, -1 for no known service."""

    def __len__(self) -> int:
        return len(self.ttft_s)


@dataclass
class SimResult:
    name: str
    settings: SimSettings
    slo: Slo
    duration_s: float
    end_s: float
    requests: Requests
    timeline: list[TimelinePoint]
    decisions: list[Decision]
    gpu_seconds: dict[str, float]
    cloud_cost: float
    cold_starts: int
    first_scale_out_s: float | None
    """When a service's size first rose above its size at the start (or its
    ``minReplicas``, if more), from the start of the load."""
    peak_replicas: dict[str, int]
    wall_s: float = 0.0
    autoscaler: str = "hpa"
    """The autoscaler(s) that ran (``hpa``, ``slo``)."""
    budget_blocked: int = 0
    """Scale-outs the tier planner's budget held back."""
    moves_to_idc: int = 0
    """Cloud replicas moved back to the IDC (make before break)."""
    services: list[str] = field(default_factory=list)
    """The services simulated, ``namespace/name``, in index order."""


@dataclass
class _Live:
    """A replica in the simulation: its object and what the body keeps beside it."""

    obj: Replica
    engine: ReplicaModel | None = None
    ready_at: float | None = None
    in_flight: int = 0
    tier: int = 0
    first_tokens: deque[tuple[float, float]] = field(default_factory=deque)
    """(first token time, TTFT) of recent requests, for the gateway's TTFT signal."""
    scraped: dict[str, float] | None = None
    scraped_at: float = -1e18
    next_t: float | None = None
    """When its engine next changes (its entry in the event heap); None: idle."""
    gone: bool = False
    young: bool = False
    """Ready and still in its slow start: beside the routing index, not in it."""
    service_index: int = 0
    """Its service's index in ``SimResult.services`` (what each request it serves records)."""


@dataclass
class _Window:
    """What the gateway saw of one service since the tier planner last looked."""

    since: float
    arrivals: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    ttft: list[float] = field(default_factory=list)
    tpot: list[float] = field(default_factory=list)
    mix: tuple[float, float] = (DEFAULT_PROMPT_TOKENS, DEFAULT_OUTPUT_TOKENS)
    """The last token mix seen (kept through quiet windows)."""
    measured: bool = False
    """Whether ``mix`` was measured (the first measurement replaces the default)."""
    recent: deque[float] = field(default_factory=deque)
    """Arrival times of the last ``RECENT_S`` (the planner's recent rate)."""


@dataclass
class _Pending:
    arrival: Arrival
    service: Key
    request_id: int
    loop: ClosedLoop | None = None
    """The closed-loop client that sent it (it sends the next when this one ends)."""


class Simulation:
    def __init__(
        self,
        objects: Iterable[TypedObject],
        arrivals: Iterator[Arrival],
        duration_s: float,
        settings: SimSettings | None = None,
        slo: Slo | None = None,
        name: str = "scenario",
        closed_loops: Iterable[ClosedLoop] = (),
        progress: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings or SimSettings()
        self.slo = slo or Slo()
        self.name = name
        self.duration_s = duration_s
        self.nodes: dict[str, Node] = {}
        self.policies: list[ResourcePolicy] = []
        self.services: dict[Key, InferenceService] = {}
        for obj in objects:
            if isinstance(obj, Node):
                self.nodes[obj.name] = obj
            elif isinstance(obj, ResourcePolicy):
                self.policies.append(obj)
            elif isinstance(obj, InferenceService):
                self.services[(obj.namespace, obj.name)] = obj
        self.replicas: dict[Key, _Live] = {}
        self.arrivals = arrivals
        self.closed_loops = list(closed_loops)
        self.progress = progress
        self._rng = random.Random(self.settings.seed)
        self._routing = routing_policy(self.settings.routing, self.settings.routing_slow_start_s)
        self._routing_state = RoutingState()
        self._indexed = self.settings.routing == "least_outstanding"
        """least_outstanding keeps an incremental index (``policy.routing.OutstandingIndex``)."""
        self._index: dict[Key, OutstandingIndex] = {k: OutstandingIndex() for k in self.services}
        self._young: dict[Key, list[_Live]] = {k: [] for k in self.services}
        """Ready replicas still in their slow start (few: compared one by one)."""
        self._events: list[tuple[float, int, _Live]] = []
        self._event_seq = 0
        self._autoscaler_state: dict[Key, Any] = {}
        self._last_evaluated: dict[Key, float] = {}
        self._initial_size = {
            k: max(s.spec.replicas, s.spec.min_replicas or 0) for k, s in self.services.items()
        }
        """A scale-out is a size above this: the initial size, or ``minReplicas`` if more."""
        self._ready_by_service: dict[Key, list[_Live]] = {k: [] for k in self.services}
        self._held: dict[Key, deque[tuple[_Pending, float]]] = {k: deque() for k in self.services}
        self._requests: dict[int, tuple[_Live, ClosedLoop | None]] = {}
        """Request id -> (replica serving it, the closed loop that sent it)."""
        self._closed: list[tuple[float, int, Arrival, ClosedLoop]] = []
        self._held_since: dict[int, float] = {}
        """Arrival times of requests the gateway held (they reached a replica later)."""
        self._next_id = 0
        self._dirty = True
        self._out = Requests()
        self._decisions: list[Decision] = []
        self._last_decision: dict[tuple[str, str], Decision] = {}
        self._gpu_s = dict.fromkeys(TIERS, 0.0)
        self._cloud_cost = 0.0
        self._service_index = {k: i for i, k in enumerate(self.services)}
        self._service_cost = dict.fromkeys(self.services, 0.0)
        self._service_gpu_s = {k: dict.fromkeys(TIERS, 0.0) for k in self.services}
        self._service_arrived = dict.fromkeys(self.services, 0)
        self._cold_starts = 0
        self._budget_blocked = 0
        self._moves = 0
        self._first_scale_out: float | None = None
        self._peak = dict.fromkeys(TIERS, 0)
        self._arrived_since = 0
        self._engine_cache: dict[tuple[str, str], tuple[Any, float]] = {}
        self._only_service = next(iter(self.services)) if len(self.services) == 1 else None
        planned = {
            k
            for k, svc in self.services.items()
            if (self.settings.autoscaler_policy or policy_of(svc)) in (SLO, ORACLE)
        }
        self._windows: dict[Key, _Window] = {k: _Window(0.0) for k in planned}
        self._future: dict[Key, array[float]] | None = None
        """Every arrival time per service, for the clairvoyant oracle (None: no oracle)."""
        self._load_start = 0.0 if not self.settings.warm_start else math.inf
        """When the load starts (after a warm start's warm-up: the oracle sees none before)."""
        if any(
            (self.settings.autoscaler_policy or policy_of(svc)) == ORACLE
            for svc in self.services.values()
        ):
            self._materialize()
        """Per-service load windows, kept only for services the tier planner sizes."""
        self._capacity = CapacityModel(mix_step=0.1)
        self._cold: dict[str, float] = {}
        """Learned cold start per tier (scheduled -> Ready), an EWMA of what happened."""

    # -- decisions log -----------------------------------------------------------------------

    def _record(
        self,
        now: float,
        kind: str,
        subject: str,
        message: str,
        fold: bool = False,
        service: Key | None = None,
    ) -> None:
        key = (kind, subject)
        last = self._last_decision.get(key) if fold else None
        if last is not None:
            last.count += 1
            last.message = message
            return
        about = f"{service[0]}/{service[1]}" if service is not None else ""
        decision = Decision(now, kind, subject, message, service=about)
        self._decisions.append(decision)
        if fold:
            self._last_decision[key] = decision

    # -- requests ----------------------------------------------------------------------------

    def _service_of(self, arrival: Arrival) -> Key | None:
        if arrival.service is None:
            return self._only_service
        name = arrival.service
        namespace, _, short = name.rpartition("/")
        key = (namespace or "default", short)
        if key in self.services:
            return key
        for k, svc in self.services.items():  # a Host: <name>-<namespace>.example.com
            if svc.host == name:
                return k
        return None

    def _arrive(self, arrival: Arrival, loop: ClosedLoop | None = None) -> None:
        self._arrived_since += 1
        key = self._service_of(arrival)
        request_id = self._next_id
        self._next_id += 1
        if key is None:
            self._failed(arrival.t_s, arrival.t_s, loop, None)
            return
        self._service_arrived[key] += 1
        pending = _Pending(arrival, key, request_id, loop)
        window = self._windows.get(key)
        if window is not None:
            window.recent.append(arrival.t_s)
            window.arrivals += 1
            window.prompt_tokens += arrival.prompt_tokens
            window.output_tokens += arrival.output_tokens
        if not self._ready_by_service[key]:
            self._held[key].append((pending, arrival.t_s + self.settings.hold_timeout_s))
            return
        self._dispatch(pending, arrival.t_s)

    def _age(self, live: _Live, now: float) -> float | None:
        ready_s = live.obj.status.ready_s
        return None if ready_s is None else now - ready_s

    def _choose(self, key: Key, now: float) -> _Live:
        ready = self._ready_by_service[key]
        if self._indexed and not self._young[key]:
            name = self._index[key].choose()
        elif self._indexed:
            # the index's best warm replica against those in slow start, by the policy
            young, index = self._young[key], self._index[key]
            window = self.settings.routing_slow_start_s
            for live in [y for y in young if (self._age(y, now) or 0.0) >= window]:
                young.remove(live)
                live.young = False
                index.set(live.obj.name, live.tier, live.in_flight)
            candidates = [
                Candidate(y.obj.name, y.tier, y.in_flight, age_s=self._age(y, now))
                for y in young
            ]
            warm = index.choose()
            if warm is not None:
                best = self.replicas[(key[0], warm)]
                candidates.append(Candidate(warm, best.tier, best.in_flight))
            name = self._routing.choose(candidates, self._routing_state).choice
        else:
            candidates = [
                Candidate(r.obj.name, r.tier, r.in_flight, age_s=self._age(r, now))
                for r in ready
            ]
            decision = self._routing.choose(candidates, self._routing_state)
            self._routing_state = decision.state
            name = decision.choice
        return self.replicas[(key[0], name or "")]

    def _in_flight(self, live: _Live, delta: int) -> None:
        live.in_flight += delta
        if self._indexed and live.obj.phase == Phase.READY and not live.young:
            key = replicaset.service_key(live.obj)
            self._index[key].set(live.obj.name, live.tier, live.in_flight)

    def _schedule_event(self, live: _Live) -> None:
        nxt = live.engine.next_event_s() if live.engine is not None else None
        if nxt != live.next_t:
            live.next_t = nxt
            if nxt is not None:
                self._event_seq += 1
                heapq.heappush(self._events, (nxt, self._event_seq, live))

    def _advance_due(self, until: float) -> None:
        """Advance every engine with something happening at or before ``until``."""
        events = self._events
        while events and events[0][0] <= until:
            t, _, live = heapq.heappop(events)
            if live.gone or live.next_t != t:
                continue  # stale: the replica was advanced or removed since
            live.next_t = None
            self._advance(live, until)

    def _dispatch(self, pending: _Pending, now: float) -> None:
        self._advance_due(now)
        live = self._choose(pending.service, now)
        assert live.engine is not None
        a = pending.arrival
        if a.t_s < now:  # it was held: it reaches the replica now, its latency counts from then
            self._held_since[pending.request_id] = a.t_s
        live.engine.submit(pending.request_id, max(a.t_s, now), a.prompt_tokens, a.output_tokens)
        self._in_flight(live, 1)
        self._requests[pending.request_id] = (live, pending.loop)
        self._schedule_event(live)

    def _advance(self, live: _Live, until: float, force: bool = False) -> None:
        """Run ``live``'s engine up to ``until`` (only when something happens by then,
        unless ``force``: gauges are read as of ``until``)."""
        engine = live.engine
        if engine is None:
            return
        nxt = engine.next_event_s()
        if not force and (nxt is None or nxt > until):
            self._schedule_event(live)
            return
        for c in engine.advance(until):
            self._completed(live, c)
        window = self._windows.get(replicaset.service_key(live.obj)) if self._windows else None
        for ft in engine.take_first_tokens():
            ttft = ft.first_token_s - self._held_since.get(ft.request_id, ft.arrival_s)
            live.first_tokens.append((ft.first_token_s, ttft))
            if window is not None:
                window.ttft.append(ttft)
        self._schedule_event(live)

    def _failed(
        self, arrival_s: float, now: float, loop: ClosedLoop | None, service: Key | None
    ) -> None:
        self._out.failed_arrival_s.append(arrival_s)
        self._out.failed_service.append(-1 if service is None else self._service_index[service])
        self._next_from(loop, now)

    def _next_from(self, loop: ClosedLoop | None, now: float) -> None:
        if loop is None:
            return
        nxt = loop.next_after(now)
        if nxt is not None:
            heapq.heappush(self._closed, (nxt.t_s, self._next_id, nxt, loop))
            self._next_id += 1

    def _completed(self, live: _Live, c: Completion) -> None:
        _, loop = self._requests.pop(c.request_id, (live, None))
        self._in_flight(live, -1)
        out = self._out
        arrived = self._held_since.pop(c.request_id, c.arrival_s)
        out.arrival_s.append(arrived)
        out.ttft_s.append(c.first_token_s - arrived)
        out.tpot_s.append(c.tpot_s)
        out.e2e_s.append(c.end_s - arrived)
        out.output_tokens.append(c.output_tokens)
        out.tier.append(live.tier)
        out.service.append(live.service_index)
        if self._windows:
            window = self._windows.get(replicaset.service_key(live.obj))
            if window is not None:
                window.tpot.append(c.tpot_s)
        self._next_from(loop, c.end_s)

    def _next_engine_event(self) -> tuple[float | None, _Live | None]:
        events = self._events
        while events:
            t, _, live = events[0]
            if not live.gone and live.next_t == t:
                return t, live
            heapq.heappop(events)
        return None, None

    def _expire_held(self, now: float) -> None:
        for queue in self._held.values():
            while queue and queue[0][1] <= now:
                pending, deadline = queue.popleft()
                self._failed(pending.arrival.t_s, deadline, pending.loop, pending.service)

    def _release_held(self, key: Key, now: float) -> None:
        queue = self._held[key]
        while queue and self._ready_by_service[key]:
            pending, _ = queue.popleft()
            self._dispatch(pending, now)

    # -- metrics -------------------------------------------------------------------------------

    def _scrape(self, now: float) -> None:
        window = TTFT_WINDOW_S
        for live in self.replicas.values():
            if live.obj.phase != Phase.READY or live.engine is None:
                continue
            engine = live.engine
            # The gauges as of now: run the engine up to now first (a step boundary may
            # have admitted what was waiting since its last event).
            self._advance(live, now, force=True)
            recent = live.first_tokens
            while recent and recent[0][0] < now - window:
                recent.popleft()
            values = {
                "DCGM_CUSTOM_PROCESS_SM_UTIL": engine.sm_util_pct(now),
                "DCGM_FI_DEV_GPU_UTIL": engine.sm_util_pct(now),
                "vllm:num_requests_running": float(engine.running),
                "vllm:num_requests_waiting": float(engine.waiting),
                "vllm:gpu_cache_usage_perc": engine.kv_usage,
                "vllm:kv_cache_usage_perc": engine.kv_usage,
                INFLIGHT_METRIC: float(live.in_flight),
            }
            if recent:
                values[TTFT_P90_METRIC] = nearest_rank(sorted(t for _, t in recent), 0.9)
            live.scraped = values
            live.scraped_at = now

    def _fresh(self, replicas: list[Replica], now: float) -> dict[str, dict[str, float]]:
        max_age = self.settings.autoscaler.metric_max_age_s
        out = {}
        for r in replicas:
            live = self.replicas.get((r.namespace, r.name))
            if live is None or live.scraped is None or now - live.scraped_at > max_age:
                continue
            out[r.name] = live.scraped
        return out

    # -- the autoscaler ------------------------------------------------------------------------

    def _autoscale(self, now: float) -> None:
        config = self.settings.autoscaler
        replicas = [live.obj for live in self.replicas.values()]
        for key, service in list(self.services.items()):
            if not due(self._last_evaluated.get(key), now, config):
                continue
            theirs = mine(service, replicas)
            context = (
                self._planner_context(key, service, replicas, now) if key in self._windows else None
            )
            evaluation = evaluate(
                service,
                theirs,
                self._fresh(theirs, now),
                self._autoscaler_state.get(key),
                now,
                config,
                self.settings.autoscaler_policy,
                context,
            )
            if evaluation is None:
                continue
            self._last_evaluated[key] = now
            self._autoscaler_state[key] = evaluation.state
            if evaluation.message is None:
                self._rebalance(key, service, replicas, context, now)
                continue
            spec = service.spec.model_copy(update={"replicas": evaluation.desired})
            self.services[key] = service.model_copy(update={"spec": spec})
            self._record(
                now, "SuccessfulRescale", f"{key[0]}/{key[1]}", evaluation.message, service=key
            )
            if evaluation.plan is not None and evaluation.plan.budget_blocked:
                self._budget_blocked += 1
                self._record(
                    now,
                    "BudgetBlocked",
                    f"{key[0]}/{key[1]}",
                    evaluation.plan.reason,
                    service=key,
                )
            if self._first_scale_out is None and evaluation.desired > self._initial_size[key]:
                self._first_scale_out = now
            self._dirty = True

    def _rebalance(
        self,
        key: Key,
        service: InferenceService,
        replicas: list[Replica],
        context: PlannerContext | None,
        now: float,
    ) -> None:
        """Move a cloud replica back to the IDC when it has room (``policy.rebalance``)."""
        if not rebalance.enabled(service):
            return
        tiers = (
            context.tiers
            if context is not None
            else tuple(tiers_for(service, replicas, self.nodes, self.policies, now, 0.0, 1))
        )
        victim = rebalance.move(service, replicas, self.nodes, tiers)
        if victim is None:
            return
        self.services[key] = rebalance.moved(service, victim)
        self._record(
            now, "Rebalance", f"{key[0]}/{key[1]}", rebalance.message(victim), service=key
        )
        self._moves += 1
        self._dirty = True

    def _materialize(self) -> None:
        """Read the whole workload ahead (the oracle knows the future)."""
        everything = list(self.arrivals)
        self.arrivals = iter(everything)
        future: dict[Key, array[float]] = {k: array("d") for k in self.services}
        for a in everything:
            key = self._service_of(a)
            if key is not None:
                future[key].append(a.t_s)
        self._future = future

    def _future_rate(self, key: Key, now: float, horizon_s: float, period_s: float) -> float:
        """The highest arrival rate of any minute in ``[now, now + horizon + period]``."""
        assert self._future is not None
        times = self._future[key]
        t = now - self._load_start
        end = t + horizon_s + period_s
        minute = 60.0
        best = 0.0
        start = t
        while start < end:
            lo = bisect.bisect_left(times, start)
            hi = bisect.bisect_left(times, start + minute)
            best = max(best, (hi - lo) / minute)
            start += period_s
        return best

    def _planner_context(
        self, key: Key, service: InferenceService, replicas: list[Replica], now: float
    ) -> PlannerContext | None:
        """What the tier planner reads: the load of the window since it last looked (as
        the gateway records it), the tiers and one replica's capacity at the SLO."""
        spec = service.spec.autoscaling
        if spec is None or spec.slo is None:
            return None
        slo = spec.slo
        window = self._windows[key]
        span = now - window.since
        if span <= 0:
            return None
        if window.arrivals:  # smoothed: the capacity model is asked once per mix bucket
            prompt_now = window.prompt_tokens / window.arrivals
            output_now = window.output_tokens / window.arrivals
            w = MIX_WEIGHT if window.measured else 1.0
            window.mix = (
                w * prompt_now + (1 - w) * window.mix[0],
                w * output_now + (1 - w) * window.mix[1],
            )
            window.measured = True
        prompt, output = window.mix
        q = slo.attainment
        ttft = nearest_rank(sorted(window.ttft), q) if window.ttft else None
        tpot = nearest_rank(sorted(window.tpot), q) if window.tpot else None
        node = next(
            (n for n in self.nodes.values() if not n.virtual), next(iter(self.nodes.values()))
        )
        shape, load_s = self._engine_for(service, node)
        model = self._capacity

        def capacity(correction: float) -> float:
            """The model's rate at the TTFT objective tightened by the correction."""
            ttft_s = slo.ttft_seconds / correction
            return model.rate(shape, prompt, output, ttft_s, slo.tpot_seconds, q)

        rate = window.arrivals / span
        ready = len(self._ready_by_service[key])
        predicted = None
        if ttft is not None and ready and rate > 0:
            predicted = self._capacity.latency(shape, prompt, output, rate / ready, q)[0]
        recent = window.recent
        while recent and recent[0] <= now - RECENT_S:
            recent.popleft()
        recent_rate = len(recent) / min(RECENT_S, span)
        load = Load(rate, prompt, output, span, ttft, tpot, predicted, recent_rate)
        self._windows[key] = _Window(now, mix=window.mix, measured=window.measured, recent=recent)
        limit = service.spec.max_replicas or PLANNER_MAX_REPLICAS
        tiers = tiers_for(
            service,
            replicas,
            self.nodes,
            self.policies,
            now,
            self.settings.startup_overhead_s + load_s,
            limit,
            self._cold,
        )
        if (
            self._future is not None
            and (self.settings.autoscaler_policy or policy_of(service)) == ORACLE
        ):
            horizon = max((t.cold_start_s for t in tiers), default=0.0)
            period = self.settings.autoscaler.period_s
            future = self._future_rate(key, now, horizon, period)
            load = Load(future, prompt, output, span)
        return PlannerContext(load, tuple(tiers), capacity)

    # -- the controllers -------------------------------------------------------------------------

    def _put(self, replica: Replica) -> _Live:
        key = (replica.namespace, replica.name)
        live = self.replicas.get(key)
        if live is None:
            index = self._service_index.get(replicaset.service_key(replica), 0)
            live = self.replicas[key] = _Live(replica, service_index=index)
        live.obj = replica
        return live

    def _node_of(self, replica: Replica) -> Node | None:
        return self.nodes.get(replica.node_name or "")

    def _terminate(self, live: _Live, reason: str, now: float) -> None:
        if live.obj.terminating:
            return
        was_ready = live.obj.phase == Phase.READY
        live.obj = live.obj.with_status(
            phase=Phase.TERMINATING, terminating_s=now, reason=reason, message=""
        )
        if was_ready:
            key = replicaset.service_key(live.obj)
            self._ready_by_service[key].remove(live)
            self._index[key].remove(live.obj.name)
            if live.young:
                live.young = False
                self._young[key].remove(live)
        self._record(
            now,
            "Killing",
            live.obj.name,
            f"Stopping replica ({reason})",
            service=replicaset.service_key(live.obj),
        )

    def _bill(self, live: _Live, now: float) -> None:
        charge = billing.bill(live.obj, self._node_of(live.obj), now)
        if charge is None:
            return
        self._gpu_s[charge.labels["tier"]] += charge.gpu_seconds
        service = replicaset.service_key(live.obj)
        per_service = self._service_gpu_s.get(service)
        if per_service is not None:
            per_service[charge.labels["tier"]] += charge.gpu_seconds
        if charge.cloud:
            self._cloud_cost += charge.cloud_cost
            if service in self._service_cost:
                self._service_cost[service] += charge.cloud_cost
        live.obj = live.obj.with_status(billed_until_s=charge.until_s)

    def _remove(self, live: _Live, now: float) -> None:
        self._advance(live, now)
        self._bill(live, now)
        if live.engine is not None:
            for request_id in live.engine.abort_all():
                entry = self._requests.pop(request_id, None)
                if entry is not None:
                    live.in_flight -= 1
                    self._failed(now, now, entry[1], replicaset.service_key(live.obj))
        live.gone = True
        del self.replicas[(live.obj.namespace, live.obj.name)]

    def _reconcile(self, now: float) -> None:
        replicas = [live.obj for live in self.replicas.values()]
        taken = {name for _, name in self.replicas}
        for action in replicaset.decide(self.services, replicas, self.nodes):
            if isinstance(action, replicaset.Create):
                name = replica_name(action.service, self._rng, taken)
                taken.add(name)
                self._put(replicaset.new_replica(action.service, name, action.template, now))
            elif isinstance(action, replicaset.Replace):
                self._remove(self.replicas[(action.replica.namespace, action.replica.name)], now)
            else:
                live = self.replicas[(action.replica.namespace, action.replica.name)]
                self._terminate(live, action.reason, now)
        self._schedule(now)
        self._start(now)
        self._stop(now)

    def _schedule(self, now: float) -> None:
        queue = provisioning.pending(live.obj for live in self.replicas.values())
        if not queue:
            return
        snapshot = Snapshot.build(
            self.nodes.values(), [live.obj for live in self.replicas.values()]
        )
        for replica in queue:
            action, snapshot = provisioning.schedule_one(
                replica, snapshot, self.nodes, self.policies, now
            )
            if isinstance(action, provisioning.Wait):
                if replica.status.message != action.message:
                    self._put(replica.with_status(reason="Unschedulable", message=action.message))
                self._record(
                    now,
                    "FailedScheduling",
                    replica.name,
                    action.message,
                    fold=True,
                    service=replicaset.service_key(replica),
                )
                continue
            live = self._put(action.replica)
            live.tier = 1 if action.node.virtual else 0
            self._record(
                now,
                "Scheduled",
                replica.name,
                provisioning.bind_message(replica, action),
                service=replicaset.service_key(replica),
            )

    def _start(self, now: float) -> None:
        for live in list(self.replicas.values()):
            replica = live.obj
            node = self._node_of(replica)
            service = self.services.get(replicaset.service_key(replica))
            if node is None or service is None or replica.terminating:
                continue
            if replica.phase == Phase.PROVISIONING:
                if not provisioning.provisioned(replica, node, now):
                    continue
                self._cold_starts += 1
                replica = live.obj = replica.with_status(phase=Phase.STARTING, started_s=now)
                self._record(
                    now,
                    "Provisioned",
                    replica.name,
                    f"Virtual node {node.name} provisioned the replica after "
                    f"{provisioning.cold_start_s(node):g}s cold start",
                    service=replicaset.service_key(replica),
                )
            if replica.phase == Phase.STARTING and live.engine is None:
                shape, load_s = self._engine_for(service, node)
                live.engine = make_replica(shape, self.settings.engine_model)
                live.ready_at = now + self.settings.startup_overhead_s + load_s
                live.obj = replica.with_status(started_s=now)
            elif (
                replica.phase == Phase.STARTING
                and live.ready_at is not None
                and now >= live.ready_at
            ):
                live.obj = replica.with_status(phase=Phase.READY, ready_s=now)
                if replica.status.scheduled_s is not None:  # learn the tier's cold start
                    took = now - replica.status.scheduled_s
                    tier = TIERS[live.tier]
                    before = self._cold.get(tier)
                    self._cold[tier] = took if before is None else 0.5 * before + 0.5 * took
                key = replicaset.service_key(replica)
                self._ready_by_service[key].append(live)
                self._ready_by_service[key].sort(key=lambda r: (r.tier, r.obj.name))
                if self.settings.routing_slow_start_s > 0 and self._indexed:
                    live.young = True
                    self._young[key].append(live)
                else:
                    self._index[key].set(replica.name, live.tier, live.in_flight)
                self._record(now, "Ready", replica.name, "Replica is Ready", service=key)
                self._dirty = True  # a Ready replica lets a rolling update or move go on
                self._release_held(key, now)

    def _engine_for(self, service: InferenceService, node: Node) -> tuple[Any, float]:
        gpu = node.spec.gpu.model if node.spec.gpu is not None else "V100-32G"
        cache_key = (service.spec.command, gpu)
        cached = self._engine_cache.get(cache_key)
        if cached is None:
            config = emulator_config_for(service.spec.command, gpu)
            cached = self._engine_cache[cache_key] = (config.shape, config.load_time_s)
        return cached

    def _stop(self, now: float) -> None:
        for live in list(self.replicas.values()):
            if not live.obj.terminating:
                continue
            self._advance(live, now)
            if drain.stop_due(live.obj, live.in_flight, now, self.settings.drain_grace_s):
                self._remove(live, now)

    def _busy(self) -> bool:
        """Whether a controller tick can change anything (see the module doc)."""
        if self._dirty:
            return True
        return any(live.obj.phase != Phase.READY for live in self.replicas.values())

    # -- the timeline ----------------------------------------------------------------------------

    def _sample(self, now: float) -> TimelinePoint:
        for live in self.replicas.values():
            self._bill(live, now)
        allocated = dict.fromkeys(TIERS, 0)
        ready = dict.fromkeys(TIERS, 0)
        per_service = {k: (dict.fromkeys(TIERS, 0), dict.fromkeys(TIERS, 0)) for k in self.services}
        for live in self.replicas.values():
            if live.obj.node_name is None or live.obj.terminating:
                continue
            tier = TIERS[live.tier]
            allocated[tier] += 1
            counts = per_service.get(replicaset.service_key(live.obj))
            if counts is not None:
                counts[0][tier] += 1
            if live.obj.phase == Phase.READY:
                ready[tier] += 1
                if counts is not None:
                    counts[1][tier] += 1
        services = {
            f"{k[0]}/{k[1]}": ServicePoint(
                desired=self.services[k].spec.replicas,
                allocated=alloc,
                ready=up,
                arrivals=self._service_arrived[k],
                cloud_cost=self._service_cost[k],
                gpu_seconds=dict(self._service_gpu_s[k]),
            )
            for k, (alloc, up) in per_service.items()
        }
        self._service_arrived = dict.fromkeys(self.services, 0)
        for tier in TIERS:
            self._peak[tier] = max(self._peak[tier], allocated[tier])
        point = TimelinePoint(
            t_s=now,
            desired=sum(s.spec.replicas for s in self.services.values()),
            allocated=allocated,
            ready=ready,
            arrivals=self._arrived_since,
            in_flight=len(self._requests),
            held=sum(len(q) for q in self._held.values()),
            cloud_cost=self._cloud_cost,
            gpu_seconds=dict(self._gpu_s),
            services=services,
        )
        self._arrived_since = 0
        return point

    # -- the loop ----------------------------------------------------------------------------------

    def _control(self, t: float, tick: float, scrape: float) -> tuple[float, float]:
        """The scrape and the controllers due at ``t``; the next tick and scrape times."""
        s = self.settings
        self._advance_due(t)
        if t == scrape:
            self._scrape(t)
            scrape += s.metrics_interval_s
        if t == tick:
            self._autoscale(t)
            if self._busy():
                self._dirty = False
                self._reconcile(t)
            self._expire_held(t)
            tick += s.tick_s
        return tick, scrape

    def _initial_ready(self) -> bool:
        return all(
            len(self._ready_by_service[key]) >= service.spec.replicas
            for key, service in self.services.items()
        )

    def _warm_up(self) -> tuple[float, float, float]:
        """Run the controllers without load until every service's initial replicas are
        Ready (as a benchmark waits for them): when the load starts, and the next tick
        and scrape times."""
        tick, scrape = 0.0, self.settings.metrics_interval_s / 2
        limit = self.settings.drain_limit_s + 3600.0
        while True:
            t = min(tick, scrape)
            ticked = t == tick
            tick, scrape = self._control(t, tick, scrape)
            if (ticked and self._initial_ready()) or t > limit:
                return t, tick, scrape

    def run(self) -> SimResult:
        s = self.settings
        step = s.timeline_step_s or max(s.tick_s, self.duration_s / 1000)
        timeline: list[TimelinePoint] = []
        start, tick, scrape = (
            self._warm_up() if s.warm_start else (0.0, 0.0, s.metrics_interval_s / 2)
        )
        self._load_start = start
        if s.autoscaler_phase_s is not None:  # the next evaluation at start + phase
            for key in self.services:
                self._last_evaluated[key] = start + s.autoscaler_phase_s - s.autoscaler.period_s
            # ... on a tick: the real control plane evaluates on one of its ticks, so the
            # grid of ticks is shifted (by under one tick) to have one at start + phase.
            frac = s.autoscaler_phase_s % s.tick_s
            if frac > 1e-9:
                tick = start + frac
        if s.metrics_phase_s is not None:  # the next scrape at start + phase (mod interval)
            scrape = start + s.metrics_phase_s % s.metrics_interval_s
        for loop in self.closed_loops:
            for first in loop.first_arrivals(0.0):
                first = first._replace(t_s=first.t_s + start)
                heapq.heappush(self._closed, (first.t_s, self._next_id, first, loop))
                self._next_id += 1
        shifted: Iterator[Arrival] = (
            (a._replace(t_s=a.t_s + start) for a in self.arrivals) if start else self.arrivals
        )

        def next_arrival() -> Arrival | None:
            return next(shifted, None)

        arrival = next_arrival()
        sample = start
        end = start + self.duration_s
        hard_end = end + s.drain_limit_s
        while True:
            t = min(tick, scrape, sample)
            if t > end and ((not self._requests and not any(self._held.values())) or t > hard_end):
                break
            while True:  # requests before t, open and closed loop, in time order
                # With closed loops a completion sends the next request: engines advance
                # event by event, so that request reaches its replica at the right time.
                engine_t, engine = self._next_engine_event() if self.closed_loops else (None, None)
                closed_t = self._closed[0][0] if self._closed else None
                open_t = arrival.t_s if arrival is not None and arrival.t_s < end else None
                times = [x for x in (open_t, closed_t, engine_t) if x is not None]
                soonest = min(times) if times else None
                if soonest is None or soonest >= t:
                    break
                if soonest == engine_t and engine is not None:
                    self._advance(engine, soonest)
                elif soonest == open_t and arrival is not None:
                    self._arrive(arrival)
                    arrival = next_arrival()
                elif closed_t is not None and closed_t < end:
                    _, _, nxt, loop = heapq.heappop(self._closed)
                    self._arrive(nxt, loop)
                else:
                    heapq.heappop(self._closed)  # after the end: not sent
            tick, scrape = self._control(t, tick, scrape)
            if t == sample:
                timeline.append(self._sample(t))
                sample += step
                if self.progress is not None:
                    self.progress(t - start)
        final = min(t, hard_end)
        for live in list(self.replicas.values()):
            self._advance(live, final)
        for queue in self._held.values():
            for pending, _ in queue:
                self._out.failed_arrival_s.append(pending.arrival.t_s)
                self._out.failed_service.append(self._service_index[pending.service])
            queue.clear()
        for request_id in list(self._requests):
            live, _ = self._requests.pop(request_id)
            self._out.failed_arrival_s.append(final)
            key = replicaset.service_key(live.obj)
            self._out.failed_service.append(self._service_index.get(key, -1))
        timeline.append(self._sample(final))
        if start:  # times from the start of the load, as the benchmark reports them
            self._unshift(start, timeline)
        return SimResult(
            name=self.name,
            settings=s,
            slo=self.slo,
            duration_s=self.duration_s,
            end_s=final - start,
            requests=self._out,
            timeline=timeline,
            decisions=self._decisions,
            gpu_seconds=dict(self._gpu_s),
            cloud_cost=self._cloud_cost,
            cold_starts=self._cold_starts,
            first_scale_out_s=(
                self._first_scale_out - start if self._first_scale_out is not None else None
            ),
            peak_replicas=dict(self._peak),
            autoscaler=self.settings.autoscaler_policy
            or ", ".join(sorted({policy_of(svc) for svc in self.services.values()})),
            budget_blocked=self._budget_blocked,
            moves_to_idc=self._moves,
            services=[f"{ns}/{name}" for ns, name in self.services],
        )

    def _unshift(self, start: float, timeline: list[TimelinePoint]) -> None:
        out = self._out
        out.arrival_s = array("d", (t - start for t in out.arrival_s))
        out.failed_arrival_s = array("d", (t - start for t in out.failed_arrival_s))
        for point in timeline:
            point.t_s -= start
        for decision in self._decisions:
            decision.t_s -= start


__all__ = [
    "Decision",
    "Requests",
    "ServicePoint",
    "SimResult",
    "SimSettings",
    "Simulation",
    "Slo",
    "TimelinePoint",
]

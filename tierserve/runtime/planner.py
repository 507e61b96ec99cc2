"""What the tier planner reads, on either body: the gateway's load, the engines' token
counts, the tiers and one replica's capacity — the *read* of read → decide → apply. The
local runtime gives it the in-process gateway and its scraper; tierserve's Kubernetes
autoscaler the gateways' ``/metrics`` (``runtime.kube.planner``) and the pods it scrapes.

- **Load**: the arrival rate is the change of the gateway's per-service arrival counter
  since the last evaluation; the token mix is the change of the service's replicas'
  ``vllm:request_prompt_tokens`` / ``vllm:request_generation_tokens`` histogram sums over
  their counts (the engines' own usage of finished requests; smoothed, and kept through
  quiet periods); the measured TTFT is the gateway's streamed first tokens of the period
  at the SLO's quantile.
- **Tiers**: ``policy.tiers.tiers_for`` (placement over the store's nodes and
  policies); a tier's cold start is learned from what happened (scheduled → Ready of
  the service's replicas on it), the node's ``coldStartSeconds`` + the engine's load
  time being the prior.
- **Capacity**: the engine performance model for the replica's GPU and its command
  line (``engine.perf.capacity``), computed in a worker *process* (the model is CPU-bound
  Python: on a thread it would hold the GIL that the control plane's event loop, and the
  gateway on it, need); the last capacity serves while a new mix's is computed, and until
  the first is known the planner keeps the size. It is given at the objective and at the
  planner's correction (``policy.planner.CapacityAt``; the correction's grid point is
  computed once the state has it, and until then the rate is divided by it). A command
  the emulator cannot read (an unknown engine) has no model: its capacity is measured
  (the per-replica rate it carried, scaled by how far its measured TTFT is from the SLO).
- **Correction** (:data:`CORRECT_ONLINE`): what the model predicts for the period's
  per-replica load, next to the measured TTFT, computed in the
  worker too; the pair reaches the planner in the first period after the worker answered
  (``Load.correction_sample``), unless the held mix moved meanwhile.

Under ``--emulator-time-scale`` every figure is converted to emulated seconds (rates x
scale, durations / scale), like the emulator's own metrics, so the same SLO works at any
time scale.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import logging
import multiprocessing
import shlex
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from tierserve.engine.args import parse_args
from tierserve.engine.perf.capacity import (
    FINE_MIX_STEP,
    CapacityModel,
    bucket,
    bucket_mix,
    model_latency,
    model_rate,
)
from tierserve.engine.perf.cost import EngineShape
from tierserve.errors import TierserveError
from tierserve.model import InferenceService, Node, Replica, ResourcePolicy
from tierserve.policy.autoscaling import PLANNER_MAX_REPLICAS, PlannerContext
from tierserve.policy.planner import (
    CORRECTION_STEP,
    MIX_WEIGHT,
    CapacityAt,
    Load,
    PlannerState,
    held_mix,
    quantized,
)
from tierserve.policy.replicaset import service_key
from tierserve.policy.signals import ReplicaKey
from tierserve.policy.tiers import tiers_for

log = logging.getLogger("tierserve.planner")

PROMPT = "vllm:request_prompt_tokens_sum"
GENERATED = "vllm:request_generation_tokens_sum"
SUCCESS = "vllm:request_generation_tokens_count"
"""Per finished request (the engines' histograms of prompt and generated tokens): a
request still running counts in neither, so the mix is never skewed by prefills of
requests that have not finished yet."""
DEFAULT_MIX = (1000.0, 256.0)
"""The token mix assumed until the engines have finished a request."""
UNKNOWN_STARTUP_S = 60.0
"""Engine load time assumed for an engine the performance model does not know."""


class GatewayLoad(Protocol):
    """What the planner asks the gateway (``GatewayState`` has it)."""

    def arrived(self, namespace: str, service: str) -> int: ...

    def service_ttft_quantile(
        self, namespace: str, service: str, q: float, window_s: float, now: float
    ) -> float | None: ...


Latest = Callable[[ReplicaKey, float], Mapping[str, float]]
"""The scraper's newest values of a replica at ``now`` (``MetricsScraper.fresh``)."""

_T = TypeVar("_T")
Future = asyncio.Future[_T] | concurrent.futures.Future[_T]
Pending = Future[float]
Predicted = Future[tuple[float, float]]


CORRECT_ONLINE = True
"""The bodies pair the measured TTFT with the model's prediction (``Load.correction_sample``).
The correction belongs to the planner's held mix (``policy.planner.held_mix``): learned on
the seed's 11-token load it would overstate the capacity of `tierserve demo`'s
1500-token burst, and rent no cloud replica for it; a mix out of the band starts it over."""

RECENT_S = 5.0
"""The recent rate covers the gateway's arrivals of the last 5 emulated seconds."""


@dataclass
class _Seen:
    at_s: float
    arrived: int
    samples: deque[tuple[float, int]] = field(default_factory=deque)
    """(time, arrivals so far), every tick: the recent rate."""
    counters: dict[ReplicaKey, tuple[float, float, float]] = field(default_factory=dict)
    mix: tuple[float, float] = DEFAULT_MIX
    measured: bool = False
    predicting: tuple[float, Predicted, tuple[float, float]] | None = None
    """A period's measured TTFT and the model's prediction for its load, being computed,
    and the planner's held mix the pair would correct."""


class PlannerInputs:
    def __init__(
        self,
        gateway: GatewayLoad,
        latest: Latest,
        time_scale: float = 1.0,
        startup_overhead_s: float = 0.0,
    ) -> None:
        self.gateway = gateway
        self.latest = latest
        self.scale = time_scale
        self.startup_overhead_s = startup_overhead_s
        self.model = CapacityModel(mix_step=0.1)
        self._seen: dict[tuple[str, str], _Seen] = {}
        self._capacity: dict[tuple[object, ...], Pending] = {}
        self._last_capacity: dict[tuple[str, str], float] = {}
        self._asking: dict[tuple[str, str], tuple[tuple[object, ...], float, Pending]] = {}
        """Per service, the question the worker was last given: (key, correction, answer)."""
        self._pool: concurrent.futures.ProcessPoolExecutor | None = None
        self._cold: dict[str, float] = {}

    # -- the parts --------------------------------------------------------------------------

    def _engine(
        self, service: InferenceService, nodes: Mapping[str, Node]
    ) -> tuple[EngineShape, float] | None:
        node = next((n for n in nodes.values() if not n.virtual), next(iter(nodes.values()), None))
        gpu = node.spec.gpu.model if node is not None and node.spec.gpu is not None else "V100-32G"
        try:
            config = parse_args([*shlex.split(service.spec.command), "--gpu", gpu])
        except (TierserveError, ValueError, SystemExit):
            return None
        return config.shape, config.load_time_s

    def _mix(self, seen: _Seen, replicas: Sequence[Replica], now: float) -> tuple[float, float]:
        prompt = generated = done = 0.0
        counters: dict[ReplicaKey, tuple[float, float, float]] = {}
        for r in replicas:
            key = (r.namespace, r.name)
            values = self.latest(key, now)
            if SUCCESS not in values:
                continue
            now_values = (values.get(PROMPT, 0.0), values.get(GENERATED, 0.0), values[SUCCESS])
            counters[key] = now_values
            before = seen.counters.get(key)
            if before is not None and now_values[2] >= before[2]:  # no restart in between
                prompt += now_values[0] - before[0]
                generated += now_values[1] - before[1]
                done += now_values[2] - before[2]
        seen.counters = counters
        if done > 0:  # smoothed: the capacity model is asked once per 1 % mix point
            w = MIX_WEIGHT if seen.measured else 1.0
            seen.mix = (
                w * prompt / done + (1 - w) * seen.mix[0],
                w * generated / done + (1 - w) * seen.mix[1],
            )
            seen.measured = True
        return seen.mix

    def _capacity_of(
        self,
        shape: EngineShape,
        mix: tuple[float, float],
        service: InferenceService,
        correction: float = 1.0,
    ) -> float | None:
        """The model's capacity at the TTFT objective / ``correction``, computed once per
        (shape, 1 % mix point, SLO, correction) in the worker process (interpolated
        between the model's bucket points: ``CapacityModel.rate``); at the objective
        itself, the last one known while a new mix's is computed (None: none yet).

        One question a service at a time: while the worker computes one, a new mix waits
        for a later period (a mix moving each period, as at a burst's start, would queue
        a question a period, each answer trailing further behind the load); the answer
        to the last question at the objective is the last one known."""
        spec = service.spec.autoscaling
        assert spec is not None and spec.slo is not None
        slo = spec.slo
        ttft_s = slo.ttft_seconds / correction
        mixed = bucket_mix(*mix, step=FINE_MIX_STEP)
        key = (shape, mixed, ttft_s, slo.tpot_seconds, slo.attainment)
        name = (service.namespace, service.name)
        asked = self._asking.get(name)
        if asked is not None and asked[2].done():
            del self._asking[name]
            if asked[1] == 1.0:
                self._last_capacity[name] = self._answer(asked[0], asked[2], service)
            asked = None
        future = self._capacity.get(key)
        if future is None:
            if asked is not None:  # the worker is busy with this service's last question
                return self._last_capacity.get(name) if correction == 1.0 else None
            future = self._capacity[key] = self._submit(
                model_rate,
                shape,
                mixed,
                ttft_s,
                slo.tpot_seconds,
                slo.attainment,
                self.model.mix_step,
            )
            self._asking[name] = (key, correction, future)
        if not future.done():
            return self._last_capacity.get(name) if correction == 1.0 else None
        value = self._answer(key, future, service)
        if correction == 1.0:
            self._last_capacity[name] = value
        return value

    def _answer(self, key: tuple[object, ...], future: Pending, service: InferenceService) -> float:
        """A finished question's capacity (0.0 when the model failed: said once)."""
        try:
            return future.result()
        except Exception:  # a bug in the model: say so once, plan without it
            log.exception("capacity model failed for %s/%s", service.namespace, service.name)
            self._capacity[key] = _done(0.0)
            return 0.0

    def _capacity_at(
        self,
        shape: EngineShape,
        mix: tuple[float, float],
        service: InferenceService,
        base: float,
        correction: float,
    ) -> CapacityAt:
        """The capacity as a function of the correction: the model's figure at the grid
        points around ``correction`` (computed in the worker: the correction moves a grid
        step at a time); until it is known, the base rate divided by a correction over 1,
        and the base rate itself under 1 (a looser objective never carries less, but may
        carry no more: a TPOT-bound replica)."""
        grid = quantized(correction)
        known = {1.0: base}
        if grid != 1.0:
            for point in (grid, grid * CORRECTION_STEP, grid / CORRECTION_STEP):
                point = quantized(point)
                value = self._capacity_of(shape, mix, service, point)
                if value is not None:
                    known[point] = value

        def capacity(c: float) -> float:
            point = quantized(c)
            return known.get(point, base / max(1.0, point))

        return capacity

    def _predict(
        self,
        seen: _Seen,
        shape: EngineShape,
        mix: tuple[float, float],
        per_replica: float,
        ttft: float,
        q: float,
        held: tuple[float, float],
    ) -> tuple[float, float] | None:
        """The (measured, predicted) TTFT pair whose prediction the worker has answered:
        an earlier period's, or this one's when it answers at once (no event loop). The
        model is asked for this period's load whenever it is not busy with another;
        ``held``: the planner's held mix the pair would correct."""
        out = _answered(seen, held)
        if seen.predicting is None:
            mixed = bucket_mix(*mix, step=FINE_MIX_STEP)
            rate = bucket(per_replica, self.model.rate_step)
            future = self._submit(model_latency, shape, mixed, rate, q, self.model.mix_step)
            seen.predicting = (ttft, future, held)
            out = _answered(seen, held) or out
        return out

    def _submit(self, fn: Callable[..., _T], *args: object) -> Future[_T]:
        """``fn(*args)`` in the worker process (inline when no event loop runs; an
        exception is the future's either way)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            future: concurrent.futures.Future[_T] = concurrent.futures.Future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # read back from the future, as the worker's
                future.set_exception(exc)
            return future
        return loop.run_in_executor(self._worker(), fn, *args)

    def _worker(self) -> concurrent.futures.ProcessPoolExecutor:
        if self._pool is None:
            # spawn, not fork: the control plane has threads (a fork copies their locks)
            spawn = multiprocessing.get_context("spawn")
            self._pool = concurrent.futures.ProcessPoolExecutor(max_workers=1, mp_context=spawn)
        return self._pool

    def close(self) -> None:
        """Stop the capacity worker process."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def sample(self, service: InferenceService, now: float) -> None:
        """Read the gateway's arrival counter (every tick): the recent rate's samples."""
        seen = self._seen.get((service.namespace, service.name))
        if seen is None:
            return
        samples = seen.samples
        samples.append((now, self.gateway.arrived(service.namespace, service.name)))
        keep = 2 * RECENT_S * self.scale
        while len(samples) > 2 and samples[1][0] <= now - keep:
            samples.popleft()

    def _recent_rate(self, seen: _Seen, now: float, arrived: int) -> float | None:
        """Emulated arrivals/s over about the last ``RECENT_S`` (None: too few samples)."""
        since = now - RECENT_S * self.scale
        older = [s for s in seen.samples if s[0] <= since]
        base = older[-1] if older else (seen.samples[0] if seen.samples else None)
        if base is None or now - base[0] <= 0:
            return None
        return (arrived - base[1]) / (now - base[0]) * self.scale

    def learn_cold_start(self, tier: str, seconds: float) -> None:
        before = self._cold.get(tier)
        self._cold[tier] = seconds if before is None else 0.5 * before + 0.5 * seconds

    # -- the context ------------------------------------------------------------------------

    def context(
        self,
        service: InferenceService,
        replicas: Sequence[Replica],
        nodes: Mapping[str, Node],
        policies: Sequence[ResourcePolicy],
        now: float,
        planned: PlannerState | None = None,
    ) -> PlannerContext | None:
        """The context of ``service`` this period (None: keep the size); ``planned``: the
        planner's state (the capacity is computed at its correction while the mix is
        within its held mix's band)."""
        spec = service.spec.autoscaling
        if spec is None or spec.slo is None:
            return None
        key = (service.namespace, service.name)
        theirs = [r for r in replicas if service_key(r) == key]
        arrived = self.gateway.arrived(*key)
        seen = self._seen.get(key)
        if seen is None:  # the first look only starts the window
            self._seen[key] = _Seen(now, arrived)
            self._mix(self._seen[key], theirs, now)
            return None
        span = now - seen.at_s
        if span <= 0:
            return None
        scale = self.scale
        mix = self._mix(seen, theirs, now)
        planned = planned or PlannerState()
        held = held_mix(planned.mix, mix)  # as the planner will hold it
        # a mix out of the held one's band starts the correction over (as plan does)
        correction = planned.correction if planned.mix in (None, held) else 1.0
        rate = (arrived - seen.arrived) / span * scale  # emulated req/s: wall req/s x scale
        recent_rate = self._recent_rate(seen, now, arrived)
        seen.at_s, seen.arrived = now, arrived
        slo = spec.slo
        q = slo.attainment
        ttft_w = self.gateway.service_ttft_quantile(*key, q, span, now)
        ttft = ttft_w / scale if ttft_w is not None else None
        ready = sum(1 for r in theirs if r.ready)
        engine = self._engine(service, nodes)
        sample = None
        capacity: float | CapacityAt
        if engine is not None:
            shape, load_s = engine
            base = self._capacity_of(shape, mix, service)
            if base is None:
                return None  # not known yet: keep the size this period
            capacity = self._capacity_at(shape, mix, service, base, correction)
            if CORRECT_ONLINE and ttft is not None and ready and rate > 0:
                sample = self._predict(seen, shape, mix, rate / ready, ttft, q, held)
        else:  # an unknown engine: what its replicas carried, scaled to the SLO
            load_s = UNKNOWN_STARTUP_S
            if ttft is None or ready == 0 or rate <= 0:
                return None
            capacity = rate / ready * min(2.0, slo.ttft_seconds / max(ttft, 1e-3))
        limit = service.spec.max_replicas or PLANNER_MAX_REPLICAS
        tiers = tiers_for(
            service,
            replicas,
            nodes,
            policies,
            now,
            self.startup_overhead_s + load_s * scale,
            limit,
            self._cold,
        )
        # Cold starts in emulated seconds, like the rest.
        tiers = [dataclasses.replace(t, cold_start_s=t.cold_start_s / scale) for t in tiers]
        load = Load(
            rate, mix[0], mix[1], span / scale, ttft, None, None, recent_rate, sample
        )
        return PlannerContext(load, tuple(tiers), capacity, now=now / scale)


def _answered(seen: _Seen, mix: tuple[float, float]) -> tuple[float, float] | None:
    """The pair of ``seen``'s prediction once the worker has answered it (then cleared);
    None while it computes, when the model had no answer (a mix that never fits), or
    when it was asked at another held mix than ``mix`` (the correction started over)."""
    if seen.predicting is None or not seen.predicting[1].done():
        return None
    measured, future, asked = seen.predicting
    seen.predicting = None
    if asked != mix:
        return None
    try:
        return measured, future.result()[0]
    except Exception:  # no fit, or a model bug: no correction from this period
        log.debug("no TTFT prediction for a period's load", exc_info=True)
        return None


def _done(value: float) -> Pending:
    future: concurrent.futures.Future[float] = concurrent.futures.Future()
    future.set_result(value)
    return future

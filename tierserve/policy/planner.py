"""The tier planner: size a service for its SLO, IDC first, cloud for the rest, within a budget.

Every period, for one service with ``spec.autoscaling.policy: slo``:

1. **Load**: the arrival rate and token mix the gateway saw over the last window.
2. **Forecast** the rate over the horizon a new replica needs to become useful (its
   tier's cold start: provisioning + engine load), with Holt's linear exponential
   smoothing (level + trend, updated once a period). Why Holt: a diurnal ramp is
   locally linear over a cold-start horizon of one or two minutes, so level + trend
   extrapolates it; it needs no history beyond two numbers, no training, and it is
   deterministic. The trend is noisy, though: Holt's trend over 15-s periods of a
   Poisson count, extrapolated over an 80-s horizon, has a standard deviation of ~12 %
   of the rate at the simulated day's rates, where the day's ramp moves the rate by
   under 1 % in 80 s. So the trend moves the
   forecast only by what exceeds :data:`TREND_NOISE_Z` standard deviations of one
   period's count (soft thresholding: a ramp still shows, noise does not rent cloud
   replicas). A step burst cannot be forecast by any method from the past alone:
   the planner then reacts at once on the SLO breach (below) and the rest is the price
   of a cold start, or of standby capacity (``minReplicas``).
3. **Capacity**: the rate one replica carries at the SLO for the observed token mix
   (``capacity``, from the engine's performance model for the replica's GPU and model),
   corrected online by the ratio of measured to predicted latency (as Dynamo's planner
   corrects its profiles): when measured TTFT runs 10 % over the model's, the replica
   carries what the model says it carries at an objective 10 % tighter (``capacity``
   as a :data:`CapacityAt`). Latency is not linear in the load — queueing makes it
   steep near the knee — so dividing the rate by the ratio instead would undersize
   capacity (by 11 % at a steady 1.10 on the diurnal trace, where the objective at
   TTFT/1.10 costs 2 %) and rent cloud replicas the SLO does not need. A body with no
   model passes a plain rate, which the ratio divides. The correction belongs to a
   *held* mix that moves only when the measured mix leaves a 15 % band around it
   (:func:`held_mix`); when it moves, the correction starts over: learned on the seed's
   11-token prompts, it would overstate a 1500-token burst's capacity. (The bodies'
   model interpolates between its mix buckets, ``engine.perf.capacity.mix_corners``:
   bucketed, one replica's rate on the diurnal trace's ~1000-token prompts jumped
   between 2.93 and 3.26 req/s as the mix wobbled across a bucket's edge, and the size
   with it.)
4. **Size**: ``needed(rate) = ceil(rate * (1 + headroom) / capacity)``;
   ``target = max(needed(now), needed(forecast at now + cold start))``, at least one more
   than now on an SLO breach (the measured quantile over the objective), clamped to
   ``[minReplicas, maxReplicas]``. Scale-in uses the same horizon, so a cloud replica is
   kept only while the forecast says it would be needed again within its cold start.
5. **Tiers**: IDC first up to what it can still hold (``room``: free GPUs under the
   ResourcePolicy's units and ``max``), cloud for the rest, within the budget: a cloud
   replica costs its GPUs x the node's price per GPU-hour; the planner never plans more
   cloud replicas than ``budget.cloudCostPerHour`` pays for, and says so when that blocks
   a scale-out.

Every decision is a :class:`Plan` — inputs, forecast, per-tier target, expected cost per
hour and a reason in words (``New size: 3 (idc 1, cloud 2); reason: forecast 2.9 req/s in
80 s > 1 replica's 1.2 req/s at TTFT p95 2 s``). Pure: the body passes the load, the
tiers and the capacity; the state is plain JSON.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from tierserve.model.autoscaling import SloTarget

ALPHA = 0.5
"""Holt's level smoothing: half the weight on the newest period's rate."""
BETA = 0.3
"""Holt's trend smoothing."""
TREND_NOISE_Z = 2.0
"""The forecast's trend counts only beyond 2 standard deviations of one period's rate
(a Poisson count over the window: sqrt(rate / window) req/s)."""
MIX_WEIGHT = 0.3
"""EWMA weight of the newest period's token mix (the bodies smooth the mix with it)."""
CORRECTION_WEIGHT = 0.3
"""EWMA weight of the newest measured/predicted latency ratio."""
CORRECTION_BOUNDS = (0.5, 3.0)
"""The correction never makes a replica more than 2x faster or 3x slower than predicted."""
CORRECTION_STEP = 1.05
"""The model is asked for the capacity at corrections rounded to powers of 1.05 (a 5 %
grid: within the correction's own noise, and a handful of capacity-model evaluations a
mix instead of one per period)."""
GRID_HYSTERESIS = 0.75
"""The grid point moves once the correction is 3/4 of a step away from it (and then to
the nearest): a correction hovering at a midpoint between two points would otherwise
flip the capacity each period, and with it the size (renting a cloud replica, giving it
back before it is Ready, renting it again)."""
IDC_SCALE_IN_WINDOW_S = 300.0
"""IDC replicas are kept this long after they were last needed (an IDC GPU is paid for
whether it serves or not: giving it back saves nothing, and it may be needed again);
cloud replicas go as soon as the forecast over their cold start no longer needs them."""
MIX_BAND = 1.15
"""The online correction belongs to a held token mix that moves only when the measured
mix leaves a band of 15 % around it (:func:`held_mix`); then the correction starts over
(it was learned on another mix). 15 %: over a period's wobble of a steady mix (a few %
on the diurnal trace), under what changes how a replica's latency departs from the
model's."""
STEP_FACTOR = 1.5
"""The last seconds' rate counts as a step in the load when it is 1.5x the period's mean
(a Poisson count over 5 s varies by far less than that at any rate worth a replica)."""
SCALE_IN_MARGIN = 0.2
"""Replicas go only when the rest would carry 20 % more than the forecast load."""
UNBOUNDED = 1_000_000
"""Replicas "needed" when one replica cannot meet the SLO at all (then maxReplicas caps)."""


@dataclass(frozen=True)
class Load:
    """What the gateway saw of the service over the last ``window_s``."""

    rate: float
    """Arrivals per second."""
    prompt_tokens: float
    output_tokens: float
    """Mean tokens per request (finished ones' usage; estimates for running ones)."""
    window_s: float = 15.0
    ttft_s: float | None = None
    """Measured TTFT at the SLO's attainment quantile (None: nothing measured)."""
    tpot_s: float | None = None
    predicted_ttft_s: float | None = None
    """What the capacity model predicts for the same quantile at the per-replica load
    the replicas had (None: no correction this period)."""
    recent_rate: float | None = None
    """Arrivals per second over the last few seconds only: a step in the load shows
    here a whole period before the period's mean catches up (scale-out reacts to it;
    scale-in never does)."""
    correction_sample: tuple[float, float] | None = None
    """(measured, predicted) TTFT at the quantile of an earlier period, where the body's
    model answered after that period's plan (a worker process); the correction folds it
    in as it folds ``ttft_s`` / ``predicted_ttft_s`` (None: those)."""


@dataclass(frozen=True)
class Tier:
    """One tier the service can run on, in ResourcePolicy unit order (IDC first)."""

    name: str
    """``idc`` or ``cloud``."""
    allocated: int
    """The service's replicas on the tier now (placed, not terminating)."""
    room: int
    """How many more replicas of the service fit on the tier now."""
    cold_start_s: float
    """From scale-out to a Ready replica: provisioning + engine load (learned)."""
    price_per_replica_hour: float = 0.0
    """0 on the IDC (already paid for)."""


@dataclass(frozen=True)
class PlannerState:
    """What the planner keeps between periods (``to_json``/``from_json``)."""

    level: float | None = None
    trend_per_s: float = 0.0
    at_s: float | None = None
    correction: float = 1.0
    grid: float = 1.0
    """The correction's grid point the capacity is asked at (:func:`regridded`)."""
    needed: tuple[tuple[float, int], ...] = ()
    """(time, replicas needed) of the last ``IDC_SCALE_IN_WINDOW_S``."""
    mix: tuple[float, float] | None = None
    """The held (prompt, output) token mix the correction belongs to (:func:`held_mix`)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "level": self.level,
            "trendPerS": self.trend_per_s,
            "atS": self.at_s,
            "correction": self.correction,
            "grid": self.grid,
            "needed": [list(x) for x in self.needed],
            "mix": None if self.mix is None else list(self.mix),
        }

    @classmethod
    def from_json(cls, value: object) -> PlannerState:
        """The state ``to_json`` wrote; anything malformed reads as a fresh state (as
        the HPA state does)."""
        if not isinstance(value, dict):
            return cls()
        try:
            level = value.get("level")
            at = value.get("atS")
            mix = value.get("mix")
            return cls(
                level=None if level is None else float(level),
                trend_per_s=float(value.get("trendPerS", 0.0)),
                at_s=None if at is None else float(at),
                correction=float(value.get("correction", 1.0)),
                grid=float(value.get("grid", 1.0)),
                needed=tuple((float(t), int(n)) for t, n in value.get("needed", ())),
                mix=None if mix is None else (float(mix[0]), float(mix[1])),
            )
        except (TypeError, ValueError, IndexError, KeyError):
            return cls()


@dataclass(frozen=True)
class PlannerConfig:
    slo: SloTarget
    min_replicas: int = 1
    max_replicas: int = 10
    headroom: float = 0.0
    cloud_cost_per_hour: float | None = None


@dataclass(frozen=True)
class Plan:
    """One period's decision for one service, with everything it was made from."""

    desired: int
    per_tier: dict[str, int]
    forecast_rate: float
    horizon_s: float
    capacity: float
    """Requests/s one replica carries at the SLO (corrected)."""
    needed_now: int
    needed_at_horizon: int
    breach: bool
    budget_blocked: bool
    expected_cost_per_hour: float
    reason: str
    state: PlannerState
    inputs: Load = field(repr=False, default_factory=lambda: Load(0.0, 0.0, 0.0))

    def message(self, current: int) -> str | None:
        """The ``SuccessfulRescale`` event when the size changes, else None."""
        if self.desired == current:
            return None
        tiers = ", ".join(f"{name} {n}" for name, n in self.per_tier.items())
        return f"New size: {self.desired} ({tiers}); reason: {self.reason}"


def forecast(state: PlannerState, rate: float, now: float) -> PlannerState:
    """Holt's update with the newest observed ``rate`` at ``now``.

    level' = a*rate + (1-a)*(level + trend*dt);  trend' = b*(level'-level)/dt + (1-b)*trend
    """
    if state.level is None or state.at_s is None or now <= state.at_s:
        return replace(state, level=rate, trend_per_s=0.0, at_s=now)
    dt = now - state.at_s
    level = ALPHA * rate + (1 - ALPHA) * (state.level + state.trend_per_s * dt)
    trend = BETA * (level - state.level) / dt + (1 - BETA) * state.trend_per_s
    return replace(state, level=max(0.0, level), trend_per_s=trend, at_s=now)


def rate_at(state: PlannerState, horizon_s: float, noise_sd: float = 0.0) -> float:
    """The forecast rate ``horizon_s`` after the last update (never below 0); the trend
    moves it only by what exceeds ``TREND_NOISE_Z * noise_sd``."""
    if state.level is None:
        return 0.0
    rise = state.trend_per_s * horizon_s
    rise = math.copysign(max(0.0, abs(rise) - TREND_NOISE_Z * noise_sd), rise)
    return max(0.0, state.level + rise)


def poisson_sd(rate: float, window_s: float) -> float:
    """The standard deviation of a Poisson arrival rate measured over ``window_s``."""
    return math.sqrt(max(0.0, rate) / window_s) if window_s > 0 else 0.0


def held_mix(held: tuple[float, float] | None, mix: tuple[float, float]) -> tuple[float, float]:
    """The mix the correction belongs to: ``held`` while both of ``mix``'s token counts
    lie within :data:`MIX_BAND` of it, else ``mix`` itself (also with nothing held).
    The bodies call it with the state's ``mix`` and the load's, as :func:`plan` does."""
    if held is None or held[0] <= 0 or held[1] <= 0:
        return mix
    if all(h / MIX_BAND <= m <= h * MIX_BAND for h, m in zip(held, mix, strict=True)):
        return held
    return mix


def corrected(state: PlannerState, load: Load, slo: SloTarget) -> PlannerState:
    """Fold the newest measured/predicted latency ratio into the correction — only while
    the replicas run within the SLO's range (measured and predicted under twice the
    objective): an overloaded replica's latency is its queue, which says nothing about
    its speed, and the model's figure above a replica's capacity is a queue too (it
    grows with the requests simulated), so a burst's first period would read as a
    replica twice as fast as the model."""
    measured, predicted = load.correction_sample or (load.ttft_s, load.predicted_ttft_s)
    if measured is None or not predicted or predicted <= 0:
        return state
    if measured > 2 * slo.ttft_seconds or predicted > 2 * slo.ttft_seconds:
        return state
    ratio = measured / predicted
    value = (1 - CORRECTION_WEIGHT) * state.correction + CORRECTION_WEIGHT * ratio
    low, high = CORRECTION_BOUNDS
    value = min(high, max(low, value))
    return replace(state, correction=value, grid=regridded(state.grid, value))


CapacityAt = Callable[[float], float]
"""One replica's requests/s at the SLO with its TTFT objective divided by the argument
(the correction): ``capacity_at(1.1)`` is the rate at which the model's TTFT quantile
is the objective / 1.1."""


def quantized(correction: float) -> float:
    """``correction`` rounded to the nearest power of :data:`CORRECTION_STEP` (1 stays 1)."""
    if correction <= 0:
        return 1.0
    return float(CORRECTION_STEP ** round(math.log(correction, CORRECTION_STEP)))


def regridded(grid: float, correction: float) -> float:
    """The grid point for ``correction``: ``grid`` while the correction is within
    :data:`GRID_HYSTERESIS` of a step of it, else the nearest one."""
    if grid > 0 and abs(math.log(correction / grid)) < GRID_HYSTERESIS * math.log(
        CORRECTION_STEP
    ):
        return grid
    return quantized(correction)


def corrected_capacity(
    capacity: float | CapacityAt, correction: float, grid: float | None = None
) -> float:
    """One replica's rate at the SLO under ``correction``: the model's rate at the
    tightened objective (at ``grid``, default the correction's nearest grid point), or a
    plain rate divided by the correction."""
    if callable(capacity):
        return capacity(grid if grid is not None else quantized(correction))
    return capacity / correction


def needed(rate: float, capacity: float, headroom: float) -> int:
    """Replicas for ``rate`` at ``capacity`` per replica: ceil(rate * (1 + headroom) / cap)."""
    if rate <= 0:
        return 0
    if capacity <= 0:
        return UNBOUNDED  # no replica meets the SLO: as many as allowed
    # A hair under an integer is that integer (1.9999999 replicas are 2, 2.0000001 are 3).
    return math.ceil(rate * (1 + headroom) / capacity - 1e-9)


def _quantile_name(slo: SloTarget) -> str:
    return f"p{round(slo.attainment * 100):d}"


def _split(target: int, tiers: Sequence[Tier], budget: float | None) -> tuple[dict[str, int], bool]:
    """``target`` replicas over the tiers in order: each takes what it holds now plus its
    room; a priced tier is capped by what the budget still pays for."""
    out: dict[str, int] = {}
    left = target
    spend = 0.0
    blocked = False
    for tier in tiers:
        take = min(left, tier.allocated + tier.room)
        if tier.price_per_replica_hour > 0 and budget is not None:
            affordable = int((budget - spend) // tier.price_per_replica_hour + 1e-9)
            if take > affordable:
                take, blocked = max(0, affordable), True
            spend += take * tier.price_per_replica_hour
        out[tier.name] = take
        left -= take
    return out, blocked


def plan(
    config: PlannerConfig,
    load: Load,
    tiers: Sequence[Tier],
    capacity: float | CapacityAt,
    current: int,
    state: PlannerState,
    now: float,
) -> Plan:
    """One period's plan (see the module doc). ``capacity``: the model's requests/s per
    replica at the SLO for ``load``'s mix, before the online correction — as a function
    of the correction where the body has a model (:data:`CapacityAt`)."""
    slo = config.slo
    state = forecast(state, load.rate, now)
    point = held_mix(state.mix, (load.prompt_tokens, load.output_tokens))
    if state.mix is not None and point != state.mix:
        # The mix left its band: the correction was learned on the mix before (and so
        # was a sample measured there), so it starts over.
        state = replace(state, mix=point, correction=1.0, grid=1.0)
    else:
        state = corrected(replace(state, mix=point), load, slo)
    cap = corrected_capacity(capacity, state.correction, state.grid)
    # The horizon: how long a new replica takes to be useful on the tier it would land on
    # (the first one with room; the last tier when none has any).
    landing = next((t for t in tiers if t.room > 0), tiers[-1] if tiers else None)
    horizon = landing.cold_start_s if landing is not None else 0.0
    ahead = rate_at(state, horizon, poisson_sd(state.level or 0.0, load.window_s))
    # Scale-out follows a step at once (the recent rate, when it is a step: well above the
    # period's mean, not its noise); the period's mean drives the rest.
    recent = load.recent_rate or 0.0
    rate_now = max(load.rate, recent if recent > STEP_FACTOR * load.rate else 0.0)
    now_n = needed(rate_now, cap, config.headroom)
    ahead_n = needed(ahead, cap, config.headroom)
    target = max(now_n, ahead_n)
    breach = (load.ttft_s is not None and load.ttft_s > slo.ttft_seconds) or (
        slo.tpot_seconds is not None and load.tpot_s is not None and load.tpot_s > slo.tpot_seconds
    )
    if breach:
        target = max(target, current + 1)
    target = min(config.max_replicas, max(config.min_replicas, target))
    # IDC replicas stay while they were needed within the window; cloud ones do not.
    history = tuple(x for x in state.needed if now - x[0] < IDC_SCALE_IN_WINDOW_S)
    state = replace(state, needed=(*history, (now, target)))
    idc = tiers[0] if tiers and tiers[0].price_per_replica_hour == 0 else None
    if idc is not None and history:
        keep_idc = min(max(n for _, n in history), idc.allocated + idc.room)
        target = max(target, min(keep_idc, config.max_replicas))
    # Scale in only with a margin: a load at a replica boundary (5.9 vs 6.1 replicas'
    # worth) would otherwise give a cloud replica back and rent it again a period later,
    # paying a cold start each time. What the load no longer needs with 20 % to spare goes.
    if target < current:
        spare = needed(max(rate_now, ahead) * (1 + SCALE_IN_MARGIN), cap, config.headroom)
        target = max(target, min(current, spare, config.max_replicas))
    per_tier, blocked = _split(target, tiers, config.cloud_cost_per_hour)
    desired = max(config.min_replicas, sum(per_tier.values())) if tiers else target
    cost = sum(per_tier.get(t.name, 0) * t.price_per_replica_hour for t in tiers)
    q = _quantile_name(slo)
    if breach:
        measured = load.ttft_s if load.ttft_s is not None else load.tpot_s
        reason = (
            f"SLO breach: TTFT {q} {measured:.2f} s > {slo.ttft_seconds:g} s"
            if load.ttft_s is not None and load.ttft_s > slo.ttft_seconds
            else f"SLO breach: TPOT {q} {load.tpot_s:.3f} s > {slo.tpot_seconds:g} s"
        )
    elif ahead_n >= now_n and ahead_n > 0 and ahead > load.rate:
        reason = (
            f"forecast {ahead:.2f} req/s in {horizon:.0f} s needs {ahead_n}: "
            f"one replica carries {cap:.2f} req/s at TTFT {q} {slo.ttft_seconds:g} s"
        )
    else:
        reason = (
            f"load {rate_now:.2f} req/s needs {now_n}: "
            f"one replica carries {cap:.2f} req/s at TTFT {q} {slo.ttft_seconds:g} s"
        )
    if blocked:
        reason += f"; cloud capped by the budget of {config.cloud_cost_per_hour:g}/h"
    return Plan(
        desired=desired,
        per_tier=per_tier,
        forecast_rate=ahead,
        horizon_s=horizon,
        capacity=cap,
        needed_now=now_n,
        needed_at_horizon=ahead_n,
        breach=breach,
        budget_blocked=blocked,
        expected_cost_per_hour=cost,
        reason=reason,
        state=state,
        inputs=load,
    )

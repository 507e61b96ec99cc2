"""The tier planner as a pure function, on table-driven scenarios (arithmetic in comments)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from tierserve.model.autoscaling import SloTarget
from tierserve.policy.planner import (
    Load,
    PlannerConfig,
    PlannerState,
    Tier,
    corrected_capacity,
    forecast,
    held_mix,
    needed,
    plan,
    poisson_sd,
    quantized,
    rate_at,
    regridded,
)

SLO = SloTarget(ttft_seconds=2.0, tpot_seconds=0.1, attainment=0.95)
CONFIG = PlannerConfig(slo=SLO, min_replicas=1, max_replicas=5)


def tiers(
    idc_alloc: int = 1, idc_room: int = 0, cloud_alloc: int = 0, cloud_room: int = 8
) -> list[Tier]:
    # One cloud replica: 1 GPU at 2.5/GPU-hour; the cloud's cold start 45 s + 36 s load.
    return [
        Tier("idc", idc_alloc, idc_room, cold_start_s=36.0),
        Tier("cloud", cloud_alloc, cloud_room, cold_start_s=81.0, price_per_replica_hour=2.5),
    ]


def steady(rate: float, now: float = 1000.0) -> PlannerState:
    """A forecast that has seen ``rate`` for a long time (no trend)."""
    return PlannerState(level=rate, trend_per_s=0.0, at_s=now - 15)


@pytest.mark.parametrize(
    ("rate", "capacity", "headroom", "expected"),
    [
        (0.0, 1.2, 0.0, 0),  # no load, no replica needed (minReplicas keeps one)
        (1.2, 1.2, 0.0, 1),  # exactly one replica's worth: 1.2 / 1.2 = 1
        (1.3, 1.2, 0.0, 2),  # ceil(1.3 / 1.2) = ceil(1.08) = 2
        (2.9, 1.2, 0.0, 3),  # ceil(2.42) = 3
        (1.0, 1.2, 0.25, 2),  # ceil(1.0 * 1.25 / 1.2) = ceil(1.04) = 2
        (1.0, 0.0, 0.0, 1_000_000),  # no replica meets the SLO: unbounded (max caps)
    ],
)
def test_needed(rate: float, capacity: float, headroom: float, expected: int) -> None:
    assert needed(rate, capacity, headroom) == expected


def test_holt_forecast_follows_a_ramp() -> None:
    # rate rises 0.1 req/s every 15 s: after a few periods the trend is ~0.1/15 per s
    state = PlannerState()
    for i in range(12):
        state = forecast(state, 1.0 + 0.1 * i, 15.0 * i)
    assert state.trend_per_s == pytest.approx(0.1 / 15, rel=0.15)
    # in 80 s: level + trend * 80 ~ 2.1 + 0.53
    assert rate_at(state, 80.0) == pytest.approx(2.1 + 0.1 / 15 * 80, rel=0.05)


@pytest.mark.parametrize(
    ("trend_per_s", "expected"),
    [
        # 0.5 req/s over 15 s: sd sqrt(0.5 / 15) = 0.183; the gate is 2 sd = 0.365 req/s
        (0.004, 0.5),  # noise: 0.004 * 85 = 0.34 < 0.365, no rise
        (0.01, 0.5 + 0.85 - 0.365),  # 0.85 over 85 s: what exceeds the gate, 0.485
        (-0.01, 0.5 - 0.85 + 0.365),  # the same going down
        (-0.1, 0.0),  # never below 0
    ],
)
def test_the_trend_counts_only_beyond_the_noise(trend_per_s: float, expected: float) -> None:
    state = PlannerState(level=0.5, trend_per_s=trend_per_s, at_s=0.0)
    sd = poisson_sd(0.5, 15.0)
    assert sd == pytest.approx(0.1826, abs=1e-4)
    assert rate_at(state, 85.0, sd) == pytest.approx(expected, abs=1e-3)


def test_seed_load_keeps_the_cloud_empty() -> None:
    # hey -c 5 on the seed's 11-token prompt: ~5 streams, 0.3 req/s; one V100 carries
    # ~10 req/s of that mix at the SLO: 1 replica, idc 1, cloud 0, no cost.
    load = Load(rate=0.3, prompt_tokens=11, output_tokens=512, ttft_s=0.1, tpot_s=0.03)
    p = plan(CONFIG, load, tiers(), capacity=10.0, current=1, state=steady(0.3), now=1000.0)
    assert (p.desired, p.per_tier) == (1, {"idc": 1, "cloud": 0})
    assert p.expected_cost_per_hour == 0.0 and p.message(1) is None


def test_burst_goes_to_the_cloud_after_the_idc_is_full() -> None:
    # 3 req/s at 1.2 req/s per replica: ceil(2.5) = 3; the IDC holds 1 (no room): cloud 2
    load = Load(rate=3.0, prompt_tokens=1500, output_tokens=256, ttft_s=1.5, tpot_s=0.05)
    p = plan(CONFIG, load, tiers(), capacity=1.2, current=1, state=steady(3.0), now=1000.0)
    assert (p.desired, p.per_tier) == (3, {"idc": 1, "cloud": 2})
    assert p.expected_cost_per_hour == pytest.approx(5.0)  # 2 replicas x 2.5
    assert p.message(1) == (
        "New size: 3 (idc 1, cloud 2); reason: load 3.00 req/s needs 3: one replica "
        "carries 1.20 req/s at TTFT p95 2 s"
    )


def test_idc_room_is_used_before_the_cloud() -> None:
    load = Load(rate=3.0, prompt_tokens=1500, output_tokens=256)
    p = plan(CONFIG, load, tiers(idc_room=1), capacity=1.2, current=1, state=steady(3.0), now=1e3)
    assert p.per_tier == {"idc": 2, "cloud": 1}
    assert p.horizon_s == 36.0  # the next replica lands on the IDC: its cold start


def test_forecast_scales_out_ahead_of_the_cold_start() -> None:
    # now 1.0 req/s (needs 1) but rising 0.01 req/s per s: in 81 s 1.81 -> needs 2
    state = PlannerState(level=0.85, trend_per_s=0.01, at_s=985.0)
    load = Load(rate=1.0, prompt_tokens=1500, output_tokens=256)
    p = plan(CONFIG, load, tiers(), capacity=1.2, current=1, state=state, now=1000.0)
    assert p.needed_now == 1 and p.needed_at_horizon == 2 and p.desired == 2
    assert p.reason.startswith("forecast ") and "in 81 s" in p.reason


def test_breach_reacts_at_once() -> None:
    # the model says 1 replica is enough, but measured TTFT p95 is 3.1 s > 2 s: one more now
    load = Load(rate=1.0, prompt_tokens=1500, output_tokens=256, ttft_s=3.1)
    p = plan(CONFIG, load, tiers(), capacity=1.2, current=1, state=steady(1.0), now=1000.0)
    assert p.breach and p.desired == 2
    assert p.reason == "SLO breach: TTFT p95 3.10 s > 2 s"


def test_budget_caps_the_cloud_and_says_so() -> None:
    # 5 replicas needed; the budget of 3/h pays for one cloud replica at 2.5/h
    config = PlannerConfig(slo=SLO, min_replicas=1, max_replicas=5, cloud_cost_per_hour=3.0)
    load = Load(rate=6.0, prompt_tokens=1500, output_tokens=256)
    p = plan(config, load, tiers(), capacity=1.2, current=1, state=steady(6.0), now=1000.0)
    assert p.per_tier == {"idc": 1, "cloud": 1} and p.desired == 2
    assert p.budget_blocked and "budget of 3/h" in p.reason
    assert p.expected_cost_per_hour <= 3.0


def test_scale_in_gives_back_only_what_the_horizon_does_not_need() -> None:
    # the burst is over (0.5 req/s) and the forecast is flat: 3 -> 1 (cloud goes first)
    load = Load(rate=0.5, prompt_tokens=1500, output_tokens=256)
    p = plan(
        CONFIG, load, tiers(cloud_alloc=2), capacity=1.2, current=3, state=steady(0.5), now=1e3
    )
    assert p.desired == 1 and p.per_tier == {"idc": 1, "cloud": 0}
    # a rising trend (0.02 req/s per s) seen at 0.5 req/s now: Holt gives
    # level = 0.5*0.5 + 0.5*(1.0 + 0.02*15) = 0.9, trend = 0.3*(0.9-1.0)/15 + 0.7*0.02 = 0.012,
    # in the cloud's 81 s: 0.9 + 0.012*81 = 1.87 req/s -> 2 replicas: one cloud one is kept
    rising = PlannerState(level=1.0, trend_per_s=0.02, at_s=985.0)
    p = plan(CONFIG, load, tiers(cloud_alloc=2), capacity=1.2, current=3, state=rising, now=1e3)
    assert p.desired == 2


def test_online_correction_lowers_capacity_when_measured_is_slower() -> None:
    # measured 2.0 s where the model predicted 1.0 s: correction 0.7*1 + 0.3*2 = 1.3
    load = Load(rate=2.4, prompt_tokens=1500, output_tokens=256, ttft_s=2.0, predicted_ttft_s=1.0)
    p = plan(CONFIG, load, tiers(), capacity=1.2, current=2, state=steady(2.4), now=1000.0)
    assert p.state.correction == pytest.approx(1.3)
    assert p.capacity == pytest.approx(1.2 / 1.3)
    assert p.needed_now == 3  # ceil(2.4 / 0.923) = ceil(2.6) = 3


def knee(correction: float) -> float:
    """A replica whose model TTFT p95 is 0.5 s idle and rises as 0.5 / (1 - rate / 2.0):
    at the objective 2 s / c it carries 2.0 * (1 - 0.25 * c) req/s (1.5 at c = 1)."""
    return 2.0 * (1 - 0.5 / (SLO.ttft_seconds / correction))


@pytest.mark.parametrize(
    ("correction", "grid"),
    [
        (1.0, 1.0),  # no correction stays none
        (1.1, 1.05**2),  # log(1.1) / log(1.05) = 1.95 -> 2 steps: 1.1025
        (1.12, 1.05**2),  # 2.32 -> 2
        (1.13, 1.05**3),  # 2.505 -> 3 (just over the half)
        (0.9, 1.05**-2),  # -2.16 -> -2: 0.907
        (0.0, 1.0),  # nonsense: no correction
    ],
)
def test_corrections_are_asked_on_a_5_percent_grid(correction: float, grid: float) -> None:
    assert quantized(correction) == pytest.approx(grid)


def test_correction_tightens_the_objective_where_the_body_has_a_model() -> None:
    # An earlier period measured 2.4 s where the model said 2.0 s (the worker answered
    # late: correction_sample): correction 0.7*1 + 0.3*1.2 = 1.06, 1.2 steps of 1.05 from
    # the grid point 1 (over the 0.75 hysteresis) -> grid 1.05; the model at TTFT
    # 2 / 1.05 = 1.905 s carries 2 * (1 - 0.5 / 1.905) = 1.475 req/s, 1.7 % under 1.5
    # where dividing the rate (1.5 / 1.06 = 1.415) would take 5.7 % off.
    load = Load(
        rate=2.9, prompt_tokens=1500, output_tokens=256, ttft_s=1.9,
        correction_sample=(2.4, 2.0),
    )  # fmt: skip
    p = plan(CONFIG, load, tiers(), capacity=knee, current=2, state=steady(2.9), now=1000.0)
    assert p.state.correction == pytest.approx(1.06)
    assert p.state.grid == pytest.approx(1.05)
    assert p.capacity == pytest.approx(2.0 * (1 - 0.5 / (2.0 / 1.05)))
    assert p.needed_now == 2  # ceil(2.9 / 1.475) = ceil(1.97) = 2; / 1.415 would be 3
    assert not p.breach  # this period's 1.9 s is within the objective
    # a plain rate is divided: 1.5 / 1.06
    assert corrected_capacity(1.5, 1.06) == pytest.approx(1.5 / 1.06)
    assert corrected_capacity(knee, 1.0) == pytest.approx(1.5)


def test_an_overloaded_period_does_not_correct() -> None:
    # a burst's first period: the model says 9 s at the load one replica had (over its
    # capacity: a queue), the gateway measured 1.5 s (the requests that got a first token)
    load = Load(rate=3.0, prompt_tokens=1500, output_tokens=256, ttft_s=1.5, predicted_ttft_s=9.0)
    p = plan(CONFIG, load, tiers(), capacity=1.2, current=1, state=steady(3.0), now=1000.0)
    assert p.state.correction == 1.0  # 9 s > 2 x the 2 s objective: no correction


@pytest.mark.parametrize(
    ("grid", "correction", "expected"),
    [
        (1.0, 1.03, 1.0),  # 0.61 of a step from 1: stays
        (1.0, 1.04, 1.05),  # 0.80 of a step: to the nearest, 1.05
        (1.05, 1.03, 1.05),  # 0.39 of a step below 1.05: stays (no flip at the midpoint)
        (1.05, 1.01, 1.0),  # 0.80 of a step below: back to 1
        (1.0, 1.2, 1.05**4),  # far: the nearest (3.74 steps -> 4)
    ],
)
def test_the_grid_point_moves_with_hysteresis(
    grid: float, correction: float, expected: float
) -> None:
    assert regridded(grid, correction) == pytest.approx(expected)


def test_state_round_trips_and_garbage_is_fresh() -> None:
    state = PlannerState(
        level=1.5, trend_per_s=0.01, at_s=10.0, correction=1.2, grid=1.05**4, mix=(900.0, 180.0)
    )
    assert PlannerState.from_json(state.to_json()) == state
    assert PlannerState.from_json({"mix": [1.0]}) == PlannerState()
    assert PlannerState.from_json({"level": "x"}) == PlannerState()
    assert PlannerState.from_json(None) == PlannerState()


def test_min_and_max_bound_the_plan() -> None:
    config = PlannerConfig(slo=SLO, min_replicas=2, max_replicas=3)
    quiet = plan(config, Load(0.0, 1500, 256), tiers(), 1.2, 2, steady(0.0), 1000.0)
    assert quiet.desired == 2
    loud = plan(config, Load(10.0, 1500, 256), tiers(), 1.2, 2, steady(10.0), 1000.0)
    assert loud.desired == 3


@pytest.mark.parametrize(
    ("held", "mix", "expected"),
    [
        (None, (1000.0, 200.0), (1000.0, 200.0)),  # nothing held: the mix itself
        ((1000.0, 200.0), (1100.0, 190.0), (1000.0, 200.0)),  # +10 %, -5 %: in the band
        ((1000.0, 200.0), (1149.0, 174.0), (1000.0, 200.0)),  # 1149 < 1150; 174 > 173.9
        ((1000.0, 200.0), (1160.0, 200.0), (1160.0, 200.0)),  # prompts +16 %: moves
        ((1000.0, 200.0), (1000.0, 170.0), (1000.0, 170.0)),  # outputs -15 % (< 200/1.15)
        ((11.0, 16.0), (1500.0, 256.0), (1500.0, 256.0)),  # the seed's mix, then a burst's
    ],
)
def test_the_capacity_is_asked_at_a_held_mix(
    held: tuple[float, float] | None, mix: tuple[float, float], expected: tuple[float, float]
) -> None:
    assert held_mix(held, mix) == expected


def test_the_correction_is_kept_per_mix() -> None:
    # Learned on the seed's 11-token prompts: measured TTFT at 0.7 of the model's.
    seed = replace(steady(0.4), mix=(11.0, 16.0), correction=0.7, grid=1.05**-7)
    within = Load(0.4, 12.0, 16.0, ttft_s=0.1, predicted_ttft_s=0.1)  # 12 tokens: in band
    p = plan(CONFIG, within, tiers(), capacity=1.2, current=1, state=seed, now=1000.0)
    assert p.state.mix == (11.0, 16.0)
    assert p.state.correction == pytest.approx(0.7 * 0.7 + 0.3 * 1.0)  # folded: 0.79
    # A burst of 1500-token prompts: the mix leaves the band, the correction starts over
    # (0.7 would make a replica carry 1.2 / 0.7 = 1.71 req/s of a mix it never measured),
    # and this period's sample, predicted at the mix before, is not folded in.
    burst = Load(3.0, 1500.0, 256.0, ttft_s=1.0, correction_sample=(0.5, 1.0))
    p = plan(CONFIG, burst, tiers(), capacity=1.2, current=1, state=seed, now=1000.0)
    assert p.state.mix == (1500.0, 256.0)
    assert (p.state.correction, p.state.grid) == (1.0, 1.0)
    assert p.capacity == 1.2 and p.needed_now == 3  # ceil(3.0 / 1.2) = ceil(2.5) = 3

"""How much load one replica carries at an SLO: the tier planner's capacity model.

For a replica of a given ``EngineShape`` and a token ``Mix``, ``replica_rate`` is the
largest Poisson arrival rate (requests/s) at which the ``q``-quantile TTFT and TPOT
stay within the SLO, and ``latency_quantiles`` the predicted (TTFT, TPOT) quantile at
a given per-replica rate (the planner divides what it measures by this to correct
the model online). Both drive the step-level scheduler (``BatchScheduler``) on virtual
time, as ``simulate_arrivals`` does. ``CapacityModel`` memoises them over bucketed
mixes and rates. Pure: no clock, no I/O; deterministic (fixed seeds).

One simulated run (``_run``):

- arrivals are a Poisson process whose unit-rate gaps come from ``Random(seed)`` and
  are scaled by ``1 / rate``: every rate sees the same arrival pattern, stretched
  (common random numbers), so latency grows smoothly with the rate and bisection on
  it is well behaved;
- the first ``warmup`` requests fill the engine and are not measured (steady state);
  ``warmup`` is at least ``WARMUP_REQUESTS`` and three times the requests in flight by
  Little's law at the isolated request's latency;
- the next ``requests`` are measured; arrivals keep coming until the last of them has
  finished, so the end of the window is not a draining engine;
- quantiles are nearest-rank (the ``ceil(q * n)``-th smallest), so "the q-quantile is
  within the SLO" is exactly "at most ``n - ceil(q * n)`` measured requests miss it",
  and a run that is looking for the SLO stops as soon as more than that have missed
  (overloaded rates cost little).

Precision and cost. Near capacity a replica's latency is correlated over minutes
(one burst of arrivals delays everything behind it), so the sample size, not the
bisection, sets the precision. Seed case (V100-32G, the seed's DeepSeek-R1-Distill-
Qwen-7B line, 1500 prompt / 256 output tokens, TTFT 2 s, TPOT 0.1 s), default
``requests`` (``default_requests``: 200 at q 0.9 and 0.95), 16 seeds:

- q 0.9: 2.05 req/s mean, 6 % standard deviation between seeds (1.84-2.27);
- q 0.95: 1.98 req/s mean, 8 % (1.67-2.24);
- 5000 measured requests give 1.96 (q 0.9) and 1.90 (q 0.95): short runs read about
  4 % high, since a 100-s window seldom holds the rare long bursts;
- the bisection adds at most ``tolerance`` (2 %, downwards).

So read a rate as ±7 % of the model's long-run answer, and keep a margin (or the
planner's online correction) for it; a larger ``requests`` narrows it (1000: ±3 %)
at a cost linear in it. Close to saturation (utilisation near 1) a short run cannot
see a queue that grows slowly, hence the ``MAX_UTILISATION`` cap. A cold
``replica_rate`` runs 6-9 simulations (a failing one stops early): 0.3-0.5 s of
one core of this machine for the seed case (at most 0.6 s over 16 seeds), about
0.15 s on an H100; ``latency_quantiles`` is one simulation, ~0.1 s.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from tierserve.engine.perf.cost import EngineShape, step_time_s
from tierserve.engine.perf.scheduler import BatchScheduler, Sequence

WARMUP_REQUESTS = 30
"""Fewest requests dropped at the start of a run before measuring (steady state)."""

WARMUP_IN_FLIGHT_FACTOR = 3.0
"""Warm-up covers this many times the requests in flight (rate x isolated latency)."""

MISSES_PER_QUANTILE = 10
"""``default_requests`` measures enough requests that about this many lie above the
quantile (at q 0.95, the 11th-largest of 200); more buys little precision
per second of simulation, see the module docstring."""

MIN_REQUESTS = 200
"""Fewest measured requests ``default_requests`` chooses."""

BISECTION_TOLERANCE = 0.02
"""``replica_rate`` stops when its bracket is this narrow (relative): the answer is
within 2 % below the largest passing rate, well inside the sampling spread."""

MAX_BRACKET_STEPS = 12
"""A rate that fails at ``2 ** -12`` of the throughput bound counts as 0.0."""

MAX_UTILISATION = 0.95
"""``replica_rate`` answers at most this share of the replica's throughput bound. At
a utilisation near 1 the queue grows too slowly for a run of a few hundred requests
to see (an H100 on the seed's mix passes at 100 % of its bound, 22.2 req/s, in 200
requests, while 6000 requests show TTFT p90 climbing past 2 s from ~21 req/s); no
real replica holds an SLO there either."""

DESCENT_FACTOR = 0.8
DESCENT_STEPS = 3
"""``replica_rate`` looks for a passing rate down from the throughput bound by this
factor for its first steps (the answer is usually 50-90 % of the bound), then halves."""


@dataclass(frozen=True)
class Mix:
    """The token mix of the load: prompt and output tokens of every request."""

    prompt_tokens: int
    output_tokens: int

    def __post_init__(self) -> None:
        if self.prompt_tokens < 1:
            raise ValueError(f"Mix.prompt_tokens: {self.prompt_tokens}, expected >= 1")
        if self.output_tokens < 1:
            raise ValueError(f"Mix.output_tokens: {self.output_tokens}, expected >= 1")


@dataclass(frozen=True)
class _Slo:
    """What a run stops early for: at most ``allowed`` measured misses of either."""

    ttft_s: float
    tpot_s: float
    allowed: int


def default_requests(q: float) -> int:
    """Measured requests for quantile ``q``: ``max(200, ceil(10 / (1 - q)))``
    (200 at q 0.9 and 0.95, 1000 at q 0.99)."""
    _check_quantile(q)
    if q >= 1.0:
        return MIN_REQUESTS
    return max(MIN_REQUESTS, math.ceil(MISSES_PER_QUANTILE / (1.0 - q) - 1e-9))


def _requests(requests: int | None, q: float) -> int:
    if requests is None:
        return default_requests(q)
    if requests < 1:
        raise ValueError(f"requests: {requests}, expected >= 1")
    return requests


def _check_quantile(q: float) -> None:
    if not 0.0 < q <= 1.0:
        raise ValueError(f"q: {q}, expected 0 < q <= 1")


def _rank(q: float, n: int) -> int:
    """0-based index of the nearest-rank q-quantile among n sorted values."""
    return min(n - 1, max(0, math.ceil(q * n - 1e-9) - 1))


def _fits(shape: EngineShape, mix: Mix) -> bool:
    """Whether one request of ``mix`` can ever run on the replica."""
    if mix.prompt_tokens + mix.output_tokens > shape.max_model_len:
        return False
    return BatchScheduler(shape).fits_ever(mix.prompt_tokens, mix.output_tokens)


def _tpot(first_s: float, end_s: float, output_tokens: int) -> float:
    """Mean time per output token after the first (s), as ``RequestTiming.itl_s``."""
    return (end_s - first_s) / (output_tokens - 1) if output_tokens > 1 else 0.0


def _isolated(shape: EngineShape, mix: Mix) -> tuple[float, float]:
    """(TTFT, TPOT) of one request alone on the replica (s): the limit as rate -> 0."""
    sched = BatchScheduler(shape)
    seq = Sequence("r0", mix.prompt_tokens, mix.output_tokens, 0.0)
    sched.add(seq)
    now, first = 0.0, 0.0
    while sched.has_work():
        plan = sched.plan(now)
        if plan is None:
            raise ValueError(f"{mix} never fits the KV cache of {shape.gpu.name}")
        now += plan.duration_s
        for ev in sched.commit(plan):
            if ev.index == 1:
                first = now
    return first, _tpot(first, now, mix.output_tokens)


def _rate_bound(shape: EngineShape, mix: Mix, isolated_e2e_s: float) -> float:
    """An upper bound on the rate one replica can sustain at all (req/s): every token
    of a request goes through the matmuls once (no step does better per token than a
    huge compute-bound batch), and at most ``max_num_seqs`` run at once, each for at
    least its isolated latency."""
    huge = 1_000_000_000
    per_token_s = step_time_s(shape, 0, 0, huge, 0.0) - shape.overhead_s * shape.slow_factor
    per_token_s /= huge
    compute = 1.0 / (per_token_s * (mix.prompt_tokens + mix.output_tokens))
    slots = shape.max_num_seqs / isolated_e2e_s if isolated_e2e_s > 0 else math.inf
    return min(compute, slots)


def _warmup(rate_per_s: float, isolated_e2e_s: float) -> int:
    in_flight = rate_per_s * isolated_e2e_s
    return max(WARMUP_REQUESTS, math.ceil(WARMUP_IN_FLIGHT_FACTOR * in_flight))


def _run(
    shape: EngineShape,
    mix: Mix,
    rate_per_s: float,
    warmup: int,
    requests: int,
    seed: int,
    slo: _Slo | None,
) -> tuple[list[float], list[float]] | None:
    """Measured (TTFT, TPOT) lists of requests ``warmup .. warmup + requests`` of
    Poisson arrivals at ``rate_per_s``; None as soon as ``slo`` is certainly missed."""
    rng = random.Random(seed)
    scale = 1.0 / rate_per_s
    sched = BatchScheduler(shape)
    measured_from, measured_to = warmup, warmup + requests
    measured: set[Sequence] = set()
    first: dict[Sequence, float] = {}
    ttfts: list[float] = []
    tpots: list[float] = []
    ttft_misses = tpot_misses = 0
    arrived = 0
    next_arrival = rng.expovariate(1.0) * scale
    now = next_arrival
    out = mix.output_tokens
    while len(tpots) < requests:
        while next_arrival <= now:
            seq = Sequence(f"r{arrived}", mix.prompt_tokens, out, next_arrival)
            if measured_from <= arrived < measured_to:
                measured.add(seq)
            sched.add(seq)
            arrived += 1
            next_arrival += rng.expovariate(1.0) * scale
        plan = sched.plan(now)
        if plan is None:
            if sched.has_work():  # nothing schedulable and nothing will free blocks
                raise ValueError(f"{mix} never fits the KV cache of {shape.gpu.name}")
            now = next_arrival
            continue
        now += plan.duration_s
        for ev in sched.commit(plan):
            seq = ev.seq
            if seq not in measured:
                continue
            if ev.index == 1:
                first[seq] = now
                ttft = now - seq.arrival_s
                ttfts.append(ttft)
                if slo is not None and ttft > slo.ttft_s:
                    ttft_misses += 1
            if ev.finished:
                tpot = _tpot(first[seq], now, out)
                tpots.append(tpot)
                if slo is not None and tpot > slo.tpot_s:
                    tpot_misses += 1
        if slo is not None and max(ttft_misses, tpot_misses) > slo.allowed:
            return None
    return ttfts, tpots


def latency_quantiles(
    shape: EngineShape,
    mix: Mix,
    rate_per_s: float,
    q: float = 0.95,
    *,
    requests: int | None = None,
    seed: int = 0,
) -> tuple[float, float]:
    """(TTFT, TPOT) in seconds at quantile ``q`` (nearest rank) of Poisson arrivals at
    ``rate_per_s`` on one replica, in steady state (a warm-up prefix is dropped), from
    the step-level model. ``requests``: measured requests (default
    ``default_requests(q)``). A rate <= 0 gives the isolated request's latency (the
    limit of a trickle). Raises ``ValueError`` when a request of ``mix`` never fits
    the replica's KV cache. TPOT is a request's mean time per output token after the
    first; 0 for one-token outputs. Above the replica's capacity there is no steady
    state: the queue grows through the run and the TTFT returned grows with
    ``requests``."""
    _check_quantile(q)
    if not _fits(shape, mix):
        raise ValueError(f"{mix} never fits one replica of {shape.gpu.name}")
    ttft0, tpot0 = _isolated(shape, mix)
    if rate_per_s <= 0.0:
        return ttft0, tpot0
    n = _requests(requests, q)
    e2e0 = ttft0 + tpot0 * (mix.output_tokens - 1)
    result = _run(shape, mix, rate_per_s, _warmup(rate_per_s, e2e0), n, seed, None)
    assert result is not None  # no SLO: never stops early
    ttfts, tpots = sorted(result[0]), sorted(result[1])
    return ttfts[_rank(q, len(ttfts))], tpots[_rank(q, len(tpots))]


def _bracket(passes: Callable[[float], bool], bound: float) -> tuple[float, float]:
    """A passing ``lo`` and a failing ``hi`` rate below ``bound`` (which fails): down
    from it by 0.8 three times (a failing run above capacity stops early, so these
    are cheap), then by halves. ``(0.0, hi)`` when nothing down to
    ``2 ** -MAX_BRACKET_STEPS`` of the bound passes."""
    hi, steps = bound, 0
    floor = bound * 2.0**-MAX_BRACKET_STEPS
    while hi > floor:
        lo = hi * (DESCENT_FACTOR if steps < DESCENT_STEPS else 0.5)
        if passes(lo):
            return lo, hi
        hi, steps = lo, steps + 1
    return 0.0, hi


def replica_rate(
    shape: EngineShape,
    mix: Mix,
    ttft_s: float,
    tpot_s: float | None = None,
    q: float = 0.95,
    *,
    requests: int | None = None,
    seed: int = 0,
    tolerance: float = BISECTION_TOLERANCE,
) -> float:
    """The largest Poisson rate (req/s) at which one replica's ``q``-quantile TTFT is
    <= ``ttft_s`` and TPOT <= ``tpot_s`` (None: TTFT only), as ``latency_quantiles``
    with the same ``requests`` and ``seed`` measures them.

    Geometric bisection between a passing and a failing rate, bracketed down from the
    replica's throughput bound (every token through the matmuls at the GPU's FLOP/s,
    and ``max_num_seqs`` at a time), until they are within ``tolerance`` (relative) of
    each other; returns the passing one. Deterministic. At most ``MAX_UTILISATION``
    (95 %) of the bound: an SLO so loose that a queue may grow for the whole run gets
    that, as no rate above the bound has a steady state. 0.0 when even a trickle
    misses (an isolated request is over the SLO, e.g. its prefill alone exceeds
    ``ttft_s``), when the mix never fits the replica, or when the SLO fails down to
    ``2 ** -12`` of the bound. See the module docstring for the precision and cost.
    """
    _check_quantile(q)
    if tolerance <= 0.0:
        raise ValueError(f"tolerance: {tolerance}, expected > 0")
    if not _fits(shape, mix):
        return 0.0
    tpot_limit = math.inf if tpot_s is None else tpot_s
    ttft0, tpot0 = _isolated(shape, mix)
    if ttft0 > ttft_s or tpot0 > tpot_limit:
        return 0.0
    n = _requests(requests, q)
    slo = _Slo(ttft_s, tpot_limit, n - (_rank(q, n) + 1))
    e2e0 = ttft0 + tpot0 * (mix.output_tokens - 1)

    def passes(rate: float) -> bool:
        return _run(shape, mix, rate, _warmup(rate, e2e0), n, seed, slo) is not None

    bound = MAX_UTILISATION * _rate_bound(shape, mix, e2e0)
    if passes(bound):  # a finite run cannot see the queue grow this close to 100 %
        return bound
    lo, hi = _bracket(passes, bound)
    if lo == 0.0:
        return 0.0
    while hi / lo > 1.0 + tolerance:
        mid = math.sqrt(lo * hi)
        if passes(mid):
            lo = mid
        else:
            hi = mid
    return lo


def bucket(value: float, step: float) -> float:
    """``value`` rounded to the nearest of the log-spaced points ``(1 + step) ** k``
    (relative error <= step / 2). Values <= 0 stay 0."""
    if value <= 0.0:
        return 0.0
    ratio = math.log1p(step)
    return math.exp(round(math.log(value) / ratio) * ratio)


def bucket_mix(prompt_tokens: float, output_tokens: float, step: float = 0.05) -> Mix:
    """The ``Mix`` a measured mean mix stands for: each count rounded to its ~5 % log
    bucket, then to a whole number of tokens (at least 1)."""
    return Mix(
        max(1, round(bucket(prompt_tokens, step))), max(1, round(bucket(output_tokens, step)))
    )


def mix_corners(
    prompt_tokens: float, output_tokens: float, step: float = 0.05
) -> list[tuple[Mix, float]]:
    """The bucket points around a measured mix and their weights: log-linear in each
    count between the two ``(1 + step) ** k`` points either side of it (one point, weight
    1, on a point), so a figure interpolated over them moves smoothly with the mix where
    ``bucket_mix`` jumps at each bucket's edge (one replica's rate on the diurnal trace's
    ~1000-token prompts: 3.26 req/s at the 956-token point, 2.93 at 1051)."""

    def sides(value: float) -> list[tuple[int, float]]:
        if value <= 1.0:
            return [(1, 1.0)]
        ratio = math.log1p(step)
        x = math.log(value) / ratio
        k = math.floor(x + 1e-9)
        f = x - k
        lo, hi = max(1, round(math.exp(k * ratio))), max(1, round(math.exp((k + 1) * ratio)))
        if f < 1e-6 or lo == hi:
            return [(lo, 1.0)]
        return [(lo, 1.0 - f), (hi, f)]

    return [
        (Mix(p, o), wp * wo) for p, wp in sides(prompt_tokens) for o, wo in sides(output_tokens)
    ]


_K = TypeVar("_K")
_V = TypeVar("_V")
_RateKey = tuple[EngineShape, Mix, float, float | None, float]
_LatencyKey = tuple[EngineShape, Mix, float, float]


class CapacityModel:
    """Memoised ``replica_rate`` / ``latency_quantiles`` for the tier planner.

    Figures are computed at the mix's bucket points (prompt and output tokens on
    ``mix_step`` = 5 % log-spaced points) and interpolated between them
    (``mix_corners``), and the rate is bucketed (``rate_step`` = 2 % log buckets, the
    bisection's own precision), so a planner evaluating every 15 s over a slowly changing
    mix costs a few dictionary look-ups after the first calls. Each cache keeps its ``max_entries``
    most recently used entries. The cache is a memo of pure functions, not state: a
    fresh model gives the same answers. ``rate_fn``/``latency_fn`` default to
    ``replica_rate``/``latency_quantiles`` (tests wrap them to count calls).
    """

    def __init__(
        self,
        *,
        mix_step: float = 0.05,
        rate_step: float = 0.02,
        requests: int | None = None,
        seed: int = 0,
        max_entries: int = 4096,
        rate_fn: Callable[..., float] = replica_rate,
        latency_fn: Callable[..., tuple[float, float]] = latency_quantiles,
    ) -> None:
        self.mix_step = mix_step
        self.rate_step = rate_step
        self.requests = requests
        self.seed = seed
        self.max_entries = max_entries
        self._rate_fn = rate_fn
        self._latency_fn = latency_fn
        self._rates: OrderedDict[_RateKey, float] = OrderedDict()
        self._latencies: OrderedDict[_LatencyKey, tuple[float, float]] = OrderedDict()

    def rate(
        self,
        shape: EngineShape,
        prompt_tokens: float,
        output_tokens: float,
        ttft_s: float,
        tpot_s: float | None = None,
        q: float = 0.95,
    ) -> float:
        """``replica_rate`` interpolated over the mix's bucket points (req/s,
        ``mix_corners``)."""
        return sum(
            w * self._rate_at(shape, mix, ttft_s, tpot_s, q)
            for mix, w in mix_corners(prompt_tokens, output_tokens, self.mix_step)
        )

    def _rate_at(
        self, shape: EngineShape, mix: Mix, ttft_s: float, tpot_s: float | None, q: float
    ) -> float:
        key: _RateKey = (shape, mix, ttft_s, tpot_s, q)
        hit = self._rates.get(key)
        if hit is not None:
            self._rates.move_to_end(key)
            return hit
        value = self._rate_fn(shape, mix, ttft_s, tpot_s, q, requests=self.requests, seed=self.seed)
        _store(self._rates, key, value, self.max_entries)
        return value

    def latency(
        self,
        shape: EngineShape,
        prompt_tokens: float,
        output_tokens: float,
        rate_per_s: float,
        q: float = 0.95,
    ) -> tuple[float, float]:
        """``latency_quantiles`` (TTFT, TPOT in s) for the bucketed rate, interpolated
        over the mix's bucket points (``mix_corners``)."""
        rate = bucket(rate_per_s, self.rate_step)
        ttft = tpot = 0.0
        for mix, w in mix_corners(prompt_tokens, output_tokens, self.mix_step):
            one = self._latency_at(shape, mix, rate, q)
            ttft += w * one[0]
            tpot += w * one[1]
        return ttft, tpot

    def _latency_at(
        self, shape: EngineShape, mix: Mix, rate: float, q: float
    ) -> tuple[float, float]:
        key: _LatencyKey = (shape, mix, rate, q)
        hit = self._latencies.get(key)
        if hit is not None:
            self._latencies.move_to_end(key)
            return hit
        value = self._latency_fn(shape, mix, rate, q, requests=self.requests, seed=self.seed)
        _store(self._latencies, key, value, self.max_entries)
        return value


def _store(cache: OrderedDict[_K, _V], key: _K, value: _V, max_entries: int) -> None:
    """Put ``key`` in a least-recently-used cache of ``max_entries``."""
    cache[key] = value
    if len(cache) > max_entries:
        cache.popitem(last=False)


_MODELS: dict[float, CapacityModel] = {}
"""The models ``model_rate`` / ``model_latency`` keep in this process, by ``mix_step``."""

FINE_MIX_STEP = 0.01
"""A body asks a worker for a mix rounded to 1 % points (``bucket_mix``): fine enough that
the interpolated figure moves smoothly, coarse enough that a wobbling mix asks again
rarely."""


def _model(mix_step: float) -> CapacityModel:
    model = _MODELS.get(mix_step)
    if model is None:
        model = _MODELS[mix_step] = CapacityModel(mix_step=mix_step)
    return model


def model_rate(
    shape: EngineShape,
    mix: Mix,
    ttft_s: float,
    tpot_s: float | None,
    q: float,
    mix_step: float,
) -> float:
    """``CapacityModel.rate`` on a model kept in this process: a worker process asked for
    one mix after another computes each bucket point once."""
    return _model(mix_step).rate(shape, mix.prompt_tokens, mix.output_tokens, ttft_s, tpot_s, q)


def model_latency(
    shape: EngineShape, mix: Mix, rate_per_s: float, q: float, mix_step: float
) -> tuple[float, float]:
    """``CapacityModel.latency`` on a model kept in this process (as ``model_rate``)."""
    return _model(mix_step).latency(shape, mix.prompt_tokens, mix.output_tokens, rate_per_s, q)

"""The simulator's replica models: FastReplica against the step-by-step reference.

FastReplica regroups BatchScheduler's arithmetic (no scheduling approximation), so the two
are compared per request to 1e-6 relative, far inside the few per cent a simulator needs;
what may differ is only float rounding of summed step times.
"""

from __future__ import annotations

import math
import random
from collections import deque
from collections.abc import Iterable
from dataclasses import replace

import pytest

from tierserve.engine.perf.cost import (
    NON_TORCH_RESERVE_BYTES,
    EngineShape,
    activation_bytes,
    kv_cache_tokens,
    load_time_s,
    step_time_s,
)
from tierserve.engine.perf.profiles import PROFILES
from tierserve.errors import NeverPossible, ValidationError
from tierserve.examples import SEED_COMMAND
from tierserve.sim.engine import (
    DCGM_WINDOW_S,
    Completion,
    FastReplica,
    FirstToken,
    ReplicaModel,
    StepReplica,
    emulator_config_for,
    engine_shape_for,
    make_replica,
)

Arrivals = list[tuple[float, int, int]]  # (arrival_s, prompt tokens, output tokens)
Size = int | tuple[int, int]  # fixed, or uniform in [lo, hi]
Model = type[StepReplica] | type[FastReplica]
MODELS: list[Model] = [StepReplica, FastReplica]

V100 = engine_shape_for("V100")  # the seed's model on the seed's GPU, emulator defaults
SEED_PROMPT = 11  # "Say this is a test!" in DeepSeek-R1-Distill's chat template


def poisson(rate: float, n: int, prompt: Size, output: Size, seed: int = 0) -> Arrivals:
    rng = random.Random(seed)

    def draw(size: Size) -> int:
        return size if isinstance(size, int) else rng.randint(*size)

    t, out = 0.0, []
    for _ in range(n):
        t += rng.expovariate(rate)
        out.append((t, draw(prompt), draw(output)))
    return out


def drive(
    model: ReplicaModel,
    arrivals: Iterable[tuple[float, int, int]] = (),
    closed: tuple[int, int, int, int] | None = None,
) -> list[Completion]:
    """Run a workload through the loop a simulator uses (advance to the earlier of the
    next arrival and ``next_event_s``), checking that nothing happens before the
    promised time. ``closed``: (clients, requests each, prompt, output), all at t=0."""
    pending = deque(sorted(arrivals))
    out: list[Completion] = []
    rid = 0
    left: dict[int, int] = {}
    owner: dict[int, int] = {}
    if closed:
        clients, each, prompt, output = closed
        for c in range(clients):
            model.submit(rid, 0.0, prompt, output)
            owner[rid], left[c] = c, each - 1
            rid += 1
    while True:
        e = model.next_event_s()
        a = pending[0][0] if pending else math.inf
        if e is None and a == math.inf:
            return sorted(out, key=lambda c: c.request_id)
        t = a if e is None else min(e, a)
        done = model.advance(t)
        firsts = model.take_first_tokens()
        if e is not None:
            assert all(c.end_s >= e for c in done), (e, done)
            assert all(f.first_token_s >= e for f in firsts), (e, firsts)
        out += done
        for c in done:
            client = owner.get(c.request_id)
            if client is not None and left[client] > 0:
                left[client] -= 1
                model.submit(rid, c.end_s, c.prompt_tokens, c.output_tokens)
                owner[rid] = client
                rid += 1
        while pending and pending[0][0] <= t:
            arrival, prompt, output = pending.popleft()
            model.submit(rid, arrival, prompt, output)
            rid += 1


def assert_same(ref: list[Completion], fast: list[Completion], rel: float = 1e-6) -> None:
    assert [c.request_id for c in ref] == [c.request_id for c in fast]
    for r, f in zip(ref, fast, strict=True):
        assert (r.prompt_tokens, r.output_tokens, r.preemptions) == (
            f.prompt_tokens,
            f.output_tokens,
            f.preemptions,
        )
        for metric in ("ttft_s", "tpot_s", "e2e_s"):
            want, got = getattr(r, metric), getattr(f, metric)
            assert got == pytest.approx(want, rel=rel, abs=1e-9), (metric, r, f)


def both(
    shape: EngineShape, arrivals: Arrivals = (), closed: tuple[int, int, int, int] | None = None
) -> tuple[StepReplica, FastReplica, list[Completion], list[Completion]]:
    ref, fast = StepReplica(shape), FastReplica(shape)
    a, b = drive(ref, arrivals, closed), drive(fast, arrivals, closed)
    assert_same(a, b)
    assert (ref.steps, ref.generated_tokens, ref.prefill_tokens, ref.preemptions) == (
        fast.steps,
        fast.generated_tokens,
        fast.prefill_tokens,
        fast.preemptions,
    )
    assert ref.busy_s == pytest.approx(fast.busy_s, rel=1e-9)
    return ref, fast, a, b


# A shape whose KV cache is small: 32,510 MiB * 0.55 - 15.24 GB of weights - activations
# - 512 MiB leaves ~2.6 GB, i.e. ~45k tokens of 57,344 B.
KV_TIGHT = engine_shape_for("V100", gpu_memory_utilization=0.55)
# H100 with Llama-3.1-8B at ~250 sequences: compute-bound at first (2 * 8e9 FLOPs a token
# at 593 TFLOP/s effective is ~6.8 ms a step, the weights read ~6.0 ms), memory-bound
# once the KV context grows: the sum over steps has its kink inside the stretch.
H100_LLAMA = engine_shape_for("H100", "llama-3.1-8b")

WORKLOADS: dict[str, tuple[EngineShape, Arrivals, tuple[int, int, int, int] | None]] = {
    "closed c=1, seed prompt": (V100, [], (1, 6, SEED_PROMPT, 256)),
    "closed c=5, seed prompt": (V100, [], (5, 4, SEED_PROMPT, 256)),
    "closed c=32, 1500 + 256": (V100, [], (32, 2, 1500, 256)),  # 32 * 1500 > 2048: chunks
    "poisson low": (V100, poisson(0.5, 40, (10, 2000), (1, 400), seed=1), None),
    "poisson high": (V100, poisson(8.0, 250, (10, 2000), (1, 300), seed=2), None),
    "poisson 1500 + 256": (V100, poisson(3.0, 80, 1500, 256, seed=3), None),
    "one-token outputs": (V100, poisson(4.0, 80, (10, 500), (1, 2), seed=4), None),
    "kv pressure": (KV_TIGHT, poisson(3.0, 120, (500, 3000), (50, 700), seed=5), None),
    "max_num_seqs=4": (
        engine_shape_for("V100", max_num_seqs=4),
        poisson(2.0, 60, (10, 800), (10, 200), seed=6),
        None,
    ),
    # Prompts chunked 512 tokens at a time while the cache runs out: preemption steps
    # with partly prefilled sequences in the batch.
    "kv pressure, 512-token chunks": (
        engine_shape_for("V100", gpu_memory_utilization=0.55, max_num_batched_tokens=512),
        poisson(3.0, 100, (500, 3000), (50, 500), seed=8),
        None,
    ),
    # A token budget of 40: prompts are chunked and it caps the batch.
    "token budget 40": (
        engine_shape_for("A10", max_num_seqs=64, max_num_batched_tokens=40),
        poisson(20.0, 150, (10, 60), (20, 200), seed=7),
        None,
    ),
    "kink: H100 llama c=250": (H100_LLAMA, [], (250, 1, 20, 300)),
    "kink, interrupted by arrivals": (H100_LLAMA, poisson(100.0, 500, 20, 300, seed=9), None),
}


@pytest.mark.parametrize("name", list(WORKLOADS))
def test_fast_agrees_with_the_step_model(name: str) -> None:
    shape, arrivals, closed = WORKLOADS[name]
    _, _, ref, _ = both(shape, arrivals, closed)
    expected = len(arrivals) if closed is None else closed[0] * closed[1]
    assert len(ref) == expected


def _random_case(seed: int) -> tuple[EngineShape, Arrivals]:
    """A small random engine (the ``tiny`` profile, a cache of 300 to 10,000 tokens, odd
    block sizes, budgets and batch limits) under a random Poisson load."""
    rng = random.Random(seed)
    base = engine_shape_for(
        rng.choice(["A10", "V100", "H100"]),
        "tiny",
        block_size=rng.choice([1, 2, 8, 16, 32]),
        max_num_batched_tokens=rng.choice([16, 64, 256, 2048]),
        max_num_seqs=rng.choice([1, 2, 8, 64, 256]),
    )
    tokens = rng.choice([300, 1000, 3000, 10_000])
    # Solve kv_cache_bytes = total * util - weights - activations - non-torch for util.
    util = (
        tokens * base.kv_bytes_per_token
        + base.weight_bytes
        + activation_bytes(base)
        + NON_TORCH_RESERVE_BYTES
    ) / base.gpu.memory_bytes
    shape = replace(base, gpu_memory_utilization=util)
    cap = kv_cache_tokens(shape)
    load = poisson(rng.uniform(0.5, 80), rng.randint(5, 60), (1, cap // 3), (1, cap // 3), seed)
    return shape, load


@pytest.mark.parametrize("seed", range(24))
def test_fast_agrees_on_random_small_engines(seed: int) -> None:
    shape, arrivals = _random_case(seed)
    both(shape, arrivals)


def test_the_workloads_reach_the_regimes_they_are_named_for() -> None:
    _, fast, _, _ = both(*WORKLOADS["kv pressure"])
    assert fast.preemptions > 0
    _, _, ref, _ = both(*WORKLOADS["max_num_seqs=4"])
    assert max(c.ttft_s for c in ref) > 1.0  # requests queued behind the 4 running
    # The kink: step time grows faster per context token at the end than at the start.
    n = 250

    def slope(ctx: int) -> float:
        return step_time_s(H100_LLAMA, n, ctx + 1000, 0, 0) - step_time_s(H100_LLAMA, n, ctx, 0, 0)

    assert slope(n * 20) < slope(n * 320) / 2


@pytest.mark.parametrize("dt", [0.0137, 0.731])
def test_advancing_to_arbitrary_times_lands_on_the_same_boundaries(dt: float) -> None:
    # Advance to arbitrary times inside kinked decode stretches (compute-bound for the
    # first ~40 steps, memory-bound after): the number of steps started before each time
    # (the inversion of the closed-form sum) matches.
    ref, fast = StepReplica(H100_LLAMA), FastReplica(H100_LLAMA)
    for i in range(250):
        ref.submit(i, 0.0, 20, 300)
        fast.submit(i, 0.0, 20, 300)
    now = 0.0
    while not ref.is_idle:
        now += dt
        a, b = ref.advance(now), fast.advance(now)
        assert ref.steps == fast.steps
        assert [c.request_id for c in a] == [c.request_id for c in b]
    assert fast.is_idle


@pytest.mark.parametrize("model", MODELS)
def test_next_event_walks_one_request_through_prefill_and_decode(model: Model) -> None:
    r = model(V100)
    assert r.next_event_s() is None and r.is_idle
    r.submit(7, 0.0, 100, 3)
    # The step at t=0 may still gain arrivals at t=0: wake just after it to plan it.
    assert r.next_event_s() == math.nextafter(0.0, math.inf)
    assert r.advance(math.nextafter(0.0, math.inf)) == []
    # Prefill of 100 tokens: 100 * 0 + 100 * 101 / 2 attention pairs.
    first = step_time_s(V100, 0, 0, 100, 5050)
    assert r.next_event_s() == first
    assert r.advance(first / 2) == [] and r.take_first_tokens() == []
    assert r.advance(first) == []
    assert r.take_first_tokens() == [FirstToken(7, 0.0, first)]
    assert r.running == 1 and r.waiting == 0
    # Two decode steps, attending to 101 and then 102 tokens.
    end = first + step_time_s(V100, 1, 101, 0, 0) + step_time_s(V100, 1, 102, 0, 0)
    # FastReplica jumps to the end of the decode stretch; StepReplica plans a step at a
    # time and promises only "nothing before the next step boundary".
    e = r.next_event_s()
    assert e is not None
    if model is FastReplica:
        assert e == pytest.approx(end, rel=1e-12)
    while e < end * (1 - 1e-9):
        assert r.advance(e) == []
        e = r.next_event_s()
        assert e is not None
    assert r.advance(end - 1e-6) == []
    [done] = r.advance(end)
    assert done == Completion(7, 0.0, first, done.end_s, 100, 3, preemptions=0)
    assert done.end_s == pytest.approx(end, rel=1e-12)
    assert r.next_event_s() is None and r.is_idle
    assert r.generated_tokens == 3 and r.prefill_tokens == 100 and r.steps == 3


@pytest.mark.parametrize("model", MODELS)
def test_completion_fields_of_one_request(model: Model) -> None:
    r = model(V100)
    [done] = drive(r, [(2.0, 100, 3)])
    first = 2.0 + step_time_s(V100, 0, 0, 100, 5050)
    end = first + step_time_s(V100, 1, 101, 0, 0) + step_time_s(V100, 1, 102, 0, 0)
    assert done.request_id == 0 and done.arrival_s == 2.0
    assert done.first_token_s == pytest.approx(first, rel=1e-12)
    assert done.end_s == pytest.approx(end, rel=1e-12)
    assert done.ttft_s == pytest.approx(first - 2.0, rel=1e-12)
    assert done.tpot_s == pytest.approx((end - first) / 2, rel=1e-12)
    assert done.e2e_s == pytest.approx(end - 2.0, rel=1e-12)


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("offset", [0.5, 0.0])
def test_a_request_arriving_mid_batch_joins_at_the_next_boundary(
    model: Model, offset: float
) -> None:
    # A (100 prompt tokens, 10 out) has its first token at f; the step [f, f + d1]
    # decodes it. B (50 tokens) arrives at f + offset * d1: half way through that step
    # it joins at f + d1; exactly at f it joins the step starting at f.
    f = step_time_s(V100, 0, 0, 100, 5050)
    d1 = step_time_s(V100, 1, 101, 0, 0)
    arrival_b = f + offset * d1
    out = drive(model(V100), [(0.0, 100, 10), (arrival_b, 50, 5)])
    b = out[1]
    if offset:
        start = f + d1
        expected = start + step_time_s(V100, 1, 102, 50, 50 * 51 / 2)
    else:
        start = f
        expected = start + step_time_s(V100, 1, 101, 50, 50 * 51 / 2)
    assert b.first_token_s == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("model", MODELS)
def test_one_token_outputs_finish_with_their_prefill(model: Model) -> None:
    out = drive(model(V100), [(0.0, 300, 1), (0.0, 20, 1)])
    # Both prefill in the first step: 320 tokens, 300 * 301 / 2 + 20 * 21 / 2 pairs.
    end = step_time_s(V100, 0, 0, 320, 300 * 301 / 2 + 20 * 21 / 2)
    for c in out:
        assert c.first_token_s == c.end_s == pytest.approx(end, rel=1e-12)
        assert c.tpot_s == 0.0


@pytest.mark.parametrize("model", MODELS)
def test_idle_gaps_reset_the_queue_and_the_gpu(model: Model) -> None:
    r = model(V100)
    out = drive(r, [(0.0, 100, 256), (500.0, 100, 256)])
    # The second request finds an idle engine: same TTFT and E2E as the first.
    assert out[1].ttft_s == pytest.approx(out[0].ttft_s, rel=1e-12)
    assert out[1].e2e_s == pytest.approx(out[0].e2e_s, rel=1e-9)
    assert r.busy_fraction(400.0) == 0.0
    assert r.busy_s == pytest.approx(out[0].e2e_s + out[1].e2e_s, rel=1e-9)


def test_gauges_agree_under_kv_pressure() -> None:
    shape, arrivals, _ = WORKLOADS["kv pressure"]
    ref, fast = StepReplica(shape), FastReplica(shape)
    for i, (arrival, prompt, output) in enumerate(arrivals):
        ref.submit(i, arrival, prompt, output)
        fast.submit(i, arrival, prompt, output)
    seen_waiting = peak_kv = 0.0
    for k in range(1, 400):
        now = k * 0.5
        a, b = ref.advance(now), fast.advance(now)
        assert [c.request_id for c in a] == [c.request_id for c in b]
        assert (ref.running, ref.waiting) == (fast.running, fast.waiting)
        assert ref.kv_usage == pytest.approx(fast.kv_usage, abs=1e-12)
        assert 0.0 <= fast.kv_usage <= 1.0
        assert ref.sm_util_pct(now) == fast.sm_util_pct(now)
        seen_waiting = max(seen_waiting, fast.waiting)
        peak_kv = max(peak_kv, fast.kv_usage)
    assert seen_waiting > 0 and peak_kv > 0.9
    assert kv_cache_tokens(shape) < 50_000


@pytest.mark.parametrize("model", MODELS)
def test_sm_util_is_the_emulators_busy_share_of_its_dcgm_window(model: Model) -> None:
    r = model(V100)
    [done] = drive(r, [(0.0, 100, 256)])
    # Busy from 0 to the end (~256 steps of ~21.7 ms = ~5.6 s), idle after it.
    now = done.end_s + 5.0
    assert DCGM_WINDOW_S == 30.0
    assert r.sm_util_pct(now) == round(100.0 * done.end_s / 30.0, 1)
    assert r.busy_fraction(now, 10.0) == pytest.approx((done.end_s - (now - 10.0)) / 10.0)
    with pytest.raises(ValueError, match="busy_history_s"):
        r.busy_fraction(now, 60.0)
    # A long request keeps the GPU busy: 100 % once it has run a whole window.
    busy = model(V100)
    busy.submit(0, 0.0, 11, 10_000)
    busy.advance(40.0)
    assert busy.sm_util_pct(40.0) == 100.0
    # Busy up to now even before the replica is advanced there (the emulator's
    # "active"): 0.5 s of idle then 59.5 s of steps.
    late = model(V100)
    late.submit(0, 0.5, 11, 10_000)
    late.advance(1.0)
    assert late.sm_util_pct(15.0) == round(100.0 * 14.5 / 30.0, 1)
    assert late.sm_util_pct(60.0) == 100.0


@pytest.mark.parametrize("model", MODELS)
def test_abort_all_drops_everything_in_flight(model: Model) -> None:
    r = model(V100)
    for i in range(5):
        r.submit(i, 0.0, 200, 100 + 100 * i)
    r.submit(5, 50.0, 200, 10)  # not arrived yet
    done = r.advance(5.0)
    ids = r.abort_all()
    assert sorted(ids + [c.request_id for c in done]) == list(range(6))
    assert r.is_idle and r.next_event_s() is None and r.running == r.waiting == 0
    assert r.kv_usage == 0.0
    assert r.busy_s <= 5.0 + 1e-9 and r.sm_util_pct(5.0) == round(100 * 5.0 / 30.0, 1)
    # The replica can take traffic again.
    assert len(drive(r, [(10.0, 100, 5)])) == 1


@pytest.mark.parametrize("model", MODELS)
def test_abort_waiting_gives_back_the_queue_and_the_batch_finishes(model: Model) -> None:
    r = model(engine_shape_for("V100", max_num_seqs=2))
    for i in range(5):
        r.submit(i, 0.0, 100, 50)
    r.advance(math.nextafter(0.0, math.inf))
    assert (r.running, r.waiting) == (2, 3)
    assert sorted(r.abort_waiting()) == [2, 3, 4]
    out = drive(r)
    assert [c.request_id for c in out] == [0, 1]
    assert r.is_idle


@pytest.mark.parametrize("events", [True, False])
def test_first_token_events_can_be_turned_off(events: bool) -> None:
    r = FastReplica(V100, first_token_events=events)
    r.submit(0, 0.0, 100, 3)
    wakes, firsts, out = 0, [], []
    while (e := r.next_event_s()) is not None:
        wakes += 1
        out += r.advance(e)
        firsts += r.take_first_tokens()
    # Wakes: plan the first step, (the first token,) the completion.
    assert wakes == (3 if events else 2)
    assert len(firsts) == (1 if events else 0)
    assert out[0].first_token_s == pytest.approx(step_time_s(V100, 0, 0, 100, 5050))


@pytest.mark.parametrize("model", MODELS)
def test_submit_rejects_bad_times_and_impossible_requests(model: Model) -> None:
    r = model(KV_TIGHT)
    r.submit(0, 5.0, 10, 10)
    with pytest.raises(ValueError, match="time order"):
        r.submit(1, 4.0, 10, 10)
    r.advance(8.0)
    with pytest.raises(ValueError, match="time order"):
        r.submit(2, 7.0, 10, 10)
    with pytest.raises(ValueError, match="expected >= 1"):
        r.submit(3, 9.0, 0, 10)
    with pytest.raises(NeverPossible, match="exceed the KV cache"):
        r.submit(4, 9.0, kv_cache_tokens(KV_TIGHT), 10)
    with pytest.raises(ValueError, match="before"):
        r.advance(7.0)


def test_a_submitted_future_arrival_is_not_counted_as_waiting() -> None:
    r = FastReplica(V100)
    r.advance(1.0)
    r.submit(0, 1.0, 10, 10)  # arrived now
    r.submit(1, 3.0, 10, 10)  # later
    assert r.waiting == 1
    assert r.next_event_s() == math.nextafter(1.0, math.inf)


# --- building shapes ---------------------------------------------------------------------


def test_engine_shape_for_defaults_to_the_emulators_flags() -> None:
    shape = engine_shape_for("V100")
    assert shape.gpu.name == "V100-32G"
    assert shape.profile == PROFILES["deepseek-r1-distill-qwen-7b"]
    assert shape == EngineShape(shape.gpu, shape.profile)  # every flag at its default
    assert engine_shape_for("Tesla V100-SXM2-32GB") == shape  # DCGM's modelName
    assert engine_shape_for("v100-32g") == shape


def test_engine_shape_for_takes_vllm_flags_and_profiles() -> None:
    shape = engine_shape_for(
        "H100",
        "llama-3-8b",  # an alias
        dtype="float32",
        gpu_memory_utilization=0.8,
        max_num_seqs=64,
        max_num_batched_tokens=8192,
        block_size=32,
        enforce_eager=True,
        slow_factor=2.0,
        max_model_len=8192,
    )
    assert shape.gpu.name == "H100-80G" and shape.profile.name == "llama-3.1-8b"
    assert (shape.dtype_bytes, shape.gpu_memory_utilization, shape.max_num_seqs) == (4, 0.8, 64)
    assert (shape.max_num_batched_tokens, shape.block_size, shape.max_model_len) == (8192, 32, 8192)
    assert shape.enforce_eager and shape.slow_factor == 2.0
    assert engine_shape_for("A10", PROFILES["tiny"]).profile.name == "tiny"


@pytest.mark.parametrize(
    ("gpu", "model", "message"),
    [
        ("A100", "deepseek-r1-distill-qwen-7b", "A100-40G, A100-80G"),  # ambiguous
        ("B200", "deepseek-r1-distill-qwen-7b", "expected one of"),
        ("V100", "gpt-5", "unknown model profile"),
    ],
)
def test_engine_shape_for_names_what_it_expected(gpu: str, model: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        engine_shape_for(gpu, model)


def test_emulator_config_for_the_seeds_command_line() -> None:
    cfg = emulator_config_for(SEED_COMMAND, "V100-32G")
    shape = cfg.shape
    assert (shape.gpu_memory_utilization, shape.enforce_eager, shape.max_model_len) == (
        0.95,
        True,
        32768,
    )
    assert shape.profile.name == "deepseek-r1-distill-qwen-7b"
    # 15.24 GB / 1 GB/s + 20 s init, no graph capture under --enforce-eager.
    assert cfg.load_time_s == pytest.approx(load_time_s(shape)) == pytest.approx(35.24)


def test_make_replica_by_name() -> None:
    assert isinstance(make_replica(V100), FastReplica)
    assert isinstance(make_replica(V100, "step"), StepReplica)
    with pytest.raises(ValidationError, match="expected one of step, fast"):
        make_replica(V100, "exact")

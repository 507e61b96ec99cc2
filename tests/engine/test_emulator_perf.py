"""The pure performance model: arithmetic in comments, decisions asserted."""

from __future__ import annotations

import pytest

from tierserve.engine.perf import (
    BatchScheduler,
    EngineShape,
    Sequence,
    gpu_spec,
    kv_cache_tokens,
    load_time_s,
    simulate_closed_loop,
    step_time_s,
)
from tierserve.engine.perf.cost import kv_cache_bytes
from tierserve.engine.perf.profiles import PROFILES, parse_custom, resolve_profile

QWEN7B = PROFILES["deepseek-r1-distill-qwen-7b"]
LLAMA8B = PROFILES["llama-3.1-8b"]


def shape(gpu: str = "V100-32G", **kw: object) -> EngineShape:
    profile = kw.pop("profile", QWEN7B)
    return EngineShape(gpu_spec(gpu), profile, **kw)  # type: ignore[arg-type]


def test_kv_bytes_per_token_of_the_seed_model() -> None:
    # 28 layers * 2 (K and V) * 4 KV heads * 128 head dim * 2 bytes = 57,344 B
    assert QWEN7B.kv_bytes_per_token(2) == 57_344
    # Llama-3.1-8B: 32 * 2 * 8 * 128 * 2 = 131,072 B
    assert LLAMA8B.kv_bytes_per_token(2) == 131_072


@pytest.mark.parametrize(
    ("gpu", "eager", "expected_ms"),
    [
        # 7.62e9 params * 2 B = 15.24 GB; + 2 tokens of KV (~0.1 MB) is noise.
        # V100: 15.24e9 / (900e9 * 0.8) = 21.17 ms; + 0.5 ms overhead + 1.5 ms eager
        ("V100-32G", True, 23.17),
        ("V100-32G", False, 21.67),
        # H100: 15.24e9 / (3350e9 * 0.8) = 5.69 ms + 0.5 ms
        ("H100-80G", False, 6.19),
        # A100-80G: 15.24e9 / (2039e9 * 0.8) = 9.34 ms + 0.5 ms
        ("A100-80G", False, 9.84),
    ],
)
def test_batch_one_decode_is_memory_bound(gpu: str, eager: bool, expected_ms: float) -> None:
    t = step_time_s(shape(gpu, enforce_eager=eager), 1, 1, 0, 0)
    assert t * 1e3 == pytest.approx(expected_ms, rel=0.01)


def test_large_prefill_is_compute_bound_and_proportional_to_prompt() -> None:
    s = shape("V100-32G")
    # 2048 tokens: 2 * 7.62e9 * 2048 = 31.2 TFLOP (+ attention) / (125e12 * 0.6) = ~0.42 s
    t2048 = step_time_s(s, 0, 0, 2048, 2048 * 2049 / 2)
    assert 0.40 < t2048 < 0.45
    # twice the tokens, about twice the time (attention adds a little more)
    t4096 = step_time_s(s, 0, 0, 4096, 4096 * 4097 / 2)
    assert 1.95 < t4096 / t2048 < 2.2


def test_slow_factor_multiplies_every_step() -> None:
    base = step_time_s(shape(), 4, 400, 0, 0)
    assert step_time_s(shape(slow_factor=3.0), 4, 400, 0, 0) == pytest.approx(3 * base)


def test_kv_cache_capacity_of_the_seed_deployment() -> None:
    s = shape("V100-32G", gpu_memory_utilization=0.95, enforce_eager=True)
    # 32,510 MiB * 0.95 = 32.38 GB; - 15.24 GB weights - activations
    #   (2048 * (2*18944 + 4*3584) * 2 B = 0.21 GB; 256 * 152064 * 4 B = 0.16 GB)
    #   - 0.54 GB non-torch = 16.24 GB; / 57,344 B = 283,2xx tokens (in 16-token blocks)
    assert kv_cache_bytes(s) == pytest.approx(16.24e9, rel=0.01)
    assert kv_cache_tokens(s) == 283_168
    assert kv_cache_tokens(s) % 16 == 0


def test_kv_cache_can_be_too_small_for_max_model_len() -> None:
    # A10 (23,028 MiB) at 0.7: 16.9 GB - 15.24 GB - 0.9 GB = ~0.75 GB -> ~13k tokens
    s = shape("A10-24G", gpu_memory_utilization=0.7)
    assert 0 < kv_cache_tokens(s) < 32768


@pytest.mark.parametrize(
    ("eager", "expected_s"),
    [
        # 15.24 GB / 1 GB/s = 15.24 s + 20 s init (+ 15 s graph capture without eager)
        (True, 35.24),
        (False, 50.24),
    ],
)
def test_load_time(eager: bool, expected_s: float) -> None:
    assert load_time_s(shape(enforce_eager=eager)) == pytest.approx(expected_s, abs=0.01)


def seq(i: int, prompt: int = 10, out: int = 5) -> Sequence:
    return Sequence(f"r{i}", prompt, out, 0.0)


def test_requests_wait_when_max_num_seqs_is_full() -> None:
    sched = BatchScheduler(shape(max_num_seqs=2))
    for i in range(3):
        sched.add(seq(i))
    plan = sched.plan(0.0)
    assert plan is not None
    # two admitted (max-num-seqs 2), one waits
    assert len(plan.admitted) == 2
    assert len(sched.running) == 2 and len(sched.waiting) == 1


def test_requests_wait_when_the_kv_cache_is_full() -> None:
    # 10 blocks of 16 tokens: a 100-token prompt takes ceil(100/16) = 7, the next can't fit
    sched = BatchScheduler(shape(), total_blocks=10)
    sched.add(seq(0, prompt=100))
    sched.add(seq(1, prompt=100))
    plan = sched.plan(0.0)
    assert plan is not None and [s.request_id for s in plan.admitted] == ["r0"]
    assert len(sched.waiting) == 1
    assert sched.kv_usage == pytest.approx(0.7)


def test_decode_preempts_the_newest_sequence_when_blocks_run_out() -> None:
    # 2 blocks: two sequences of 16 tokens fill them; the next decode token needs a 3rd
    sched = BatchScheduler(shape(), total_blocks=2)
    sched.add(seq(0, prompt=16, out=10))
    sched.add(seq(1, prompt=15, out=10))
    first = sched.plan(0.0)
    assert first is not None and len(first.admitted) == 2
    sched.commit(first)
    second = sched.plan(1.0)
    assert second is not None
    assert [s.request_id for s in second.preempted] == ["r1"]
    assert [s.request_id for s in second.decode] == ["r0"]
    assert sched.waiting[0].request_id == "r1" and sched.num_preemptions == 1


def test_long_prompts_are_prefilled_in_chunks_of_the_token_budget() -> None:
    sched = BatchScheduler(shape(max_num_batched_tokens=512))
    sched.add(seq(0, prompt=1200, out=2))
    chunks = []
    for t in range(4):
        plan = sched.plan(float(t))
        assert plan is not None
        chunks.append(sum(n for _, n in plan.prefill))
        events = sched.commit(plan)
        if events:
            break
    # 1200 = 512 + 512 + 176; the first token comes with the last chunk
    assert chunks == [512, 512, 176]
    assert events[0].index == 1


def test_first_token_arrives_after_one_prefill_step_and_each_next_after_one_step() -> None:
    s = shape("V100-32G", enforce_eager=True)
    pred = simulate_closed_loop(s, concurrency=1, prompt_tokens=11, output_tokens=512)
    (req,) = pred.requests
    # memory bound: both prefill (11 tokens) and decode steps take ~23.2 ms
    assert req.ttft_s == pytest.approx(0.0232, rel=0.02)
    assert req.itl_s == pytest.approx(0.0232, rel=0.02)


def test_seed_load_throughput_on_v100() -> None:
    # hey -c 5, 11 prompt tokens, 512 output: 5 sequences share each ~23.3 ms step
    # -> 5 / 0.0233 = ~215 tokens/s
    s = shape("V100-32G", enforce_eager=True, gpu_memory_utilization=0.95)
    pred = simulate_closed_loop(s, concurrency=5, prompt_tokens=11, output_tokens=512)
    assert 205 < pred.output_tokens_per_s < 220


def test_profile_resolution() -> None:
    assert resolve_profile(None, "/model/DeepSeek-R1-Distill-Qwen-7B")[0] is QWEN7B
    profile, warning = resolve_profile(None, "/model/unknown")
    assert profile is QWEN7B and warning is not None
    assert resolve_profile("qwen2-7b", "/x")[0] is QWEN7B
    custom = parse_custom("params=1e9,layers=8,kv_heads=2")
    assert custom.params == 1e9 and custom.layers == 8 and custom.head_dim == 128
    with pytest.raises(ValueError, match="unknown model profile"):
        resolve_profile("gpt-9", "/x")
    with pytest.raises(ValueError, match="unknown keys"):
        parse_custom("wings=2")

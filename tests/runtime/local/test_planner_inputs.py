"""The local runtime's read for the tier planner: rates, mix, TTFT and clock in the
emulator's seconds under a time scale, cold starts from the nodes, capacity from the model."""

from __future__ import annotations

import concurrent.futures

import pytest

from tierserve.examples import SEED_COMMAND
from tierserve.model import InferenceService, Node, Replica, load_documents
from tierserve.policy.planner import PlannerState
from tierserve.runtime.local.cluster import default_nodes
from tierserve.runtime.planner import GENERATED, PROMPT, SUCCESS, PlannerInputs


class Gateway:
    def __init__(self) -> None:
        self.count = 0
        self.ttft_wall: float | None = None

    def arrived(self, namespace: str, service: str) -> int:
        return self.count

    def service_ttft_quantile(
        self, namespace: str, service: str, q: float, window_s: float, now: float
    ) -> float | None:
        return self.ttft_wall


def service(slo: str = "{ttftSeconds: 2, tpotSeconds: 0.1}") -> InferenceService:
    (svc,) = load_documents(
        f"""
apiVersion: serving.tierserve.io/v1alpha1
kind: InferenceService
metadata: {{name: deepseek}}
spec:
  gpus: 1
  maxReplicas: 3
  autoscaling: {{policy: slo, slo: {slo}}}
  command: "{SEED_COMMAND}"
"""
    )
    assert isinstance(svc, InferenceService)
    return svc


def test_time_scale_converts_to_emulated_units() -> None:
    gateway = Gateway()
    counters: dict[str, float] = {}
    inputs = PlannerInputs(gateway, lambda key, now: counters, time_scale=0.2)
    nodes: dict[str, Node] = {n.name: n for n in default_nodes(None)}
    svc = service()
    replica: Replica = Replica.new(
        "deepseek-predictor-x-y",
        "default",
        spec={"service": "deepseek", "requests": {"nvidia.com/gpu": "1"}},
        status={"phase": "Ready", "nodeName": "idc001"},
    )
    counters.update({PROMPT: 0.0, GENERATED: 0.0, SUCCESS: 0.0})
    assert inputs.context(svc, [replica], nodes, [], 1000.0) is None  # starts the window
    # 3 wall seconds later (15 emulated): 7.5 arrivals/s wall = 1.5/s emulated; 10 done,
    # 15,000 prompt and 2,560 generated tokens: the mix 1500 / 256; TTFT 0.1 s wall = 0.5 s
    gateway.count = 22
    gateway.ttft_wall = 0.1
    counters.update({PROMPT: 15000.0, GENERATED: 2560.0, SUCCESS: 10.0})
    for t in (1000.5, 1001.0, 1001.5, 1002.0, 1002.5, 1003.0):
        inputs.sample(svc, t)
    context = inputs.context(svc, [replica], nodes, [], 1003.0)
    assert context is not None
    load = context.load
    assert load.rate == pytest.approx(22 / 3 * 0.2)
    assert (load.prompt_tokens, load.output_tokens) == (1500.0, 256.0)
    assert load.ttft_s == pytest.approx(0.5)
    assert load.window_s == pytest.approx(15.0)
    assert context.now == pytest.approx(1003.0 / 0.2)
    assert callable(context.capacity)
    assert 1.5 < context.capacity(1.0) < 2.6  # one V100 at 1500/256, TTFT 2 s (the model: ~2)
    # no event loop: the model's TTFT for this period's 1.5 req/s is answered at once
    assert load.correction_sample is not None
    measured, predicted = load.correction_sample
    assert measured == pytest.approx(0.5) and 0 < predicted < 2
    idc, cloud = context.tiers
    assert (idc.name, idc.allocated, idc.room) == ("idc", 1, 0)  # the one V100 is taken
    # the virtual node's 45 s cold start is wall seconds here: 45 / 0.2 emulated, + load
    assert cloud.cold_start_s > 45 / 0.2
    assert cloud.price_per_replica_hour == pytest.approx(2.5)


def test_the_capacity_is_computed_at_the_planner_correction() -> None:
    """At correction 1.1 (grid 1.05^2), the model's rate at TTFT 2 / 1.1025 s, which is
    less than at 2 s and more than the rate at 2 s divided by 1.1025 (latency is steep
    near the knee)."""
    gateway = Gateway()
    counters = {PROMPT: 0.0, GENERATED: 0.0, SUCCESS: 0.0}
    inputs = PlannerInputs(gateway, lambda key, now: counters)
    nodes: dict[str, Node] = {n.name: n for n in default_nodes(None)}
    svc = service("{ttftSeconds: 2}")  # no TPOT objective: TPOT 0.1 s would bind first
    replica: Replica = Replica.new(
        "deepseek-predictor-x-y",
        "default",
        spec={"service": "deepseek", "requests": {"nvidia.com/gpu": "1"}},
        status={"phase": "Ready", "nodeName": "idc001"},
    )
    planned = PlannerState(correction=1.1, mix=(1500.0, 256.0))
    assert inputs.context(svc, [replica], nodes, [], 0.0, planned) is None
    gateway.count = 15  # 1 req/s of the mix 1500 / 256
    counters.update({PROMPT: 15000.0, GENERATED: 2560.0, SUCCESS: 10.0})
    context = inputs.context(svc, [replica], nodes, [], 15.0, planned)
    assert context is not None and callable(context.capacity)
    base, tight = context.capacity(1.0), context.capacity(1.1)
    assert base / 1.1025 < tight < base
    assert context.capacity(1.12) == tight  # the same grid point
    assert context.capacity(1.5) == pytest.approx(base / 1.05**8)  # not computed: divided
    assert context.capacity(0.6) == base  # looser, not computed: no more than at 2 s


def test_a_correction_learned_on_another_mix_is_not_computed() -> None:
    """The state's correction 1.1 was learned on the seed's 11-token prompts; the load now
    has 1500-token ones (out of the held mix's band): the planner starts the correction
    over, so only the capacity at the objective itself is computed."""
    gateway = Gateway()
    counters = {PROMPT: 0.0, GENERATED: 0.0, SUCCESS: 0.0}
    inputs = PlannerInputs(gateway, lambda key, now: counters)
    nodes: dict[str, Node] = {n.name: n for n in default_nodes(None)}
    svc = service("{ttftSeconds: 2}")
    replica: Replica = Replica.new(
        "deepseek-predictor-x-y",
        "default",
        spec={"service": "deepseek", "requests": {"nvidia.com/gpu": "1"}},
        status={"phase": "Ready", "nodeName": "idc001"},
    )
    planned = PlannerState(correction=1.1, grid=1.05**2, mix=(11.0, 16.0))
    assert inputs.context(svc, [replica], nodes, [], 0.0, planned) is None
    gateway.count = 15
    counters.update({PROMPT: 15000.0, GENERATED: 2560.0, SUCCESS: 10.0})
    context = inputs.context(svc, [replica], nodes, [], 15.0, planned)
    assert context is not None and callable(context.capacity)
    base = context.capacity(1.0)
    assert context.capacity(1.1) == pytest.approx(base / 1.05**2)  # not computed: divided


def test_the_worker_gets_one_capacity_question_a_service_at_a_time() -> None:
    """A burst's mix moves every period (the smoothed mix walks from 11 to 1500 tokens):
    a question a period would queue in the worker, each answer trailing further behind.
    While one is computed no other is asked; its answer then serves as the last known
    capacity, and the current mix is asked next."""
    gateway = Gateway()
    counters = {PROMPT: 0.0, GENERATED: 0.0, SUCCESS: 0.0}
    inputs = PlannerInputs(gateway, lambda key, now: counters)
    asked: list[tuple[object, ...]] = []
    answers: list[concurrent.futures.Future[float]] = []

    def submit(fn: object, *args: object) -> concurrent.futures.Future[float]:
        asked.append(args)
        answers.append(concurrent.futures.Future())
        return answers[-1]

    inputs._submit = submit  # type: ignore[method-assign,assignment]
    nodes: dict[str, Node] = {n.name: n for n in default_nodes(None)}
    svc = service("{ttftSeconds: 2}")
    replica: Replica = Replica.new(
        "deepseek-predictor-x-y",
        "default",
        spec={"service": "deepseek", "requests": {"nvidia.com/gpu": "1"}},
        status={"phase": "Ready", "nodeName": "idc001"},
    )
    assert inputs.context(svc, [replica], nodes, [], 0.0) is None  # starts the window
    done = 0.0
    for t, prompt in ((15.0, 100.0), (30.0, 1500.0), (45.0, 1500.0)):
        done += 10
        counters.update({PROMPT: counters[PROMPT] + 10 * prompt, GENERATED: 10 * done})
        counters[SUCCESS] = done
        gateway.count += 15
        assert inputs.context(svc, [replica], nodes, [], t) is None  # nothing known yet
    assert len(asked) == 1  # the first mix's question only, while it computes
    answers[0].set_result(2.5)
    counters.update({PROMPT: counters[PROMPT] + 15000.0, SUCCESS: done + 10})
    gateway.count += 15
    context = inputs.context(svc, [replica], nodes, [], 60.0)
    assert context is not None and callable(context.capacity)
    assert context.capacity(1.0) == 2.5  # the last answer, while the new mix is asked
    assert len(asked) == 2 and asked[1][1] != asked[0][1]  # another mix

"""The tier planner's read on Kubernetes, without a cluster: the gateways' ``/metrics``
as the planner's load (arrivals summed over gateways, followed through restarts; TTFT
from bucket deltas), the context from the cluster's objects, and the autoscaler keeping
the size while no gateway answers."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tierserve.errors import ConflictError, NotFoundError
from tierserve.gateway.app import GATEWAY_STATE, create_gateway_app
from tierserve.gateway.table import RouteTable
from tierserve.model.service import InferenceService
from tierserve.policy.autoscaling import AutoscalerConfig
from tierserve.runtime.kube.autoscaler import KubeAutoscaler
from tierserve.runtime.kube.convert import node_from_k8s
from tierserve.runtime.kube.planner import GatewayScrape, KubePlannerInputs, World, ready_since_s
from tierserve.runtime.kube.serving import render
from tierserve.runtime.planner import GENERATED, PROMPT, SUCCESS

Obj = dict[str, Any]
A, B = "http://10.0.0.1:8000/metrics", "http://10.0.0.2:8000/metrics"


class Fetch:
    """Each URL's current ``/metrics`` text (None: it does not answer)."""

    def __init__(self) -> None:
        self.texts: dict[str, str | None] = {}

    async def __call__(self, url: str) -> str | None:
        return self.texts.get(url)


def exposition(arrivals: int, ttfts: list[float] = (), whole: list[float] = ()) -> str:  # type: ignore[assignment]
    """A real gateway's ``/metrics`` after ``arrivals`` requests to default/busy, of
    which ``ttfts`` were streamed (first byte = first token) and ``whole`` were not."""
    metrics = create_gateway_app(RouteTable())[GATEWAY_STATE].metrics
    for _ in range(arrivals):
        metrics.arrived("default", "busy")
    for t in ttfts:
        metrics.finished("default", "busy", "idc", 200, t, t + 1, "r1", streamed=True)
    for t in whole:
        metrics.finished("default", "busy", "idc", 200, t, t, "r1", streamed=False)
    return metrics.render().decode()


def scrape(fetch: Fetch, *urls: str) -> GatewayScrape:
    return GatewayScrape(urls, fetch)


def test_arrivals_sum_over_gateways_from_a_baseline_and_through_a_restart() -> None:
    fetch = Fetch()
    gateways = scrape(fetch, A, B)
    fetch.texts = {A: exposition(100), B: exposition(40)}
    assert asyncio.run(gateways.refresh(0.0)) == (A, B)
    assert gateways.arrived("default", "busy") == 0  # first sight: the baseline
    fetch.texts = {A: exposition(130), B: exposition(50)}
    asyncio.run(gateways.refresh(15.0))
    assert gateways.arrived("default", "busy") == 40  # (130 - 100) + (50 - 40)
    # B restarted (its counter went down to 5): everything it has now is new
    fetch.texts = {A: exposition(160), B: exposition(5)}
    asyncio.run(gateways.refresh(30.0))
    assert gateways.arrived("default", "busy") == 75  # 40 + 30 + 5
    assert gateways.arrived("default", "other") == 0


def test_a_services_first_requests_on_a_known_gateway_count() -> None:
    fetch = Fetch()
    gateways = scrape(fetch, A)
    fetch.texts = {A: exposition(0)}  # the gateway answers, nothing routed to busy yet
    asyncio.run(gateways.refresh(0.0))
    fetch.texts = {A: exposition(30)}  # the series is born with 30
    asyncio.run(gateways.refresh(10.0))
    assert gateways.arrived("default", "busy") == 30


def test_no_gateway_answering_is_known_and_changes_nothing() -> None:
    fetch = Fetch()
    gateways = scrape(fetch, A)
    fetch.texts = {A: exposition(10)}
    asyncio.run(gateways.refresh(0.0))
    fetch.texts = {A: None}
    assert asyncio.run(gateways.refresh(15.0)) == ()
    assert gateways.answered == ()
    assert gateways.arrived("default", "busy") == 0


def test_ttft_quantile_from_bucket_deltas_over_the_window() -> None:
    fetch = Fetch()
    gateways = scrape(fetch, A)
    # before the window: 10 fast streams (and 50 slow whole answers, never a TTFT)
    before = [0.3] * 10
    fetch.texts = {A: exposition(60, before, whole=[20.0] * 50)}
    asyncio.run(gateways.refresh(0.0))
    # in the window: 5 in (1, 2], 5 in (2, 2.5]
    fetch.texts = {A: exposition(70, [*before, *[1.5] * 5, *[2.2] * 5], whole=[20.0] * 50)}
    asyncio.run(gateways.refresh(15.0))
    # deltas: le=1 -> 0, le=2 -> 5, le=2.5 -> 10; p95: rank 9.5 of 10 in (2, 2.5]:
    # 2 + 0.5 * (9.5 - 5) / (10 - 5) = 2.45 (histogram_quantile's interpolation)
    assert gateways.service_ttft_quantile("default", "busy", 0.95, 15.0, 15.0) == pytest.approx(
        2.45
    )
    # p50: rank 5 in (1, 2]: 1 + 1 * (5 - 0) / (5 - 0) = 2
    assert gateways.service_ttft_quantile("default", "busy", 0.5, 15.0, 15.0) == pytest.approx(2.0)
    # a window longer than the scrape has seen: from its first look (the 10 fast ones
    # before it were the baseline)
    assert gateways.service_ttft_quantile("default", "busy", 0.5, 60.0, 15.0) == pytest.approx(2.0)
    # nothing streamed in a window: no measurement
    fetch.texts = {A: exposition(80, [*before, *[1.5] * 5, *[2.2] * 5], whole=[20.0] * 60)}
    asyncio.run(gateways.refresh(30.0))
    assert gateways.service_ttft_quantile("default", "busy", 0.95, 15.0, 30.0) is None


def test_ready_since_is_the_ready_conditions_transition() -> None:
    pod = {"status": {"conditions": [
        {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-12-02T10:00:00Z"},
        {"type": "Ready", "status": "True", "lastTransitionTime": "2026-12-02T10:00:42Z"},
    ]}}  # fmt: skip
    scheduled = pod["status"]["conditions"][0]["lastTransitionTime"]
    assert ready_since_s(pod) is not None
    from tierserve.runtime.kube.convert import timestamp_s

    assert ready_since_s(pod) - timestamp_s(scheduled) == 42  # type: ignore[operator]
    assert ready_since_s({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}) is None


# -- the context from the cluster's objects ---------------------------------------------------

SERVICE = InferenceService.new(
    "busy",
    spec={
        "gpus": 1,
        "replicas": 1,
        "minReplicas": 1,
        "maxReplicas": 3,
        "autoscaling": {"policy": "slo", "slo": {"ttftSeconds": 2, "tpotSeconds": 0.1}},
        "command": "vllm serve /model/m --port 8080 --served-model-name busy",
    },
)


def k8s_node(name: str, gpus: int, virtual: bool = False) -> Obj:
    cap = {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": str(gpus), "pods": "110"}
    labels = {"pool": name}
    if virtual:
        labels["type"] = "virtual-kubelet"
    return {
        "metadata": {
            "name": name,
            "labels": labels,
            "annotations": {"tierserve.io/price-per-gpu-hour": "2.5"} if virtual else {},
        },
        "spec": {},
        "status": {"capacity": cap, "allocatable": cap},
    }


def k8s_pod(name: str, node: str, ip: str, ready: bool = True) -> Obj:
    conditions = [{"type": "PodScheduled", "status": "True",
                   "lastTransitionTime": "2026-12-02T10:00:00Z"}]  # fmt: skip
    if ready:
        conditions.append({"type": "Ready", "status": "True"})
    return {
        "metadata": {
            "name": name,
            "namespace": "default",
            "uid": f"uid-{name}",
            "labels": {"app": "isvc.busy-predictor", "servingName": "busy"},
            "creationTimestamp": "2026-12-02T10:00:00Z",
        },
        "spec": {
            "nodeName": node,
            "containers": [
                {
                    "name": "kserve-container",
                    "ports": [{"containerPort": 8080}],
                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                }
            ],
        },
        "status": {"phase": "Running", "podIP": ip, "conditions": conditions},
    }


def test_the_context_has_the_gateways_rate_the_pods_mix_and_the_tiers() -> None:
    from tierserve.runtime.kube.convert import replica_from_pod

    fetch = Fetch()
    inputs = KubePlannerInputs(scrape(fetch, A))
    nodes = [k8s_node("idc", 2), k8s_node("vk", 8, virtual=True)]
    pod = k8s_pod("busy-predictor-1", "idc", "10.1.0.1")
    inputs.world = World(
        {n["metadata"]["name"]: node_from_k8s(n) for n in nodes}, [], [replica_from_pod(pod)]
    )
    key = ("default", "busy-predictor-1")
    fetch.texts = {A: exposition(0)}
    asyncio.run(inputs.gateways.refresh(0.0))
    inputs.scraped(key, {PROMPT: 0.0, GENERATED: 0.0, SUCCESS: 0.0}, 0.0)
    assert inputs.context(SERVICE, 0.0) is None  # the first look starts the window
    fetch.texts = {A: exposition(30)}
    asyncio.run(inputs.gateways.refresh(10.0))
    inputs.scraped(key, {PROMPT: 2000.0, GENERATED: 5000.0, SUCCESS: 20.0}, 10.0)
    context = inputs.context(SERVICE, 10.0)  # no event loop: capacity computed inline
    assert context is not None
    assert context.load.rate == pytest.approx(3.0)  # 30 arrivals over 10 s
    assert (context.load.prompt_tokens, context.load.output_tokens) == (100.0, 250.0)
    tiers = {t.name: t for t in context.tiers}
    # no policy: the default scheduler's fit over both nodes; the IDC node has 1 GPU left
    assert tiers["idc"].allocated == 1 and tiers["idc"].room == 1
    assert tiers["cloud"].price_per_replica_hour == 2.5
    assert callable(context.capacity) and context.capacity(1.0) > 0
    inputs.close()


# -- the autoscaler keeps the size while no gateway answers -----------------------------------


class FakeApi:
    """The few API paths the autoscaler uses, over in-memory objects."""

    def __init__(self, deployment: Obj, pods: list[Obj], nodes: list[Obj]) -> None:
        self.deployment, self.pods, self.nodes = deployment, pods, nodes
        self.events: dict[str, Obj] = {}
        self.scaled: list[int] = []

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Any = None,
        content_type: str = "application/json",
    ) -> Obj:
        if method == "GET" and path == "/apis/apps/v1/deployments":
            return {"items": [self.deployment]}
        if method == "GET" and path in ("/api/v1/pods", "/api/v1/namespaces/default/pods"):
            return {"items": self.pods}
        if method == "GET" and path == "/api/v1/nodes":
            return {"items": self.nodes}
        if method == "GET" and path.startswith("/apis/scheduling."):
            raise NotFoundError(path)  # no ResourcePolicy CRD
        if method == "PATCH" and path.endswith("/scale"):
            self.scaled.append(body["spec"]["replicas"])
            return {}
        if method == "PATCH" and path.endswith("/deployments/busy-predictor"):
            self.deployment["metadata"]["annotations"].update(body["metadata"]["annotations"])
            return {}
        if method == "POST" and path.endswith("/events"):
            name = body["metadata"].get("name") or f"gen-{len(self.events)}"
            if name in self.events:
                raise ConflictError(name)
            self.events[name] = body
            return body
        if method == "GET" and "/events/" in path:
            return self.events[path.rsplit("/", 1)[1]]
        if method == "PATCH" and "/events/" in path:
            self.events[path.rsplit("/", 1)[1]].update(body)
            return {}
        raise AssertionError(f"unexpected {method} {path}")

    def watch(self, path: str, resource_version: str) -> Any:
        raise AssertionError("no watch")


async def test_no_gateway_answering_keeps_the_size_and_says_why_once() -> None:
    (deployment, _) = render(
        SERVICE.model_copy(
            update={"spec": SERVICE.spec.model_copy(
                update={"annotations": {"autoscaling.tierserve.io/autoscaler": "tierserve"}}
            )}
        ),
        raw=True,
    )  # fmt: skip
    deployment["metadata"]["uid"] = "d1"
    pods = [k8s_pod("busy-predictor-1", "idc", "10.1.0.1")]
    api = FakeApi(deployment, pods, [k8s_node("idc", 1), k8s_node("vk", 8, virtual=True)])
    clock = iter(float(t) for t in range(0, 1000, 15))
    scaler = KubeAutoscaler(
        api, AutoscalerConfig(period_s=15.0), clock=lambda: next(clock), gateways=(A,)
    )
    fetch = Fetch()  # the gateway never answers; nor do the pods
    scaler.fetch = fetch  # type: ignore[assignment]
    scaler.planner.gateways.fetch = fetch
    for _ in range(3):
        assert await scaler.step() == 1
    assert api.scaled == []  # kept: a rate of 0 is not what the gateways said
    (warning,) = api.events.values()
    assert warning["reason"] == "NoGatewayLoad" and warning["type"] == "Warning"
    assert warning["message"].startswith(f"no gateway answered ({A}): keeping the size")
    # the gateway is back: the warning is said again only after another spell
    fetch.texts[A] = exposition(5)
    assert await scaler.step() == 1
    assert scaler._blind == set()
    scaler.planner.close()

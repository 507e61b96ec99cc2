"""tierserve's custom metrics API without a cluster: fake pods, fake scrapes (the
emulator's exposition), the real aiohttp application."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from tierserve.errors import NotFoundError
from tierserve.policy.metricsapi import parse_selector
from tierserve.runtime.kube.client import KubeApiError
from tierserve.runtime.kube.custom_metrics import MetricsApi, scrape_target
from tierserve.runtime.kube.frontproxy import USER_KEY, Access, SubjectAccessReviews, User

Obj = dict[str, Any]
API = "/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/pods"
APP = "isvc.deepseek-predictor"


def exposition(sm_util: float, running: int) -> str:
    return f"""# HELP DCGM_CUSTOM_PROCESS_SM_UTIL SM utilization of the process on the GPU (in %).
# TYPE DCGM_CUSTOM_PROCESS_SM_UTIL gauge
DCGM_CUSTOM_PROCESS_SM_UTIL{{gpu="0",pid="41",pod=""}} {sm_util}
# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{{engine="0",model_name="deepseek-r1"}} {running}
# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE vllm:time_to_first_token_seconds histogram
vllm:time_to_first_token_seconds_bucket{{le="+Inf",model_name="deepseek-r1"}} 3.0
vllm:time_to_first_token_seconds_sum{{model_name="deepseek-r1"}} 0.5
vllm:time_to_first_token_seconds_count{{model_name="deepseek-r1"}} 3.0
"""


def pod(name: str, ip: str | None, phase: str = "Running", **extra: Any) -> Obj:
    obj: Obj = {
        "metadata": {"name": name, "namespace": "default", "labels": {"app": APP}},
        "spec": {"containers": [{"name": "kserve-container",
                                 "ports": [{"containerPort": 8080}]}]},
        "status": {"phase": phase, **({"podIP": ip} if ip else {})},
    }  # fmt: skip
    for key, value in extra.items():
        obj["metadata"][key] = value
    return obj


class FakePods:
    def __init__(self, pods: list[Obj]) -> None:
        self.pods = pods
        self.asked: list[str] = []

    async def list(self, namespace: str, selector: str) -> list[Obj]:
        self.asked.append(selector)
        wanted = parse_selector(selector)
        return [p for p in self.pods if wanted.matches(p["metadata"]["labels"])]

    async def get(self, namespace: str, name: str) -> Obj:
        if name.startswith("_"):
            raise KubeApiError(400, f"invalid pod name {name!r}")
        if name == "down":
            raise KubeApiError(500, "etcdserver: request timed out")
        for p in self.pods:
            if p["metadata"]["name"] == name:
                return p
        raise NotFoundError(name)


PAGES = {
    "http://127.0.0.101:8080/metrics": exposition(82.5, 4),
    "http://127.0.0.102:8080/metrics": exposition(20, 1),
    "http://127.0.0.104:9100/stats": exposition(50, 2),
    # 127.0.0.103 does not answer
}


async def fetch(url: str) -> str | None:
    return PAGES.get(url)


PODS = [
    pod("busy", "127.0.0.101"),
    pod("quiet", "127.0.0.102"),
    pod("silent", "127.0.0.103"),
    pod("pending", None, phase="Pending"),
    pod("leaving", "127.0.0.105", deletionTimestamp="2026-01-01T00:00:00Z"),
    pod("annotated", "127.0.0.104",
        annotations={"prometheus.io/port": "9100", "prometheus.io/path": "stats"}),
]  # fmt: skip


@pytest.fixture
async def client() -> AsyncIterator[TestClient[Any, Any]]:
    api = MetricsApi(FakePods(PODS), fetch, front_proxy=False)
    async with TestClient(TestServer(api.app())) as c:
        yield c


async def test_values_of_running_pods_that_answer(client: TestClient[Any, Any]) -> None:
    resp = await client.get(
        f"{API}/*/DCGM_CUSTOM_PROCESS_SM_UTIL", params={"labelSelector": f"app={APP}"}
    )
    assert resp.status == 200
    doc = await resp.json()
    assert doc["kind"] == "MetricValueList"
    got = {i["describedObject"]["name"]: i["value"] for i in doc["items"]}
    # pending (no IP), leaving (being deleted) and silent (no answer) are left out: missing
    assert got == {"annotated": "50", "busy": "82500m", "quiet": "20"}
    resp = await client.get(f"{API}/*/vllm:num_requests_running")
    got = {i["describedObject"]["name"]: i["value"] for i in (await resp.json())["items"]}
    assert got == {"annotated": "2", "busy": "4", "quiet": "1"}


async def test_one_pod_and_a_metric_selector(client: TestClient[Any, Any]) -> None:
    resp = await client.get(f"{API}/busy/DCGM_CUSTOM_PROCESS_SM_UTIL",
                            params={"metricLabelSelector": "gpu=0"})  # fmt: skip
    item = (await resp.json())["items"][0]
    assert item["value"] == "82500m"
    assert item["metric"] == {"name": "DCGM_CUSTOM_PROCESS_SM_UTIL",
                              "selector": {"matchLabels": {"gpu": "0"}}}  # fmt: skip
    resp = await client.get(f"{API}/busy/DCGM_CUSTOM_PROCESS_SM_UTIL",
                            params={"metricLabelSelector": "gpu=1"})  # fmt: skip
    assert (await resp.json())["items"] == []
    resp = await client.get(f"{API}/nobody/DCGM_CUSTOM_PROCESS_SM_UTIL")
    assert resp.status == 404
    assert "pod default/nobody not found" in (await resp.json())["message"]


async def test_clear_errors_never_a_500(client: TestClient[Any, Any]) -> None:
    resp = await client.get(f"{API}/*/vllm:time_to_first_token_seconds_bucket")
    assert resp.status == 404
    body = await resp.json()
    assert body["kind"] == "Status" and body["reason"] == "NotFound"
    assert "'vllm:time_to_first_token_seconds_bucket' is not served" in body["message"]
    resp = await client.get(f"{API}/*/DCGM_CUSTOM_PROCESS_SM_UTIL",
                            params={"labelSelector": "app in (x"})  # fmt: skip
    assert resp.status == 400
    assert (await resp.json())["message"].startswith("labelSelector: ")
    resp = await client.get(f"{API}/*/DCGM_CUSTOM_PROCESS_SM_UTIL",
                            params={"metricLabelSelector": "=1"})  # fmt: skip
    assert resp.status == 400
    assert "metricLabelSelector" in (await resp.json())["message"]
    resp = await client.get(f"{API}/_bad/DCGM_CUSTOM_PROCESS_SM_UTIL")
    assert resp.status == 400
    assert "invalid pod name '_bad'" in (await resp.json())["message"]
    resp = await client.get(f"{API}/down/DCGM_CUSTOM_PROCESS_SM_UTIL")
    assert resp.status == 503
    assert "cannot read pods in default: etcdserver" in (await resp.json())["message"]
    resp = await client.get("/apis/custom.metrics.k8s.io/v1beta2/namespaces/default/services/x/m")
    assert resp.status == 404
    assert "serves pods' metrics only" in (await resp.json())["message"]


async def test_discovery(client: TestClient[Any, Any]) -> None:
    listed = await (await client.get("/apis/custom.metrics.k8s.io/v1beta2")).json()
    assert "pods/DCGM_CUSTOM_PROCESS_SM_UTIL" in [r["name"] for r in listed["resources"]]
    group = await (await client.get("/apis/custom.metrics.k8s.io")).json()
    assert group["preferredVersion"]["groupVersion"] == "custom.metrics.k8s.io/v1beta2"


async def test_without_the_front_proxys_certificate_nothing_but_probes() -> None:
    api = MetricsApi(FakePods(PODS), fetch)  # the check on; a plain connection has no cert
    async with TestClient(TestServer(api.app())) as c:
        resp = await c.get(f"{API}/*/DCGM_CUSTOM_PROCESS_SM_UTIL",
                           headers={"X-Remote-User": "system:admin"})  # fmt: skip
        assert resp.status == 401
        assert "client certificate" in (await resp.json())["message"]
        assert (await c.get("/healthz")).status == 200
        assert (await c.get("/readyz")).status == 200


def test_scrape_target_port_and_path() -> None:
    assert scrape_target(PODS[0], 8000) == "http://127.0.0.101:8080/metrics"
    assert scrape_target(PODS[5], 8000) == "http://127.0.0.104:9100/stats"
    bare = pod("bare", "127.0.0.9")
    bare["spec"]["containers"][0]["ports"] = []
    assert scrape_target(bare, 8000) == "http://127.0.0.9:8000/metrics"
    assert scrape_target(pod("v6", "fd00::5"), 8000) == "http://[fd00::5]:8080/metrics"
    assert scrape_target(PODS[3], 8000) is None


class FakeAuthorizer:
    def __init__(self) -> None:
        self.asked: list[tuple[User, Access]] = []

    async def allowed(self, user: User, access: Access) -> tuple[bool, str]:
        self.asked.append((user, access))
        return user.name == "system:kube-controller-manager", "" if user.name else "no user"


async def test_metric_values_only_for_users_the_authorizer_allows() -> None:
    authorizer = FakeAuthorizer()
    api = MetricsApi(FakePods(PODS), fetch, front_proxy=False, authorizer=authorizer)
    app = api.app()

    @web.middleware
    async def as_user(request: web.Request, handler: Any) -> Any:
        # what the front-proxy check leaves for the handlers
        request[USER_KEY] = User(request.headers.get("X-Test-User", ""), ("g1",))
        return await handler(request)

    app.middlewares.insert(0, as_user)
    async with TestClient(TestServer(app)) as c:
        url = f"{API}/*/DCGM_CUSTOM_PROCESS_SM_UTIL"
        resp = await c.get(url, headers={"X-Test-User": "system:kube-controller-manager"})
        assert resp.status == 200
        resp = await c.get(url, headers={"X-Test-User": "intruder"})
        assert resp.status == 403
        assert (
            "user 'intruder' cannot get resource \"pods/DCGM_CUSTOM_PROCESS_SM_UTIL\""
            in (await resp.json())["message"]
        )
        # discovery is not a resource: any user the front proxy vouches for may read it
        assert (await c.get("/apis/custom.metrics.k8s.io/v1beta2",
                            headers={"X-Test-User": "intruder"})).status == 200  # fmt: skip
    assert authorizer.asked[0] == (
        User("system:kube-controller-manager", ("g1",)),
        Access("custom.metrics.k8s.io", "v1beta2", "default", "pods", "*",
               "DCGM_CUSTOM_PROCESS_SM_UTIL"),
    )  # fmt: skip


class FakeReviews:
    """The API server's SubjectAccessReview endpoint: allows members of system:masters."""

    def __init__(self) -> None:
        self.reviews: list[Obj] = []

    async def create(self, path: str, body: Obj) -> Obj:
        assert path == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
        self.reviews.append(body)
        allowed = "system:masters" in body["spec"]["groups"]
        return {**body, "status": {"allowed": allowed, "reason": "" if allowed else "no RBAC"}}


async def test_access_reviews_are_asked_once_per_ttl() -> None:
    kube, now = FakeReviews(), [0.0]
    reviews = SubjectAccessReviews(kube, ttl_s=10, clock=lambda: now[0])  # type: ignore[arg-type]
    access = Access("custom.metrics.k8s.io", "v1beta2", "default", "pods", "*", "m")
    hpa = User("system:kube-controller-manager", ("system:masters",))
    assert await reviews.allowed(hpa, access) == (True, "")
    assert await reviews.allowed(User("nobody"), access) == (False, "no RBAC")
    now[0] = 9.0
    assert await reviews.allowed(hpa, access) == (True, "")
    assert len(kube.reviews) == 2  # the HPA's question asked once in 10 s
    now[0] = 10.5
    await reviews.allowed(hpa, access)
    assert len(kube.reviews) == 3
    assert kube.reviews[0]["spec"]["resourceAttributes"] == {
        "group": "custom.metrics.k8s.io", "version": "v1beta2", "namespace": "default",
        "resource": "pods", "name": "*", "subresource": "m", "verb": "get",
    }  # fmt: skip


def in_flight(rows: list[tuple[str, str, float]]) -> str:
    """A gateway's exposition of ``tierserve_gateway_replica_in_flight``."""
    lines = ["# TYPE tierserve_gateway_replica_in_flight gauge"]
    for namespace, replica, value in rows:
        labels = f'namespace="{namespace}",replica="{replica}",service="deepseek",tier="idc"'
        lines.append(f"tierserve_gateway_replica_in_flight{{{labels}}} {value}")
    return "\n".join(lines) + "\n"


GATEWAY_PAGES = {
    "http://127.0.0.50:8000/metrics": in_flight([("default", "busy", 3), ("other", "quiet", 9)]),
    "http://127.0.0.51:8000/metrics": in_flight([("default", "busy", 2), ("default", "quiet", 1)]),
    # 127.0.0.52 does not answer
}


async def gateway_fetch(url: str) -> str | None:
    return GATEWAY_PAGES.get(url, PAGES.get(url))


async def test_the_gateways_in_flight_requests_per_pod_summed_over_gateways() -> None:
    gateways = [*GATEWAY_PAGES, "http://127.0.0.52:8000/metrics"]
    api = MetricsApi(FakePods(PODS), gateway_fetch, front_proxy=False, gateways=gateways)
    async with TestClient(TestServer(api.app())) as client:
        discovery = await (await client.get("/apis/custom.metrics.k8s.io/v1beta2")).json()
        assert "pods/tierserve:inflight_requests" in [r["name"] for r in discovery["resources"]]
        resp = await client.get(f"{API}/*/tierserve:inflight_requests")
        assert resp.status == 200
        got = {i["describedObject"]["name"]: i["value"] for i in (await resp.json())["items"]}
    # busy: 3 + 2 from two gateways; quiet: 1 (the other namespace's 9 is not its);
    # a Running pod no gateway routed to has 0 in flight; pending and leaving pods none
    assert got == {"annotated": "0", "busy": "5", "quiet": "1", "silent": "0"}


async def test_without_gateways_the_signal_is_not_served() -> None:
    api = MetricsApi(FakePods(PODS), fetch, front_proxy=False)
    async with TestClient(TestServer(api.app())) as client:
        resp = await client.get(f"{API}/*/tierserve:inflight_requests")
        assert resp.status == 404

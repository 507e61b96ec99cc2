"""The stock HPA on tierserve's custom metrics API, on the testbed.

``tierserve kube metrics`` runs as an aggregated API server behind the APIService
``v1beta2.custom.metrics.k8s.io`` (an ExternalName Service to 127.0.0.1: the testbed has
no cluster network); the node agent runs the seed service's pods (the emulator, each on
its own loopback address); requests to the pods drive their DCGM-style SM utilisation
over the target, and the real kube-controller-manager HPA controller scales the
Deployment out, exactly as arena renders the HPA. The testbed's controller-manager syncs
HPAs every second (``HPA_SYNC_PERIOD``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import ssl
import subprocess
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from kubestack import Stack, until
from test_scheduling import PODS, cleanup, create_policy, extender_sees_policies

from tierserve.errors import NotFoundError
from tierserve.model.service import InferenceService
from tierserve.runtime.kube import manifests, serving
from tierserve.runtime.kube.apply import apply_all
from tierserve.runtime.kube.client import KubeApiError, KubeClient, load_config
from tierserve.testing.kube import (
    FRONT_PROXY_CLIENT,
    free_port,
    issue_certificate,
    register_metrics_api,
    unregister_metrics_api,
)
from tierserve.testing.nodeagent import FakeNode, NodeAgent

pytestmark = [pytest.mark.kube, pytest.mark.slow]

NS = manifests.ManifestOptions.namespace
SVC = manifests.METRICS_NAME
API = "/apis/custom.metrics.k8s.io/v1beta2"
METRIC = "DCGM_CUSTOM_PROCESS_SM_UTIL"
IDC = FakeNode("metrics-idc", {"pool": "metrics-idc"}, gpus=1)
VIRTUAL = FakeNode("metrics-vk", {"metrics-vk": "yes"}, gpus=8, virtual=True, cold_start_s=0.5)
APP = "isvc.gpuload-predictor"


@pytest.fixture(scope="module")
def metrics_api(stack: Stack) -> Iterator[int]:
    """``tierserve kube metrics`` on 127.0.0.1, registered as the APIService (removed
    afterwards: an unavailable aggregated API would slow every discovery)."""
    pki = stack.pki
    issue_certificate(pki, "metrics-api", SVC, server=True, dns=[f"{SVC}.{NS}.svc"])
    port = free_port()
    stack._spawn(
        "metrics",
        [
            "metrics", f"--listen=127.0.0.1:{port}",
            f"--tls-cert={pki / 'metrics-api.crt'}", f"--tls-key={pki / 'metrics-api.key'}",
            "--verbose",
        ],
    )  # fmt: skip
    # no --requestheader-client-ca: as in the manifests, the front proxy's CA and allowed
    # names come from kube-system/extension-apiserver-authentication
    ctx = ssl.create_default_context(cafile=str(stack.plane.ca))
    deadline = time.monotonic() + 30
    while True:
        url = f"https://127.0.0.1:{port}/healthz"
        with contextlib.suppress(OSError), urllib.request.urlopen(url, context=ctx):
            break
        if time.monotonic() > deadline or stack.procs["metrics"].poll() is not None:
            raise RuntimeError("metrics API did not start:\n" + stack.log("metrics"))
        time.sleep(0.2)

    async def with_kube(action: Any) -> None:
        async with KubeClient(load_config(stack.kubeconfig)) as kube:
            await action(kube)

    try:
        asyncio.run(with_kube(lambda kube: register_metrics_api(kube, port, stack.plane.ca)))
        yield port
    finally:
        asyncio.run(with_kube(unregister_metrics_api))
        stack.stop("metrics")


@pytest.fixture
async def kube(stack: Stack) -> AsyncIterator[KubeClient]:
    async with KubeClient(load_config(stack.kubeconfig)) as client:
        yield client
        await cleanup(client)


def _client(stack: Stack, cert: str | None) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(stack.plane.ca))
    if cert is not None:
        ctx.load_cert_chain(stack.pki / f"{cert}.crt", stack.pki / f"{cert}.key")
    return ctx


async def test_discovery_errors_and_the_front_proxy_check(
    metrics_api: int, stack: Stack, kube: KubeClient
) -> None:
    # through the kube-apiserver (the aggregation layer), as kubectl get --raw does
    listed = await kube.get(API)
    assert listed["kind"] == "APIResourceList"
    assert f"pods/{METRIC}" in [r["name"] for r in listed["resources"]]
    assert "pods/vllm:num_requests_running" in [r["name"] for r in listed["resources"]]
    with pytest.raises(NotFoundError, match="'nope' is not served"):
        await kube.get(f"{API}/namespaces/default/pods/*/nope")
    with pytest.raises(KubeApiError, match="labelSelector: 'app in' is not a selector term") as bad:
        await kube.get(f"{API}/namespaces/default/pods/*/{METRIC}", {"labelSelector": "app in"})
    assert bad.value.status == 400
    empty = await kube.get(f"{API}/namespaces/default/pods/*/{METRIC}", {"labelSelector": "a=b"})
    assert empty["kind"] == "MetricValueList" and empty["items"] == []

    if shutil.which("kubectl"):  # the real thing, when it is installed
        raw = subprocess.run(
            ["kubectl", "--kubeconfig", stack.kubeconfig, "get", "--raw",
             f"{API}/namespaces/default/pods/*/{METRIC}?labelSelector=app%3Dnone"],
            capture_output=True, text=True, timeout=30, check=True,
        )  # fmt: skip
        assert json.loads(raw.stdout)["kind"] == "MetricValueList"
        bad = subprocess.run(
            ["kubectl", "--kubeconfig", stack.kubeconfig, "get", "--raw",
             f"{API}/namespaces/default/pods/*/nope"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert bad.returncode != 0 and "'nope' is not served" in bad.stderr, bad.stderr

    # directly: only the front proxy's certificate (the one allowed name), and then
    # only with a user
    issue_certificate(stack.pki, "intruder", "intruder", server=False, ca="front-proxy-ca")
    url = f"https://127.0.0.1:{metrics_api}{API}/namespaces/default/pods/*/{METRIC}"
    async with aiohttp.ClientSession() as session:
        for cert, headers, code in (
            (None, {"X-Remote-User": "admin"}, 401),  # no client certificate
            ("intruder", {"X-Remote-User": "admin"}, 403),  # front-proxy CA, not allowed
            (FRONT_PROXY_CLIENT, {}, 401),  # no user
            # the front proxy's key does not lend its rights: a SubjectAccessReview decides
            (FRONT_PROXY_CLIENT, {"X-Remote-User": "nobody"}, 403),
            (FRONT_PROXY_CLIENT, {"X-Remote-User": "admin"}, 403),  # admin's rights: its group
            (
                FRONT_PROXY_CLIENT,
                {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"},
                200,
            ),
        ):
            async with session.get(url, ssl=_client(stack, cert), headers=headers) as resp:
                assert resp.status == code, (cert, headers, await resp.text())
        # a certificate of another CA (the cluster's) does not pass the handshake
        with pytest.raises(aiohttp.ClientError):
            async with session.get(url, ssl=_client(stack, "scheduler-client")) as resp:
                pass
        async with session.get(f"https://127.0.0.1:{metrics_api}/readyz",
                               ssl=_client(stack, None)) as resp:  # fmt: skip
            assert resp.status == 200


def seed_service() -> InferenceService:
    """The seed's arena flags (``--scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL
    --scale-target=50 --min-replicas=1 --max-replicas=3``); the emulator's utilisation
    window is 2 s instead of 30 s so the test is quick."""
    return InferenceService.new(
        "gpuload",
        spec={
            "gpus": 1, "cpu": "4", "memory": "12Gi", "minReplicas": 1, "maxReplicas": 3,
            "scaleMetric": METRIC, "scaleTarget": 50,
            "command": "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080 "
            "--served-model-name deepseek-r1 --dcgm-window-s 2",
            "readinessProbe": {"httpGet": {"path": "/health"}, "periodSeconds": 1},
        },
    )  # fmt: skip


async def _ready_ips(kube: KubeClient) -> list[str]:
    pods = (await kube.get(PODS, {"labelSelector": f"app={APP}"})).get("items") or []
    return [
        p["status"]["podIP"]
        for p in pods
        if any(c["type"] == "Ready" and c["status"] == "True"
               for c in (p.get("status") or {}).get("conditions") or [])
    ]  # fmt: skip


async def _load(kube: KubeClient, per_pod: int, stop: asyncio.Event) -> None:
    """Keep ``per_pod`` chat completions in flight to every Ready pod (loopback only)."""
    chat = {"model": "deepseek-r1", "max_tokens": 48,
            "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
    workers: dict[str, list[asyncio.Task[None]]] = {}

    async def worker(session: aiohttp.ClientSession, ip: str) -> None:
        assert ip.startswith("127.")
        while not stop.is_set():
            with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                async with session.post(f"http://{ip}:8080/v1/chat/completions", json=chat) as r:
                    await r.read()

    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30)) as session:
        while not stop.is_set():
            for ip in await _ready_ips(kube):
                if ip not in workers:
                    workers[ip] = [asyncio.create_task(worker(session, ip)) for _ in range(per_pod)]
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
        tasks = [t for ts in workers.values() for t in ts]
        await asyncio.wait(tasks, timeout=35)


async def test_stock_hpa_scales_the_seed_service_on_gpu_utilisation(
    metrics_api: int, stack: Stack, kube: KubeClient
) -> None:
    agent = NodeAgent(kube, [IDC, VIRTUAL], stack.plane.logs / "metrics-agent", first_ip=150)
    await agent.start()
    stop = asyncio.Event()
    load: asyncio.Task[None] | None = None
    try:
        await create_policy(
            kube,
            {
                "metadata": {"name": "gpuload"},
                "spec": {
                    "selector": {"app": APP},
                    "units": [
                        {"resource": "ecs", "nodeSelector": {"pool": "metrics-idc"}},
                        {"resource": "eci", "nodeSelector": {"metrics-vk": "yes"}},
                    ],
                },
            },
        )
        await extender_sees_policies(kube, stack)
        service = seed_service()
        objects = serving.render(service, raw=True, policies=await serving.cluster_policies(
            kube, "default"))  # fmt: skip
        hpa = next(o for o in objects if o["kind"] == "HorizontalPodAutoscaler")
        assert hpa == serving.hpa(service)  # arena's HPA, as rendered
        objects[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 2
        await apply_all(kube, objects)

        await until(lambda: _ready_ips(kube), 60)
        path = f"{API}/namespaces/default/pods/*/{METRIC}"
        idle = await kube.get(path, {"labelSelector": f"app={APP}"})
        assert [i["describedObject"]["kind"] for i in idle["items"]] == ["Pod"]
        assert idle["items"][0]["metric"] == {"name": METRIC, "selector": None}
        running = await kube.get(
            f"{API}/namespaces/default/pods/*/vllm:num_requests_running",
            {"labelSelector": f"app={APP}"},
        )
        assert running["items"][0]["value"] == "0"

        began = time.monotonic()
        load = asyncio.create_task(_load(kube, 6, stop))
        scale = "/apis/apps/v1/namespaces/default/deployments/gpuload-predictor/scale"
        seen: dict[int, float] = {}

        async def replicas(at_least: int) -> object:
            n = int((await kube.get(scale))["spec"].get("replicas") or 0)
            for k in range(2, n + 1):
                seen.setdefault(k, time.monotonic() - began)
            return n >= at_least

        try:
            await until(lambda: replicas(2), 60, 0.1)
            await until(lambda: replicas(3), 90, 0.1)
        except AssertionError as exc:
            status = (await kube.get(
                "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/gpuload-hpa"
            )).get("status")  # fmt: skip
            values = await kube.get(path, {"labelSelector": f"app={APP}"})
            raise AssertionError(f"{exc}\nHPA status: {status}\nmetrics: {values}") from exc

        status = (await kube.get(
            "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/gpuload-hpa"
        ))["status"]  # fmt: skip
        current = status["currentMetrics"][0]["pods"]
        assert current["metric"]["name"] == METRIC
        assert status["desiredReplicas"] == 3
        # the stock controller's own words
        events = (await kube.get("/api/v1/namespaces/default/events")).get("items") or []
        rescaled = [
            e["message"] for e in events
            if e["involvedObject"]["name"] == "gpuload-hpa" and e["reason"] == "SuccessfulRescale"
        ]  # fmt: skip
        assert f"New size: 2; reason: pods metric {METRIC} above target" in rescaled, rescaled
        loaded = await kube.get(path, {"labelSelector": f"app={APP}"})
        print(
            f"\nHPA reaction from load start: 1->2 in {seen[2]:.1f} s, 1->3 in {seen[3]:.1f} s;"
            f" current {current['current']}; metrics "
            + ", ".join(f"{i['describedObject']['name']}={i['value']}" for i in loaded["items"])
        )

        # the load stops: after the testbed's 10 s scale-in stabilisation the HPA goes back
        # to 1, and the deletion costs make the ReplicaSet remove the virtual node's pods
        stop.set()
        await load
        ended = time.monotonic()

        async def back_to_one() -> object:
            pods = (await kube.get(PODS, {"labelSelector": f"app={APP}"})).get("items") or []
            alive = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            return len(alive) == 1 and alive

        left: Any = await until(back_to_one, 60, 0.2)
        assert left[0]["spec"]["nodeName"] == IDC.name, "a cloud replica outlived the IDC one"
        print(f"back to 1 replica {time.monotonic() - ended:.1f} s after the load stopped")
    finally:
        stop.set()
        if load is not None:
            with contextlib.suppress(Exception):
                await load
        await agent.stop()

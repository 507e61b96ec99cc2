"""The tier-aware gateway on Kubernetes: ``tierserve gateway --discovery kubernetes`` routes
the real ``openai`` client, by KServe-style Host, to pods that really run (node agent),
IDC first; holds a request while the service has no Ready pod; drops a pod being
deleted from new requests."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
from typing import Any

import openai
import pytest
from kubestack import Stack, idc_first_policy, ready_pods, until
from test_scheduling import PODS, cleanup, create_policy, extender_sees_policies

from tierserve.model.service import InferenceService
from tierserve.runtime.kube import serving
from tierserve.runtime.kube.apply import apply_all
from tierserve.runtime.kube.client import KubeClient, load_config
from tierserve.runtime.kube.discovery import pod_routes
from tierserve.testing.nodeagent import FakeNode, NodeAgent

pytestmark = [pytest.mark.kube, pytest.mark.slow]

IDC = FakeNode("gw-idc", {"pool": "gw-idc"}, gpus=1)
VIRTUAL = FakeNode("gw-vk", {"agent": "gw"}, gpus=8, virtual=True, cold_start_s=0.5)
APP = "isvc.gwdemo-predictor"
HOST = "gwdemo-default.example.com"
SCALE = "/apis/apps/v1/namespaces/default/deployments/gwdemo-predictor/scale"


def test_routes_from_pods_ready_first_terminating_drained_tier_from_node() -> None:
    def pod(name: str, node: str, ready: bool, deleting: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name, "namespace": "default",
                                "labels": {"servingName": "svc"}}  # fmt: skip
        if deleting:
            meta["deletionTimestamp"] = "2026-12-02T00:00:00Z"
        return {
            "metadata": meta,
            "spec": {"nodeName": node, "containers": [{
                "command": ["sh", "-c", "vllm serve /m --served-model-name m1"],
                "ports": [{"containerPort": 8080}]}]},
            "status": {"phase": "Running", "podIP": f"127.0.0.{len(name)}",
                       "conditions": [{"type": "Ready", "status": str(ready)}]},
        }  # fmt: skip

    nodes = {"vk": {"metadata": {"name": "vk", "labels": {"type": "virtual-kubelet"}}},
             "idc": {"metadata": {"name": "idc", "labels": {}}}}  # fmt: skip
    (route,) = pod_routes(
        [pod("a", "idc", True), pod("bb", "vk", True), pod("ccc", "idc", False),
         pod("dddd", "idc", True, deleting=True)],
        nodes,
    )  # fmt: skip
    assert route.host == "svc-default.example.com" and route.model_names == ("m1",)
    got = {b.replica: (b.tier, b.unit, b.ready, b.url) for b in route.backends}
    assert got == {
        "a": ("idc", 0, True, "http://127.0.0.1:8080"),
        "bb": ("cloud", 1, True, "http://127.0.0.2:8080"),
        "dddd": ("idc", 0, False, "http://127.0.0.4:8080"),  # draining: no new requests
    }


@pytest.fixture
async def kube(stack: Stack) -> Any:
    async with KubeClient(load_config(stack.kubeconfig)) as client:
        yield client
        await cleanup(client)


async def test_the_gateway_routes_openai_clients_to_running_pods_idc_first(
    kube: KubeClient, stack: Stack
) -> None:
    agent = NodeAgent(kube, [IDC, VIRTUAL], stack.plane.logs / "agent-gateway")
    await agent.start()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tierserve.cli.main", "gateway", "--port", "0",
        "--discovery", "kubernetes", "--kubeconfig", stack.kubeconfig,
        "--routes-interval-s", "0.2", "--hold-timeout-s", "60",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        match = re.search(r"listening on (http://\S+)", line)
        assert match, line
        url = match.group(1)
        await create_policy(
            kube, idc_first_policy("gwdemo", APP, {"pool": "gw-idc"}, {"agent": "gw"})
        )
        await extender_sees_policies(kube, stack)
        service = InferenceService.new(
            "gwdemo",
            spec={
                "gpus": 1,
                "replicas": 2,
                "command": "vllm serve /model/m --port 8080 --served-model-name gwdemo",
                "readinessProbe": {"httpGet": {"path": "/health"}, "periodSeconds": 1},
            },
        )
        objects = serving.render(
            service, raw=True, policies=await serving.cluster_policies(kube, "default")
        )
        objects[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 2
        await apply_all(kube, objects)

        async def two() -> object:
            pods = await ready_pods(kube, APP)
            return len(pods) == 2 and pods

        pods: Any = await until(two, 60)
        names = {p["spec"]["nodeName"]: p["metadata"]["name"] for p in pods}
        client = openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key="none", default_headers={"Host": HOST}
        )
        # one request at a time: the least-loaded tie goes to the IDC replica every time
        served = []
        for _ in range(4):
            raw = await client.chat.completions.with_raw_response.create(
                model="gwdemo", max_tokens=4, messages=[{"role": "user", "content": "hi"}]
            )
            assert raw.parse().choices[0].message.content
            served.append(raw.headers["x-tierserve-replica"])
        assert set(served) == {names["gw-idc"]}, served

        # no Ready pod: the request is held, then served once one is Ready again
        await kube.patch(SCALE, {"spec": {"replicas": 0}})

        async def none_left() -> object:
            listed = (await kube.get(PODS, {"labelSelector": f"app={APP}"})).get("items")
            return not listed

        await until(none_left, 30)
        held = asyncio.create_task(
            client.chat.completions.create(
                model="gwdemo", max_tokens=4, messages=[{"role": "user", "content": "back?"}]
            )
        )
        await asyncio.sleep(1.0)
        assert not held.done(), "answered with no pod to serve it"
        await kube.patch(SCALE, {"spec": {"replicas": 1}})
        answer = await asyncio.wait_for(held, 60)
        assert answer.choices[0].message.content
        await client.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), 15)
        await agent.stop()

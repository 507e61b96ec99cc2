"""tierserve's autoscaler on the real control plane, with pods that really run: a service
rendered with ``--autoscaler tierserve`` scales out on a vLLM metric it scrapes from the
pods, spills to the virtual node, and scales back in with the cloud pods going first."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import aiohttp
import pytest
from kubestack import Stack, idc_first_policy, ready_pods, until
from test_scheduling import PODS, cleanup, create_policy, extender_sees_policies

from tierserve.model.service import InferenceService
from tierserve.runtime.kube import serving
from tierserve.runtime.kube.apply import apply_all
from tierserve.runtime.kube.client import KubeClient, load_config
from tierserve.testing.nodeagent import FakeNode, NodeAgent

pytestmark = [pytest.mark.kube, pytest.mark.slow]

IDC = FakeNode("as-idc", {"pool": "as-idc"}, gpus=1)
VIRTUAL = FakeNode("as-vk", {"agent": "as"}, gpus=8, virtual=True, cold_start_s=1.0)
APP = "isvc.busy-predictor"
DEPLOYMENT = "/apis/apps/v1/namespaces/default/deployments/busy-predictor"


@pytest.fixture
async def kube(stack: Stack) -> Any:
    async with KubeClient(load_config(stack.kubeconfig)) as client:
        yield client
        await cleanup(client)


async def chat(session: aiohttp.ClientSession, ip: str) -> None:
    body = {"model": "busy", "max_tokens": 2000, "stream": True,
            "messages": [{"role": "user", "content": "write a long story"}]}  # fmt: skip
    with contextlib.suppress(aiohttp.ClientError):
        async with session.post(f"http://{ip}:8080/v1/chat/completions", json=body) as resp:
            async for _ in resp.content.iter_any():
                pass


async def test_tierserves_autoscaler_scales_on_scraped_metrics_and_gives_the_cloud_back_first(
    kube: KubeClient, stack: Stack
) -> None:
    agent = NodeAgent(kube, [IDC, VIRTUAL], stack.plane.logs / "agent-autoscaler")
    await agent.start()
    stack._spawn("autoscaler", ["autoscaler", "--period=1", "--downscale-stabilization=4"])
    load: list[asyncio.Task[None]] = []
    try:
        await create_policy(
            kube, idc_first_policy("busy", APP, {"pool": "as-idc"}, {"agent": "as"})
        )
        await extender_sees_policies(kube, stack)
        service = InferenceService.new(
            "busy",
            spec={
                "gpus": 1,
                "replicas": 1,
                "minReplicas": 1,
                "maxReplicas": 3,
                "scaleMetric": "vllm:num_requests_running",
                "scaleTarget": 1,
                "annotations": {serving.AUTOSCALER_ANNOTATION: serving.TIERSERVE},
                "command": "vllm serve /model/m --port 8080 --served-model-name busy",
                "readinessProbe": {"httpGet": {"path": "/health"}, "periodSeconds": 1},
            },
        )
        objects = serving.render(
            service, raw=True, policies=await serving.cluster_policies(kube, "default")
        )
        assert [o["kind"] for o in objects] == ["Deployment", "Service"]  # no HPA object
        objects[0]["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 2
        await apply_all(kube, objects)

        async def one() -> object:
            pods = await ready_pods(kube, APP)
            return len(pods) == 1 and pods

        first: Any = await until(one, 60)
        assert first[0]["spec"]["nodeName"] == "as-idc"
        ip = first[0]["status"]["podIP"]

        # six long streams on the one replica: 6 running against a target of 1 a replica
        session = aiohttp.ClientSession()
        load = [asyncio.create_task(chat(session, ip)) for _ in range(6)]

        async def scaled_out() -> object:
            pods = await ready_pods(kube, APP)
            where = sorted(p["spec"]["nodeName"] for p in pods)
            return where == ["as-idc", "as-vk", "as-vk"] and where

        await until(scaled_out, 60)

        async def scaled_to_three() -> object:
            messages = await _rescales(kube)
            wanted = "New size: 3; reason: pods metric vllm:num_requests_running above target"
            return any(m.startswith(wanted) for m in messages) or False

        await until(scaled_to_three, 15)
        deployment = await kube.get(DEPLOYMENT)
        assert "autoscaling.tierserve.io/state" in deployment["metadata"]["annotations"]

        # the load ends: after the stabilisation window, back to 1, the IDC replica kept
        for task in load:
            task.cancel()
        await asyncio.gather(*load, return_exceptions=True)
        await session.close()

        async def back_to_one() -> object:
            pods = (await kube.get(PODS, {"labelSelector": f"app={APP}"})).get("items") or []
            alive = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            return len(alive) == 1 and alive

        left: Any = await until(back_to_one, 60)
        assert left[0]["spec"]["nodeName"] == "as-idc", "a cloud replica outlived the IDC one"

        async def said_so() -> object:  # the Event follows the scale write
            return any(m.startswith("New size: 1") for m in await _rescales(kube))

        await until(said_so, 15)
    finally:
        for task in load:
            task.cancel()
        stack.stop("autoscaler")
        await agent.stop()


async def _rescales(kube: KubeClient) -> list[str]:
    events = await kube.get(
        "/api/v1/namespaces/default/events", {"fieldSelector": "reason=SuccessfulRescale"}
    )
    return [
        e["message"]
        for e in events.get("items") or []
        if e["involvedObject"]["name"] == "busy-predictor"
    ]

"""The tier planner on Kubernetes, end to end, with pods that really run: ``serve kserve
--backend kubernetes --autoscaler slo`` renders the service for tierserve's autoscaler;
load through the gateway (``--discovery kubernetes``) makes the planner — on the
gateway's arrivals and TTFT, the pods' token mix, the cluster's tiers and the engine
model's capacity — scale out on the IDC first, then on the virtual node within the cloud
budget, and give the cloud back first when the load stops.

Engines are the emulator at time scale 0.25 (everything the planner reads is converted to
emulated seconds), with ``--max-num-seqs 2`` so that one replica carries ~0.5 req/s at
the SLO and a few requests a second need four replicas.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubestack import Stack, idc_first_policy, start_gateway, until
from test_scheduling import PODS, cleanup, create_policy, extender_sees_policies

from tierserve.runtime.kube.client import MERGE_PATCH, KubeClient, load_config
from tierserve.testing.nodeagent import FakeNode, NodeAgent

pytestmark = [pytest.mark.kube, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[3]
SCALE = 0.25
IDC = FakeNode("pl-idc", {"pool": "pl-idc"}, gpus=2, gpu_model="V100-32G")
VIRTUAL = FakeNode(
    "pl-vk", {"agent": "pl"}, gpus=8, virtual=True, cold_start_s=1.0, gpu_model="V100-32G"
)
APP = "isvc.busy-predictor"
HOST = "busy-default.example.com"
DEPLOYMENT = "/apis/apps/v1/namespaces/default/deployments/busy-predictor"
COMMAND = (
    f"vllm serve /model/m --port 8080 --served-model-name busy --max-num-seqs 2 "
    f"--time-scale {SCALE:g}"
)
BODY = {"model": "busy", "max_tokens": 100, "stream": True,
        "messages": [{"role": "user", "content": "Say this is a test!"}]}  # fmt: skip


@pytest.fixture
async def kube(stack: Stack) -> Any:
    async with KubeClient(load_config(stack.kubeconfig)) as client:
        yield client
        await cleanup(client)


async def chat(session: aiohttp.ClientSession, url: str, codes: list[int]) -> None:
    with contextlib.suppress(aiohttp.ClientError):
        async with session.post(
            f"{url}/v1/chat/completions", json=BODY, headers={"Host": HOST}
        ) as resp:
            async for _ in resp.content.iter_any():
                pass
            codes.append(resp.status)


async def open_loop(url: str, rate_per_s: float, codes: list[int], stop: asyncio.Event) -> None:
    """Requests at an even ``rate_per_s`` (wall) until ``stop``, each streamed to its end."""
    async with aiohttp.ClientSession() as session:
        tasks: set[asyncio.Task[None]] = set()
        started = time.monotonic()
        n = 0
        while not stop.is_set():
            task = asyncio.create_task(chat(session, url, codes))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            n += 1
            delay = started + n / rate_per_s - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), max(0.0, delay))
        await asyncio.gather(*tasks, return_exceptions=True)


async def alive_by_node(kube: KubeClient) -> dict[str, int]:
    pods = (await kube.get(PODS, {"labelSelector": f"app={APP}"})).get("items") or []
    out: dict[str, int] = {}
    for p in pods:
        if not p["metadata"].get("deletionTimestamp"):
            out[p["spec"].get("nodeName") or "-"] = out.get(p["spec"].get("nodeName") or "-", 0) + 1
    return out


async def ready_by_node(kube: KubeClient) -> dict[str, int]:
    pods = (await kube.get(PODS, {"labelSelector": f"app={APP}"})).get("items") or []
    out: dict[str, int] = {}
    for p in pods:
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in (p.get("status") or {}).get("conditions") or [])  # fmt: skip
        if ready and not p["metadata"].get("deletionTimestamp"):
            out[p["spec"]["nodeName"]] = out.get(p["spec"]["nodeName"], 0) + 1
    return out


async def events(kube: KubeClient, reason: str) -> list[dict[str, Any]]:
    listed = await kube.get(
        "/api/v1/namespaces/default/events", {"fieldSelector": f"reason={reason}"}
    )
    return [e for e in listed.get("items") or [] if e["involvedObject"]["name"] == "busy-predictor"]


async def test_the_planner_scales_out_idc_first_then_cloud_within_budget_and_back(
    kube: KubeClient, stack: Stack
) -> None:
    agent = NodeAgent(kube, [IDC, VIRTUAL], stack.plane.logs / "agent-planner", first_ip=180)
    await agent.start()
    price = {"metadata": {"annotations": {"tierserve.io/price-per-gpu-hour": "2.5"}}}
    await kube.patch(f"/api/v1/nodes/{VIRTUAL.name}", price, MERGE_PATCH)
    gateway: asyncio.subprocess.Process | None = None
    stop = asyncio.Event()
    load: asyncio.Task[None] | None = None
    codes: list[int] = []
    try:
        await create_policy(
            kube, idc_first_policy("busy", APP, {"pool": "pl-idc"}, {"agent": "pl"})
        )
        await extender_sees_policies(kube, stack)
        gateway, url = await start_gateway(stack)
        stack._spawn(
            "planner-autoscaler",
            ["autoscaler", "--period=1", f"--gateway-url={url}/metrics",
             f"--emulator-time-scale={SCALE:g}"],
        )  # fmt: skip
        served = subprocess.run(
            [sys.executable, "-m", "tierserve.cli.main", "serve", "kserve",
             "--backend", "kubernetes", "--kubeconfig", stack.kubeconfig, "--raw",
             "--name=busy", "--gpus=1", "--min-replicas=1", "--max-replicas=4",
             "--autoscaler", "slo", "--slo", "ttft=2s,tpot=100ms",
             "--cloud-budget-per-hour", "3", "--readiness-probe-path", "/health", COMMAND],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert served.returncode == 0, served.stderr
        assert "horizontalpodautoscaler" not in served.stdout, served.stdout
        started = time.monotonic()

        async def one_on_idc() -> object:
            return await ready_by_node(kube) == {IDC.name: 1}

        await until(one_on_idc, 60)

        # A few requests first: the planner learns the token mix (and its capacity)
        # before the load, as it would from any traffic in a real cluster.
        async with aiohttp.ClientSession() as session:
            for _ in range(4):
                await chat(session, url, codes)

        async def capacity_known() -> object:
            deployment = await kube.get(DEPLOYMENT)
            plan = (deployment["metadata"].get("annotations") or {}).get(
                "autoscaling.tierserve.io/plan"
            )
            return plan is not None and json.loads(plan)["capacity"] > 0.2 and json.loads(plan)

        plan: Any = await until(capacity_known, 60)
        print(f"before the load: {plan}")

        # 8 req/s of wall time = 2 emulated req/s: four replicas' worth; the IDC holds two,
        # the budget (3/h, 2.5/h a cloud replica) pays for one on the virtual node
        load_started = time.monotonic()
        load = asyncio.create_task(open_loop(url, 8.0, codes, stop))

        async def spilled() -> object:
            return await ready_by_node(kube) == {IDC.name: 2, VIRTUAL.name: 1}

        await until(spilled, 60)
        spilled_after = time.monotonic() - load_started

        async def rescaled_out() -> object:
            messages = [e["message"] for e in await events(kube, "SuccessfulRescale")]
            said = [m for m in messages if re.match(r"New size: 3 \(idc 2, cloud 1\); reason: ", m)]
            return said or False

        (message, *_) = await until(rescaled_out, 15)  # type: ignore[misc]
        assert "one replica carries" in message or "SLO breach" in message, message
        # 2 emulated req/s need 4 (ceil(2 / 0.55)): the budget holds the fourth back (the
        # first period may have read a little less, needing 3: then the cap comes next)

        async def budget_warned() -> object:
            return await events(kube, "BudgetBlocked")

        (warning,) = await until(budget_warned, 15)  # type: ignore[misc]
        assert warning["type"] == "Warning"
        assert "cloud capped by the budget of 3/h" in warning["message"]
        assert await alive_by_node(kube) == {IDC.name: 2, VIRTUAL.name: 1}  # never more
        deployment = await kube.get(DEPLOYMENT)
        assert "autoscaling.tierserve.io/state" in deployment["metadata"]["annotations"]

        # while the load lasts the size holds: no flapping, nothing beyond the budget
        held_until = time.monotonic() + 8
        while time.monotonic() < held_until:
            assert await alive_by_node(kube) == {IDC.name: 2, VIRTUAL.name: 1}
            await asyncio.sleep(0.5)

        # the load stops: the cloud replica goes; the IDC ones stay (an idle IDC GPU
        # costs nothing; the planner keeps them 5 emulated minutes)
        stop.set()
        load_stopped = time.monotonic()
        await load

        async def cloud_given_back() -> object:
            return await alive_by_node(kube) == {IDC.name: 2}

        await until(cloud_given_back, 40)
        back_after = time.monotonic() - load_stopped

        async def said_so() -> object:
            messages = [e["message"] for e in await events(kube, "SuccessfulRescale")]
            return any(m.startswith("New size: 2 (idc 2, cloud 0); reason: ") for m in messages)

        await until(said_so, 15)
        assert codes and all(c == 200 for c in codes), sorted(set(codes))
        said = sorted(await events(kube, "SuccessfulRescale"), key=lambda e: e["lastTimestamp"])
        for e in said:
            print(f"  {e['lastTimestamp']} {e['message']}")
        print(
            f"planner on Kubernetes: 1 -> 3 (idc 2, cloud 1, budget-capped) Ready "
            f"{spilled_after:.1f} s after the load began; cloud given back {back_after:.1f} s "
            f"after it stopped; {len(codes)} requests, all 200; "
            f"{time.monotonic() - started:.0f} s in all"
        )
    finally:
        stop.set()
        if load is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(load, 30)
        stack.stop("planner-autoscaler")
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            await asyncio.wait_for(gateway.wait(), 15)
        await agent.stop()


RB_IDC = FakeNode("rb-idc", {"pool": "rb-idc"}, gpus=1, gpu_model="V100-32G")
RB_VK = FakeNode("rb-vk", {"agent": "rb"}, gpus=8, virtual=True, cold_start_s=1.0,
                 gpu_model="V100-32G")  # fmt: skip


async def test_a_cloud_replica_moves_back_to_the_idc_when_it_frees_up(
    kube: KubeClient, stack: Stack
) -> None:
    """The IDC node's GPU is held by another pod, so the planner's one replica runs on the
    virtual node; that pod goes → the autoscaler moves the replica back make before break
    (N + 1 with the new pod on the IDC, then N: the ReplicaSet removes the cloud pod by
    its deletion cost), and the service never has no Ready replica."""
    agent = NodeAgent(kube, [RB_IDC, RB_VK], stack.plane.logs / "agent-rebalance", first_ip=220)
    await agent.start()
    try:
        await create_policy(
            kube, idc_first_policy("busy", APP, {"pool": "rb-idc"}, {"agent": "rb"})
        )
        await extender_sees_policies(kube, stack)
        holder = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "gpu-holder", "namespace": "default"},
            "spec": {"nodeName": RB_IDC.name, "terminationGracePeriodSeconds": 0,
                     "containers": [{"name": "main", "image": "local",
                                     "command": ["sleep", "600"],
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        }  # fmt: skip
        await kube.create(PODS, holder)
        stack._spawn("rebalance-autoscaler", ["autoscaler", "--period=1"])
        served = subprocess.run(
            [sys.executable, "-m", "tierserve.cli.main", "serve", "kserve",
             "--backend", "kubernetes", "--kubeconfig", stack.kubeconfig, "--raw",
             "--name=busy", "--gpus=1", "--min-replicas=1", "--max-replicas=2",
             "--autoscaler", "slo", "--slo", "ttft=2s", "--readiness-probe-path", "/health",
             COMMAND],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert served.returncode == 0, served.stderr

        async def on_the_cloud() -> object:
            return await ready_by_node(kube) == {RB_VK.name: 1}

        await until(on_the_cloud, 60)
        (cloud_pod,) = [
            p["metadata"]["name"]
            for p in (await kube.get(PODS, {"labelSelector": f"app={APP}"}))["items"]
        ]
        moved_at = time.monotonic()
        await kube.delete(f"{PODS}/gpu-holder", {"gracePeriodSeconds": "0"})
        ready_counts: list[int] = []

        async def back_on_the_idc() -> object:
            ready = await ready_by_node(kube)
            ready_counts.append(sum(ready.values()))
            return await alive_by_node(kube) == {RB_IDC.name: 1} and ready == {RB_IDC.name: 1}

        await until(back_on_the_idc, 60, every_s=0.1)
        took = time.monotonic() - moved_at
        assert min(ready_counts) >= 1, "the service had no Ready replica during the move"
        (event,) = await events(kube, "Rebalance")
        assert event["message"].startswith(f"Moving replica {cloud_pod} from the cloud to the IDC")
        deployment = await kube.get(DEPLOYMENT)
        assert deployment["spec"]["replicas"] == 1

        async def move_cleared() -> object:
            annotations = (await kube.get(DEPLOYMENT))["metadata"].get("annotations") or {}
            return "autoscaling.tierserve.io/move" not in annotations

        await until(move_cleared, 15)
        print(f"moved back to the IDC {took:.1f} s after the GPU freed up; Ready replicas "
              f"during the move: {min(ready_counts)}-{max(ready_counts)}")  # fmt: skip
    finally:
        stack.stop("rebalance-autoscaler")
        await agent.stop()

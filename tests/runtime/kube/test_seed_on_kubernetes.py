"""The seed walkthrough on Kubernetes, end to end, with pods that really run.

The seed's Secret, PV, PVC and ResourcePolicy applied verbatim (ACK's group), ``tierserve
serve kserve --backend kubernetes`` with the seed's arena flags (``--raw``: the testbed
has no KServe controller), the gateway (``--discovery kubernetes``) at 127.0.0.1, the
seed's curl, then ``hey -z ... -c 5`` with the seed's body: the stock
kube-controller-manager HPA, on ``DCGM_CUSTOM_PROCESS_SM_UTIL`` from tierserve's custom
metrics API, scales 1 -> 3; the two new pods land on the virtual node through the
extender, run and serve; the load stops and scale-in removes the virtual pods first.

The node agent plays the kubelet for ``idc001`` (one GPU, the seed's node pool) and the
virtual node (taint, 1 s cold start); the engines are the emulator with a 2 s
utilisation window (30 s by default) so the HPA reacts in seconds, not minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from kubestack import Stack, start_gateway, until
from test_custom_metrics import metrics_api  # noqa: F401  (the module's fixture)
from test_scheduling import IDC, PODS, VIRTUAL, cleanup, extender_sees_policies, seed_policy_yaml

from tierserve.errors import NotFoundError
from tierserve.runtime.kube.client import KubeClient, load_config
from tierserve.runtime.kube.crd import ACK_GROUP, policies_path
from tierserve.testing.nodeagent import FakeNode, NodeAgent

pytestmark = [
    pytest.mark.kube,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("hey") is None, reason="needs hey (apt: hey)"),
    pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl"),
]

ROOT = Path(__file__).resolve().parents[3]
SEED = Path("/work/shared/seed/yaml")
EXAMPLES = ROOT / "tierserve/examples/seed"
APP = "isvc.deepseek-predictor"
HOST = "deepseek-default.example.com"
BODY = json.dumps(
    {"model": "deepseek-r1", "messages": [{"role": "user", "content": "Say this is a test!"}],
     "max_tokens": 512, "temperature": 0.7, "top_p": 0.9, "seed": 10}
)  # fmt: skip
ARENA = [
    "--name=deepseek",
    "--annotation=k8s.aliyun.com/eci-use-specs=ecs.gn6e-c12g1.3xlarge",
    "--annotation=k8s.aliyun.com/eci-vswitch=vsw-*********,vsw-*********",
    "--image=kube-ai-registry.cn-shanghai.cr.aliyuncs.com/kube-ai/vllm:v0.6.6",
    "--gpus=1", "--cpu=4", "--memory=12Gi",
    "--scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL", "--scale-target=50",
    "--min-replicas=1", "--max-replicas=3",
    "--data=llm-model:/model/DeepSeek-R1-Distill-Qwen-7B",
    "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080 --trust-remote-code "
    "--served-model-name deepseek-r1 --max-model-len 32768 --gpu-memory-utilization 0.95 "
    "--enforce-eager --dtype=half",
]  # fmt: skip
NODES = [
    FakeNode(IDC, {"alibabacloud.com/nodepool-id": "np-idc"}, gpus=1, dcgm_window_s=2),
    FakeNode(VIRTUAL, {}, gpus=100, virtual=True, cold_start_s=1.0, dcgm_window_s=2),
]


def seed_file(name: str) -> str:
    path = SEED / name if (SEED / name).exists() else EXAMPLES / name
    return path.read_text()


@pytest.fixture
async def kube(stack: Stack) -> Any:
    async with KubeClient(load_config(stack.kubeconfig)) as client:
        yield client
        await cleanup(client)
        for path in ("/api/v1/namespaces/default/persistentvolumeclaims/llm-model",
                     "/api/v1/persistentvolumes/llm-model",
                     "/api/v1/namespaces/default/secrets/oss-secret"):  # fmt: skip
            with contextlib.suppress(NotFoundError):
                await client.delete(path)


async def apply_seed_yaml(kube: KubeClient, stack: Stack) -> None:
    """``kubectl apply -f`` of the seed's files (through the API when kubectl is absent)."""
    texts = [seed_file("model-storage.yaml"), seed_policy_yaml()]
    if shutil.which("kubectl"):
        for text in texts:
            done = subprocess.run(
                ["kubectl", "--kubeconfig", stack.kubeconfig, "apply", "-f", "-"],
                input=text.encode(), capture_output=True, check=False,
            )  # fmt: skip
            assert done.returncode == 0, done.stderr.decode()
        return
    paths = {"Secret": "/api/v1/namespaces/default/secrets",
             "PersistentVolume": "/api/v1/persistentvolumes",
             "PersistentVolumeClaim": "/api/v1/namespaces/default/persistentvolumeclaims",
             "ResourcePolicy": policies_path(ACK_GROUP, "default")}  # fmt: skip
    for text in texts:
        for doc in yaml.safe_load_all(text):
            if doc:
                await kube.create(paths[doc["kind"]], doc)


async def pods_by_node(kube: KubeClient) -> dict[str, int]:
    pods = (await kube.get(PODS, {"labelSelector": f"app={APP}"})).get("items") or []
    out: dict[str, int] = {}
    for p in pods:
        ready = any(c["type"] == "Ready" and c["status"] == "True"
                    for c in (p.get("status") or {}).get("conditions") or [])  # fmt: skip
        if ready and not p["metadata"].get("deletionTimestamp"):
            node = p["spec"]["nodeName"]
            out[node] = out.get(node, 0) + 1
    return out


async def test_the_seed_walkthrough_on_kubernetes(
    metrics_api: int,  # noqa: F811
    kube: KubeClient,
    stack: Stack,
) -> None:
    agent = NodeAgent(kube, NODES, stack.plane.logs / "agent-seed")
    await agent.start()
    gateway: asyncio.subprocess.Process | None = None
    try:
        await apply_seed_yaml(kube, stack)
        await extender_sees_policies(kube, stack)
        served = subprocess.run(
            [sys.executable, "-m", "tierserve.cli.main", "serve", "kserve",
             "--backend", "kubernetes", "--kubeconfig", stack.kubeconfig, "--raw", *ARENA],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert served.returncode == 0, served.stderr
        assert "horizontalpodautoscaler.autoscaling/deepseek-hpa created" in served.stdout

        async def one_on_idc() -> object:
            return await pods_by_node(kube) == {IDC: 1}

        await until(one_on_idc, 90)

        gateway, url = await start_gateway(stack)

        # the seed's curl, as written (the gateway at 127.0.0.1 instead of the ingress)
        curl = await asyncio.create_subprocess_exec(
            "curl", "-s", "-H", f"Host: {HOST}", "-H", "Content-Type: application/json",
            f"{url}/v1/chat/completions", "-d", BODY, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(curl.communicate(), 120)
        answer = json.loads(out)
        assert answer["object"] == "chat.completion" and answer["model"] == "deepseek-r1"
        assert answer["usage"]["completion_tokens"] == 512, answer["usage"]

        # the seed's load: hey -z ... -c 5 with the seed's body
        started = time.monotonic()
        hey = await asyncio.create_subprocess_exec(
            "hey", "-z", "40s", "-c", "5", "-m", "POST", "-host", HOST,
            "-H", "Content-Type: application/json", "-d", BODY,
            f"{url}/v1/chat/completions", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip

        async def spilled() -> object:
            return await pods_by_node(kube) == {IDC: 1, VIRTUAL: 2}

        await until(spilled, 60)
        scaled_after = time.monotonic() - started
        hpa = await kube.get(
            "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers/deepseek-hpa"
        )
        assert hpa["status"]["desiredReplicas"] == 3, hpa["status"]
        report, _ = await asyncio.wait_for(hey.communicate(), 120)
        text = report.decode()
        assert re.search(r"\[200\]\s+\d+ responses", text), text
        assert "Error distribution" not in text, text
        # the cloud replicas served part of it
        async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
            metrics = await resp.text()
        cloud = [
            float(m.group(1))
            for m in re.finditer(
                r'tierserve_gateway_requests_total\{[^}]*tier="cloud"[^}]*\} (\S+)', metrics
            )
        ]
        assert sum(cloud) > 0, "no request was served on the virtual node"

        # load stops: the HPA scales in, the virtual pods go first
        async def back_to_idc() -> object:
            pods = (await kube.get(PODS, {"labelSelector": f"app={APP}"})).get("items") or []
            alive = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
            return len(alive) == 1 and alive[0]["spec"]["nodeName"] == IDC

        await until(back_to_idc, 90)
        print(f"seed on Kubernetes: 1 -> 3 (2 on the virtual node, Ready) {scaled_after:.1f} s "
              "after the load started")  # fmt: skip
    finally:
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            await asyncio.wait_for(gateway.wait(), 15)
        await agent.stop(unregister=False)  # the session's nodes stay for the other tests


DEPLOYMENT = "/apis/apps/v1/namespaces/default/deployments/deepseek-predictor"
PLAN = "autoscaling.tierserve.io/plan"
SLO_ARENA = [a for a in ARENA if not a.startswith(("--scale-metric", "--scale-target"))] + [
    "--autoscaler",
    "slo",
    "--slo",
    "ttft=2s,tpot=100ms",
]
"""The seed's arena flags with the tier planner instead of the SM-utilisation HPA."""
V100_NODES = [
    FakeNode(IDC, {"alibabacloud.com/nodepool-id": "np-idc"}, gpus=1, gpu_model="V100-32G"),
    FakeNode(VIRTUAL, {}, gpus=100, virtual=True, cold_start_s=1.0, gpu_model="V100-32G"),
]
"""The seed's V100 (``ecs.gn6e-c12g1.3xlarge``): the planner's capacity model is the
V100's (a Kubernetes Node does not say its GPU model)."""


async def test_the_seed_walkthrough_on_kubernetes_with_the_tier_planner(
    kube: KubeClient, stack: Stack
) -> None:
    """A second run with ``--autoscaler slo``: the same YAML, flags and load; the tier
    planner (tierserve's autoscaler, on the gateway's arrivals) sees the five streams
    need one V100 replica at TTFT 2 s and rents no cloud GPU, where the SM-utilisation
    HPA scaled to 3 with two on the virtual node."""
    agent = NodeAgent(kube, V100_NODES, stack.plane.logs / "agent-seed-slo")
    await agent.start()
    gateway: asyncio.subprocess.Process | None = None
    try:
        await apply_seed_yaml(kube, stack)
        await extender_sees_policies(kube, stack)
        gateway, url = await start_gateway(stack)
        # the autoscaler as deployed: its defaults (the HPA's 15 s period)
        stack._spawn("seed-autoscaler", ["autoscaler", f"--gateway-url={url}/metrics"])
        served = subprocess.run(
            [sys.executable, "-m", "tierserve.cli.main", "serve", "kserve",
             "--backend", "kubernetes", "--kubeconfig", stack.kubeconfig, "--raw", *SLO_ARENA],
            capture_output=True, text=True, timeout=60, cwd=ROOT,
        )  # fmt: skip
        assert served.returncode == 0, served.stderr
        assert "horizontalpodautoscaler" not in served.stdout, served.stdout

        async def one_on_idc() -> object:
            return await pods_by_node(kube) == {IDC: 1}

        await until(one_on_idc, 90)

        async def routed() -> object:  # the gateway's watch has the Ready pod
            async with aiohttp.ClientSession() as session, session.get(f"{url}/v1/models") as r:
                return "deepseek-r1" in await r.text()

        await until(routed, 30)
        # the seed's curl first, as in the walkthrough: the planner learns the token mix
        # from the engine's own counters (and its capacity for it) before the load
        curl = await asyncio.create_subprocess_exec(
            "curl", "-s", "-H", f"Host: {HOST}", "-H", "Content-Type: application/json",
            f"{url}/v1/chat/completions", "-d", BODY, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await asyncio.wait_for(curl.communicate(), 120)
        assert json.loads(out).get("usage", {}).get("completion_tokens") == 512, out

        async def capacity_known() -> object:
            deployment = await kube.get(DEPLOYMENT)
            text = (deployment["metadata"].get("annotations") or {}).get(PLAN)
            return text is not None and json.loads(text)["capacity"] > 2

        await until(capacity_known, 60)
        hey = await asyncio.create_subprocess_exec(
            "hey", "-z", "40s", "-c", "5", "-m", "POST", "-host", HOST,
            "-H", "Content-Type: application/json", "-d", BODY,
            f"{url}/v1/chat/completions", stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        sizes: set[int] = set()
        plans: dict[float, Any] = {}  # each period's plan during the load

        async def watch() -> None:
            while hey.returncode is None:
                pods = (await kube.get(PODS, {"labelSelector": f"app={APP}"})).get("items") or []
                sizes.add(len(pods))
                deployment = await kube.get(DEPLOYMENT)
                plan = json.loads(deployment["metadata"]["annotations"][PLAN])
                plans[plan["atS"]] = plan
                await asyncio.sleep(0.5)

        watcher = asyncio.create_task(watch())
        report, _ = await asyncio.wait_for(hey.communicate(), 120)
        await watcher
        text = report.decode()
        assert re.search(r"\[200\]\s+\d+ responses", text), text
        assert "Error distribution" not in text, text
        events = await kube.get(
            "/api/v1/namespaces/default/events", {"fieldSelector": "reason=SuccessfulRescale"}
        )
        # this run's Deployment only: the shared testbed keeps the Events of earlier
        # tests' objects of the same name (other UIDs) for an hour
        uid = (await kube.get(DEPLOYMENT))["metadata"]["uid"]
        said = [
            e["message"]
            for e in events.get("items") or []
            if (e.get("involvedObject") or {}).get("uid") == uid
        ]
        assert sizes == {1}, f"pods seen: {sizes}; rescales: {said}"
        assert not said, said
        busiest = max(plans.values(), key=lambda p: p["forecastRate"])
        assert all(
            p["desired"] == 1 and p["perTier"] == {"idc": 1, "cloud": 0} for p in plans.values()
        )
        needs_one = r"(load|forecast) \d+\.\d\d req/s (in \d+ s )?needs 1: one replica carries"
        assert re.match(needs_one, busiest["reason"]), busiest
        async with aiohttp.ClientSession() as session, session.get(f"{url}/metrics") as resp:
            metrics = await resp.text()
        assert 'tier="cloud"' not in metrics
        print(
            f"seed on Kubernetes, tier planner: 1 replica, 0 cloud over {len(plans)} periods "
            f"of load; the busiest: {busiest['reason']}"
        )
    finally:
        stack.stop("seed-autoscaler")
        if gateway is not None:
            gateway.send_signal(signal.SIGTERM)
            await asyncio.wait_for(gateway.wait(), 15)
        await agent.stop(unregister=False)

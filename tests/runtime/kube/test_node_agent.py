"""Pods that really run on the test control plane: the test-only node agent plays the
kubelet for an IDC node and a virtual node, runs each pod's ``vllm serve`` as the
emulator on its own loopback address, reports readiness and deletion like a kubelet,
and leaves no process behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import ssl
import subprocess
import sys
from typing import Any

import aiohttp
import pytest
from kubestack import Stack, ready_pods, until
from test_scheduling import PODS, cleanup, create_policy, extender_sees_policies

from tierserve.errors import NotFoundError
from tierserve.model.service import InferenceService
from tierserve.runtime.kube import serving
from tierserve.runtime.kube.apply import apply_all
from tierserve.runtime.kube.client import KubeClient, load_config
from tierserve.testing.nodeagent import FakeNode, NodeAgent, container_argv, tail_lines

pytestmark = [pytest.mark.kube, pytest.mark.slow]

IDC = FakeNode("agent-idc", {"pool": "agent-idc"}, gpus=1)
VIRTUAL = FakeNode("agent-vk", {"agent": "yes"}, gpus=8, virtual=True, cold_start_s=1.0)
APP = "isvc.agentdemo-predictor"


def test_the_kubelet_endpoint_tails_lines_as_a_kubelet_does() -> None:
    log = b"one\ntwo\nthree"
    assert tail_lines(log, None) == log
    assert tail_lines(log, 2) == b"two\nthree"  # a last line without its newline counts
    assert tail_lines(log, 5) == log
    assert tail_lines(log, 0) == b""
    assert tail_lines(b"a\nb\n", 1) == b"b\n"


def test_vllm_serve_becomes_the_emulator_on_the_pods_address() -> None:
    argv = container_argv(
        {"command": ["vllm", "serve", "/model/m", "--port", "8080"]}, IDC, "127.0.0.101"
    )
    assert argv[1:5] == ["-m", "tierserve.cli.main", "engine", "emulate"]
    assert argv[argv.index("--host") + 1] == "127.0.0.101"
    assert argv[argv.index("--port") + 1] == "8080"
    assert argv[argv.index("--gpu") + 1] == "A10-24G"
    assert container_argv({"command": ["sleep"], "args": ["5"]}, IDC, "127.0.0.1") == [
        "sleep",
        "5",
    ]


@pytest.fixture
async def kube(stack: Stack) -> Any:
    async with KubeClient(load_config(stack.kubeconfig)) as client:
        yield client
        await cleanup(client)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_pods_run_serve_get_ready_and_go_away_like_a_kubelets(
    kube: KubeClient, stack: Stack
) -> None:
    agent = NodeAgent(kube, [IDC, VIRTUAL], stack.plane.logs / "agent")
    await agent.start()
    try:
        await create_policy(
            kube,
            {
                "metadata": {"name": "agentdemo"},
                "spec": {
                    "selector": {"app": APP},
                    "units": [
                        {"resource": "ecs", "nodeSelector": {"pool": "agent-idc"}},
                        {"resource": "eci", "nodeSelector": {"agent": "yes"}},
                    ],
                },
            },
        )
        await extender_sees_policies(kube, stack)
        service = InferenceService.new(
            "agentdemo",
            spec={
                "gpus": 1,
                "replicas": 2,
                "command": "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080 "
                "--served-model-name deepseek-r1",
                # Ready when the engine answers, as a kubelet's probe decides
                "readinessProbe": {"httpGet": {"path": "/health"}, "periodSeconds": 1},
            },
        )
        policies = await serving.cluster_policies(kube, "default")
        objects = serving.render(service, raw=True, policies=policies)
        template = objects[0]["spec"]["template"]
        template["spec"]["terminationGracePeriodSeconds"] = 5
        await apply_all(kube, objects[:1])

        seen: list[object] = []

        async def ready() -> object:
            pods = (await kube.get(PODS, {"labelSelector": f"app={APP}"})).get("items") or []
            seen[:] = [
                (p["metadata"]["name"], p["spec"].get("nodeName"),
                 (p.get("status") or {}).get("phase"),
                 [(c["type"], c["status"], c.get("message", "")[:200])
                  for c in (p.get("status") or {}).get("conditions") or []])
                for p in pods
            ]  # fmt: skip
            done = [
                p for p in pods
                if any(c["type"] == "Ready" and c["status"] == "True"
                       for c in (p.get("status") or {}).get("conditions") or [])
            ]  # fmt: skip
            return len(done) == 2 and done

        try:
            pods: Any = await until(ready, 60)
        except AssertionError as exc:
            logs = sorted((stack.plane.logs / "agent").glob("*.log"))
            tail = [f"{f.name}: {f.read_text()[-600:]}" for f in logs]
            raise AssertionError(f"{seen}\n{tail}") from exc
        where = {p["spec"]["nodeName"]: p["status"]["podIP"] for p in pods}
        assert set(where) == {"agent-idc", "agent-vk"}  # IDC first, then the virtual node
        assert len(set(where.values())) == 2
        assert all(ip.startswith("127.0.0.") for ip in where.values())
        # each pod serves on its own address, port 8080, as in a cluster
        async with aiohttp.ClientSession() as session:
            for ip in where.values():
                async with session.get(f"http://{ip}:8080/v1/models") as resp:
                    body = await resp.json()
                    assert [m["id"] for m in body["data"]] == ["deepseek-r1"]
                chat = {"model": "deepseek-r1", "max_tokens": 4,
                        "messages": [{"role": "user", "content": "hi"}]}  # fmt: skip
                async with session.post(f"http://{ip}:8080/v1/chat/completions", json=chat) as resp:
                    assert resp.status == 200, await resp.text()
                    assert (await resp.json())["usage"]["completion_tokens"] >= 1

        # the extender's ledger sees them, one Ready per tier, under the local names
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{stack.extender_url}/metrics", ssl=stack.client_context() or True
            ) as resp,
        ):
            text = await resp.text()
        for node, tier in (("agent-idc", "idc"), ("agent-vk", "cloud")):
            ready_series = (
                f'tierserve_replicas{{namespace="default",node="{node}",phase="Ready",'
                f'service="agentdemo",tier="{tier}"}} 1.0'
            )
            assert ready_series in text.splitlines(), text[-2000:]
        assert 'tierserve_gpu_seconds_total{namespace="default",node="agent-vk"' in text

        # scale to 1: the ReplicaSet deletes a pod; the agent stops its process, then the
        # pod is gone from the API
        procs = {key: p.proc.pid for key, p in agent.pods.items() if p.proc is not None}
        await kube.patch(
            "/apis/apps/v1/namespaces/default/deployments/agentdemo-predictor/scale",
            {"spec": {"replicas": 1}},
        )

        async def one_left() -> object:
            pods = (await kube.get(PODS, {"labelSelector": f"app={APP}"})).get("items") or []
            return len(pods) == 1 and pods

        left: Any = await until(one_left, 30)
        gone = [pid for key, pid in procs.items() if key[1] != left[0]["metadata"]["name"]]
        assert len(gone) == 1
        await until(lambda: asyncio.sleep(0, result=not alive(gone[0])), 10)
    finally:
        running = [p.proc.pid for p in agent.pods.values() if p.proc is not None]
        await agent.stop()
    assert running and not any(alive(pid) for pid in running), "an engine process outlived"


LOGS_APP = "isvc.logdemo-predictor"


def serve_cli(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", "serve", *args,
         "--backend", "kubernetes", "--kubeconfig", stack.kubeconfig],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


async def test_serve_logs_reads_the_pods_log_through_the_api_server(
    kube: KubeClient, stack: Stack
) -> None:
    agent = NodeAgent(
        kube, [IDC], stack.plane.logs / "agent-logs", first_ip=200,
        kubelet=stack.plane.kubelet_tls(),
    )  # fmt: skip
    await agent.start()
    stopped = False
    try:
        node = await kube.get(f"/api/v1/nodes/{IDC.name}")
        assert node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"] == agent.kubelet_port
        assert node["status"]["addresses"] == [{"type": "InternalIP", "address": "127.0.0.1"}]
        await create_policy(
            kube,
            {"metadata": {"name": "logdemo"},
             "spec": {"selector": {"app": LOGS_APP},
                      "units": [{"resource": "ecs", "nodeSelector": {"pool": "agent-idc"}}]}},
        )  # fmt: skip
        await extender_sees_policies(kube, stack)
        submitted = await asyncio.to_thread(
            serve_cli, stack, "kserve", "--name=logdemo", "--raw", "--gpus=1",
            "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080 "
            "--served-model-name deepseek-r1",
        )  # fmt: skip
        assert submitted.returncode == 0, submitted.stderr
        pods: Any = await until(lambda: ready_pods(kube, LOGS_APP), 60)
        pod = pods[0]["metadata"]["name"]

        # the first Ready instance's log: the emulator's own lines, via kubelet's endpoint
        logs = await asyncio.to_thread(serve_cli, stack, "logs", "logdemo")
        assert logs.returncode == 0, logs.stderr
        assert "emulating vLLM serve" in logs.stdout
        assert f"Starting vLLM API server on http://{pods[0]['status']['podIP']}:8080" in (
            logs.stdout
        )
        last = await asyncio.to_thread(serve_cli, stack, "logs", "logdemo", "-i", pod, "--tail=1")
        assert last.returncode == 0, last.stderr
        assert last.stdout.splitlines() == logs.stdout.splitlines()[-1:]

        # an instance that is not the job's: named, with the job's instances listed
        unknown = await asyncio.to_thread(serve_cli, stack, "logs", "logdemo", "-i", "nope-1")
        assert unknown.returncode == 1
        assert f"--instance: 'nope-1' is not an instance of logdemo; expected one of {pod}" in (
            unknown.stderr
        )

        # the kubelet answers kube-apiserver's client certificate only
        plain = ssl.create_default_context(cafile=str(stack.plane.ca))
        other = ssl.create_default_context(cafile=str(stack.plane.ca))
        other.load_cert_chain(
            stack.pki / "scheduler-client.crt", stack.pki / "scheduler-client.key"
        )
        url = f"https://127.0.0.1:{agent.kubelet_port}/containerLogs/default/{pod}/kserve-container"
        async with aiohttp.ClientSession() as session:
            with pytest.raises(aiohttp.ClientError):
                async with session.get(url, ssl=plain) as resp:
                    await resp.read()
            async with session.get(url, ssl=other) as resp:
                assert resp.status == 403

        # -f: the log, then what comes, until the pod's container ends (exit 0)
        follow = subprocess.Popen(
            [sys.executable, "-m", "tierserve.cli.main", "serve", "logs", "logdemo", "-f",
             "-i", pod, "--backend", "kubernetes", "--kubeconfig", stack.kubeconfig],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )  # fmt: skip
        try:
            assert follow.stdout is not None
            first = await asyncio.to_thread(follow.stdout.readline)
            assert b"tierserve.engine" in first, first
            await kube.delete(f"{PODS}/{pod}", {"gracePeriodSeconds": "2"})
            code = await asyncio.to_thread(follow.wait, 30)
            rest = follow.stdout.read()
            assert code == 0, follow.stderr.read() if follow.stderr else ""
            assert b"Starting vLLM API server" in first + rest
        finally:
            if follow.poll() is None:
                follow.kill()
                follow.wait()

        async def another() -> object:
            ready = await ready_pods(kube, LOGS_APP)
            return [p for p in ready if p["metadata"]["name"] != pod]

        pods = await until(another, 60)
        pod = pods[0]["metadata"]["name"]

        # the node's kubelet gone: the API server's error, said clearly
        await agent.stop(unregister=False)
        stopped = True
        down = await asyncio.to_thread(serve_cli, stack, "logs", "logdemo", "-i", pod)
        assert down.returncode == 1
        assert f"cannot read the log of instance {pod}" in down.stderr
        assert f"on node {IDC.name}" in down.stderr
        assert "Traceback" not in down.stderr
    finally:
        if not stopped:
            await agent.stop()
        else:
            with contextlib.suppress(NotFoundError):
                await kube.delete(f"/api/v1/nodes/{IDC.name}")

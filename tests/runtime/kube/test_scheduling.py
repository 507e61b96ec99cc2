"""The seed scenario on a real control plane: IDC first, cloud on overflow, cloud first
back; ``max``; the extender down with ``ignorable: false``; bad policies rejected."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from kubestack import Stack, until

from tierserve.cli import arena_layout
from tierserve.errors import NotFoundError
from tierserve.model.service import InferenceService
from tierserve.policy.scalein import DELETION_COST_ANNOTATION
from tierserve.runtime.kube import serving
from tierserve.runtime.kube.apply import apply_all
from tierserve.runtime.kube.client import MERGE_PATCH, KubeApiError, KubeClient, load_config
from tierserve.runtime.kube.convert import UNIT_ANNOTATION
from tierserve.runtime.kube.crd import ACK_GROUP, TIERSERVE_GROUP, policies_path

pytestmark = [pytest.mark.kube, pytest.mark.slow]

SEED = Path("/work/shared/seed/yaml/resourcepolicy.yaml")
ROOT = Path(__file__).resolve().parents[2]
IDC = "idc001"
VIRTUAL = "virtual-kubelet-cn-hangzhou-b"
PODS = "/api/v1/namespaces/default/pods"
IDC_UNIT = "ecs:alibabacloud.com/nodepool-id=np-idc"

Obj = dict[str, Any]


def seed_policy_yaml() -> str:
    """The seed's ResourcePolicy (the shared copy, else the one shipped in examples)."""
    if SEED.exists():
        return SEED.read_text()
    shipped = ROOT / "tierserve/examples/seed/resourcepolicy.yaml"
    return shipped.read_text()


NODES: list[tuple[Obj, Obj]] = [
    (
        {"name": IDC, "labels": {"alibabacloud.com/nodepool-id": "np-idc"}},
        {"taints": []},
    ),
    (
        {"name": VIRTUAL, "labels": {"type": "virtual-kubelet"}},
        {
            "taints": [
                {"key": "virtual-kubelet.io/provider", "value": "alibabacloud",
                 "effect": "NoSchedule"}
            ]
        },
    ),
]  # fmt: skip
CAPACITY = {
    IDC: {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": "1", "pods": "110"},
    VIRTUAL: {"cpu": "1k", "memory": "4Ti", "nvidia.com/gpu": "100", "pods": "10k"},
}


async def ensure_nodes(kube: KubeClient) -> None:
    for meta, spec in NODES:
        try:
            await kube.create(
                "/api/v1/nodes",
                {"apiVersion": "v1", "kind": "Node", "metadata": meta, "spec": spec},
            )
        except Exception as exc:
            if "already exists" not in str(exc):
                raise
        ready = {
            "type": "Ready",
            "status": "True",
            "reason": "KubeletReady",
            "message": "fake node",
        }
        cap = CAPACITY[meta["name"]]
        await kube.patch(f"/api/v1/nodes/{meta['name']}/status",
                         {"status": {"capacity": cap, "allocatable": cap,
                                     "conditions": [ready]}})  # fmt: skip


@pytest.fixture
async def kube(stack: Stack) -> AsyncIterator[KubeClient]:
    async with KubeClient(load_config(stack.kubeconfig)) as client:
        await ensure_nodes(client)
        yield client
        await cleanup(client)


async def cleanup(kube: KubeClient) -> None:
    for path in (
        "/apis/apps/v1/namespaces/default/deployments",
        policies_path(ACK_GROUP, "default"),
        policies_path(TIERSERVE_GROUP, "default"),
        "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers",
        "/api/v1/namespaces/default/services",
    ):
        listed = await kube.get(path)
        for obj in listed.get("items") or []:
            if obj["metadata"]["name"] == "kubernetes":
                continue
            await kube.delete(f"{path}/{obj['metadata']['name']}")

    # pods never run (no kubelet): remove them at once, so GPUs free up for the next test
    async def gone() -> bool:
        pods = (await kube.get(PODS)).get("items") or []
        for pod in pods:
            with contextlib.suppress(NotFoundError):
                await kube.delete(f"{PODS}/{pod['metadata']['name']}", {"gracePeriodSeconds": "0"})
        return not pods

    await until(gone, 30)


async def live_pods(kube: KubeClient, app: str) -> list[Obj]:
    pods = (await kube.get(PODS, {"labelSelector": f"app={app}"})).get("items") or []
    return [p for p in pods if not p["metadata"].get("deletionTimestamp")]


def placement(pods: list[Obj]) -> dict[str | None, int]:
    out: dict[str | None, int] = {}
    for p in pods:
        node = p["spec"].get("nodeName")
        out[node] = out.get(node, 0) + 1
    return out


def deepseek(**spec: Any) -> InferenceService:
    fields = {
        "gpus": 1, "cpu": "4", "memory": "12Gi", "replicas": 1, "minReplicas": 1,
        "maxReplicas": 3, "scaleMetric": "DCGM_CUSTOM_PROCESS_SM_UTIL", "scaleTarget": 50,
        "command": "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080",
    }  # fmt: skip
    fields.update(spec)
    return InferenceService.new("deepseek", spec=fields)


async def create_policy(kube: KubeClient, doc: Obj, group: str = TIERSERVE_GROUP) -> Obj:
    doc = {"apiVersion": f"{group}/v1alpha1", "kind": "ResourcePolicy", **doc}
    return await kube.create(policies_path(group, "default"), doc)


async def extender_sees_policies(kube: KubeClient, stack: Stack) -> None:
    """Wait until the extender's watch has every ResourcePolicy of the cluster cached, so
    that pods created next are judged under them (no fixed sleep)."""
    total = 0
    for group in (TIERSERVE_GROUP, ACK_GROUP):
        listed = await kube.get(policies_path(group, "default"))
        total += len(listed.get("items") or [])
    wanted = f"tierserve_extender_cache_policies {total}"

    async def seen() -> object:
        async with (
            aiohttp.ClientSession() as session,
            session.get(
                f"{stack.extender_url}/metrics", ssl=stack.client_context() or True
            ) as resp,
        ):
            return wanted in (await resp.text()).splitlines()

    await until(seen)


async def scale(kube: KubeClient, name: str, replicas: int) -> None:
    await kube.patch(
        f"/apis/apps/v1/namespaces/default/deployments/{name}/scale",
        {"spec": {"replicas": replicas}},
        MERGE_PATCH,
    )


async def test_seed_scenario_idc_first_cloud_on_overflow_cloud_first_back(
    kube: KubeClient, stack: Stack
) -> None:
    # The seed's YAML, unchanged, under ACK's group (kubectl create -f when kubectl is here).
    text = seed_policy_yaml()
    if shutil.which("kubectl"):
        done = subprocess.run(
            ["kubectl", "--kubeconfig", stack.kubeconfig, "create", "-f", "-"],
            input=text.encode(), capture_output=True, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr.decode()
    else:
        import yaml

        await kube.create(policies_path(ACK_GROUP, "default"), yaml.safe_load(text))
    await extender_sees_policies(kube, stack)
    app = "isvc.deepseek-predictor"
    service = deepseek()
    policies = await serving.cluster_policies(kube, "default")
    objects = serving.render(service, raw=True, policies=policies)
    deployment = objects[0]
    pod_spec = deployment["spec"]["template"]["spec"]
    assert pod_spec["schedulerName"] == "tierserve-scheduler"
    assert {"key": "virtual-kubelet.io/provider", "operator": "Exists",
            "effect": "NoSchedule"} in pod_spec["tolerations"]  # fmt: skip
    # the Deployment and Service; the HPA (no metrics here) is checked by the dry-run tests
    await apply_all(kube, objects[:2])

    async def one_on_idc() -> object:
        pods = await live_pods(kube, app)
        return placement(pods) == {IDC: 1} and pods

    pods: Any = await until(one_on_idc)
    # the pod records its unit by what the unit holds, not by its index
    assert pods[0]["metadata"]["annotations"][UNIT_ANNOTATION] == IDC_UNIT

    # arena serve get against the cluster shows the replica on idc001
    services, views = await serving.read_services(kube, "default")
    text = arena_layout.format_get(services[0], views, 0.0, wide=True)
    assert IDC in text and "idc" in text, text

    # HPA scales to 3: the two new replicas land on the virtual node, in unit 1
    await scale(kube, "deepseek-predictor", 3)

    async def spilled() -> object:
        pods = await live_pods(kube, app)
        return placement(pods) == {IDC: 1, VIRTUAL: 2} and pods

    pods = await until(spilled)
    units = sorted(p["metadata"]["annotations"][UNIT_ANNOTATION] for p in pods)
    assert units == ["eci", "eci", IDC_UNIT]

    # the controller ranks the cloud replicas first to go
    async def costed() -> object:
        pods = await live_pods(kube, app)
        costs = {p["spec"]["nodeName"] + "/" + p["metadata"]["name"]:
                 int(p["metadata"].get("annotations", {}).get(DELETION_COST_ANNOTATION, -1))
                 for p in pods}  # fmt: skip
        if len(costs) != 3 or min(costs.values()) < 0:
            return False
        idc = [c for k, c in costs.items() if k.startswith(IDC)]
        cloud = [c for k, c in costs.items() if k.startswith(VIRTUAL)]
        return max(cloud) < min(idc) and costs

    await until(costed)

    # load falls, 3 -> 1: the two virtual replicas are deleted first
    await scale(kube, "deepseek-predictor", 1)

    async def back_to_idc() -> object:
        pods = await live_pods(kube, app)
        return placement(pods) == {IDC: 1}

    await until(back_to_idc)
    listed = await kube.get(PODS, {"labelSelector": f"app={app}"})
    gone = [p for p in listed["items"] if p["metadata"].get("deletionTimestamp")]
    assert all(p["spec"]["nodeName"] == VIRTUAL for p in gone)

    # arena serve list / delete against the cluster
    services, views = await serving.read_services(kube, None)
    assert "deepseek" in arena_layout.format_list(services, views, 0.0)
    deleted = await serving.delete_service(kube, "deepseek", "default")
    assert deleted == ["deployment.apps/deepseek-predictor", "service/deepseek-predictor"]


async def test_max_of_a_unit_is_honoured(kube: KubeClient, stack: Stack) -> None:
    await create_policy(
        kube,
        {
            "metadata": {"name": "capped"},
            "spec": {
                "selector": {"app": "capped"},
                "units": [
                    {"resource": "ecs", "nodeSelector": {"alibabacloud.com/nodepool-id": "np-idc"}},
                    {"resource": "eci", "max": 1},
                ],
            },
        },
    )
    await extender_sees_policies(kube, stack)
    objects = serving.render(
        InferenceService.new(
            "capped", spec={"gpus": 1, "replicas": 3, "labels": {}, "command": "sleep 1"}
        ),
        raw=True,
    )
    deployment = objects[0]
    template = deployment["spec"]["template"]
    template["metadata"]["labels"]["app"] = "capped"
    deployment["spec"]["selector"]["matchLabels"] = {"app": "capped"}
    template["spec"]["tolerations"] = [
        {"key": "virtual-kubelet.io/provider", "operator": "Exists", "effect": "NoSchedule"}
    ]
    template["spec"]["terminationGracePeriodSeconds"] = 0
    await apply_all(kube, [deployment])

    async def two_bound() -> object:
        pods = await live_pods(kube, "capped")
        return len(pods) == 3 and placement(pods) == {IDC: 1, VIRTUAL: 1, None: 1}

    await until(two_bound)
    await asyncio.sleep(2.0)  # and the third stays Pending: unit 1 is at max (1)
    assert placement(await live_pods(kube, "capped")) == {IDC: 1, VIRTUAL: 1, None: 1}
    events = await kube.get(
        "/api/v1/namespaces/default/events", {"fieldSelector": "reason=FailedScheduling"}
    )
    messages = " ".join(e.get("message", "") for e in events.get("items") or [])
    assert "max" in messages.lower(), messages


async def test_extender_down_pods_stay_pending_then_bind(kube: KubeClient, stack: Stack) -> None:
    await create_policy(
        kube,
        {
            "metadata": {"name": "outage"},
            "spec": {"selector": {"app": "outage"}, "units": [{"resource": "ecs"}]},
        },
    )
    stack.stop("extender")
    try:
        deployment = serving.render(
            InferenceService.new("outage", spec={"cpu": "1", "command": "sleep 1"}), raw=True
        )[0]
        deployment["spec"]["template"]["metadata"]["labels"]["app"] = "outage"
        deployment["spec"]["selector"]["matchLabels"] = {"app": "outage"}
        await apply_all(kube, [deployment])

        async def created() -> object:
            return await live_pods(kube, "outage")

        await until(created)
        await asyncio.sleep(3.0)
        assert placement(await live_pods(kube, "outage")) == {None: 1}
    finally:
        stack.start_extender()

    async def bound() -> object:
        return placement(await live_pods(kube, "outage")) == {IDC: 1}

    await until(bound, 30)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            {"selector": {"app": "x"}, "units": [{"resource": "gpu"}]},
            'spec.units[0].resource: Unsupported value: "gpu"',
        ),
        ({"selector": {"app": "x"}, "units": []}, "spec.units: Invalid value"),
        ({"units": [{"resource": "ecs"}]}, "spec.selector: Required value"),
        (
            {"selector": {"app": "x"}, "units": [{}], "whenTryNextUnits": {"timeout": "soon"}},
            "spec.whenTryNextUnits.timeout",
        ),
        ({"selector": {"app": "x"}, "units": [{"max": -1}]}, "spec.units[0].max"),
    ],
)
async def test_bad_policy_is_rejected_by_the_api_server(
    kube: KubeClient, spec: Obj, expected: str
) -> None:
    with pytest.raises(KubeApiError) as caught:
        await create_policy(kube, {"metadata": {"name": "bad"}, "spec": spec})
    assert caught.value.status == 422
    assert expected in str(caught.value), str(caught.value)

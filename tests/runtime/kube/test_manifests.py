"""Every rendered manifest passes a server-side dry run; the CLI installs the CRD."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import pytest
import yaml
from kubestack import Stack
from typer.testing import CliRunner

from tierserve.errors import ConflictError
from tierserve.model.service import InferenceService
from tierserve.runtime.kube import manifests, serving
from tierserve.runtime.kube.apply import apply_all, wait_established
from tierserve.runtime.kube.client import KubeClient, load_config

pytestmark = [pytest.mark.kube, pytest.mark.slow]

KSERVE_STUB = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "inferenceservices.serving.kserve.io"},
    "spec": {
        "group": "serving.kserve.io",
        "scope": "Namespaced",
        "names": {"plural": "inferenceservices", "singular": "inferenceservice",
                  "kind": "InferenceService"},
        "versions": [{"name": "v1beta1", "served": True, "storage": True,
                      "schema": {"openAPIV3Schema": {
                          "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}],
    },
}  # fmt: skip


@pytest.fixture
async def kube(stack: Stack) -> AsyncIterator[KubeClient]:
    async with KubeClient(load_config(stack.kubeconfig)) as client:
        yield client


@pytest.mark.parametrize("ack", [False, True])
async def test_deploy_manifests_pass_server_side_dry_run(kube: KubeClient, ack: bool) -> None:
    objects = manifests.manifests(manifests.ManifestOptions(ack_compatible=ack))
    namespace = next(o for o in objects if o["kind"] == "Namespace")
    # namespaced objects are only dry-run-able in an existing namespace
    with contextlib.suppress(ConflictError):
        await kube.create("/api/v1/namespaces", namespace)
    answered = await apply_all(kube, objects, dry_run=True)
    assert [a["kind"] for a in answered] == [o["kind"] for o in objects]
    config = next(o for o in objects if o["kind"] == "ConfigMap")
    sched = yaml.safe_load(config["data"]["config.yaml"])
    assert sched["profiles"] == [{"schedulerName": "tierserve-scheduler"}]
    assert sched["extenders"][0]["nodeCacheCapable"] is True


def seed_service() -> InferenceService:
    return InferenceService.new(
        "deepseek",
        spec={
            "gpus": 1, "cpu": "4", "memory": "12Gi", "minReplicas": 1, "maxReplicas": 3,
            "scaleMetric": "DCGM_CUSTOM_PROCESS_SM_UTIL", "scaleTarget": 50,
            "data": ["llm-model:/model/DeepSeek-R1-Distill-Qwen-7B"],
            "command": "vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080",
        },
    )  # fmt: skip


async def test_serving_renderings_pass_server_side_dry_run(kube: KubeClient) -> None:
    raw = serving.render(seed_service(), raw=True)
    assert [o["kind"] for o in raw] == ["Deployment", "Service", "HorizontalPodAutoscaler"]
    await apply_all(kube, raw, dry_run=True)
    with contextlib.suppress(ConflictError):
        await kube.create("/apis/apiextensions.k8s.io/v1/customresourcedefinitions", KSERVE_STUB)
    await wait_established(kube, "inferenceservices.serving.kserve.io")
    kserve = serving.render(seed_service())
    isvc, scaler = kserve
    assert isvc["metadata"]["labels"] == {"servingType": "kserve", "servingName": "deepseek"}
    assert isvc["metadata"]["annotations"] == {
        "serving.kserve.io/autoscalerClass": "external",
        # raw Deployments: the HPA's target <name>-predictor exists on a Serverless install too
        "serving.kserve.io/deploymentMode": "RawDeployment",
    }
    container = isvc["spec"]["predictor"]["containers"][0]
    assert container["readinessProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    assert container["startupProbe"]["httpGet"] == {"path": "/health", "port": 8080}
    assert (
        container["startupProbe"]["periodSeconds"] * container["startupProbe"]["failureThreshold"]
        == 1800
    )  # the model load's budget
    assert scaler["metadata"]["name"] == "deepseek-hpa"
    assert scaler["spec"]["scaleTargetRef"]["name"] == "deepseek-predictor"
    assert scaler["spec"]["metrics"][0]["type"] == "Pods"
    await apply_all(kube, kserve, dry_run=True)
    # submit picks KServe now that its CRD is there (server-side dry run)
    result = await serving.submit_async(seed_service(), kube, server_dry_run=True)
    assert not result.raw
    assert result.lines[0] == "inferenceservice.serving.kserve.io/deepseek created (server dry run)"


def test_cli_install_ack_compatible_and_manifests(stack: Stack) -> None:
    import typer

    from tierserve.cli import kube as kube_cli

    app = typer.Typer()
    kube_cli.register(app)
    runner = CliRunner()
    done = runner.invoke(
        app, ["kube", "install", "--ack-compatible", "--kubeconfig", stack.kubeconfig]
    )
    assert done.exit_code == 0, done.output
    assert "resourcepolicies.scheduling.alibabacloud.com configured" in done.output
    done = runner.invoke(app, ["kube", "manifests", "--scheduler-image", "example/ks:1"])
    assert done.exit_code == 0, done.output
    docs = list(yaml.safe_load_all(done.output))
    kinds = [d["kind"] for d in docs]
    assert kinds[0] == "CustomResourceDefinition" and "Deployment" in kinds
    images = [
        c["image"]
        for d in docs
        if d["kind"] == "Deployment"
        for c in d["spec"]["template"]["spec"]["containers"]
    ]
    assert "example/ks:1" in images

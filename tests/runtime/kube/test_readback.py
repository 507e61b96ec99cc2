"""A serving job read back from its rendered objects renders the same objects again:
``render(read_back(render(s))) == render(s)``, for the flags users give ``serve kserve``."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from tierserve.cli import arena
from tierserve.cli.serve import AutoscalerFlags, service_for_submit, service_for_update
from tierserve.model.resourcepolicy import ResourcePolicy
from tierserve.model.service import InferenceService
from tierserve.runtime.kube import serving
from tierserve.runtime.kube.readback import Rendered, read_back

SEED = dict(
    annotation=["k8s.aliyun.com/eci-use-specs=ecs.gn6e-c12g1.3xlarge"],
    image="kube-ai-registry.cn-shanghai.cr.aliyuncs.com/kube-ai/vllm:v0.6.6",
    gpus=1, cpu="4", memory="12Gi",
    scale_metric="DCGM_CUSTOM_PROCESS_SM_UTIL", scale_target=50.0,
    min_replicas=1, max_replicas=3,
    data=["llm-model:/model/DeepSeek-R1-Distill-Qwen-7B"],
)  # fmt: skip
CASES: dict[str, dict[str, Any]] = {
    "the seed's flags": SEED,
    "no autoscaling, 2 replicas": dict(replicas=2, cpu="500m", memory="1Gi"),
    "everything": dict(
        SEED,
        env=["A=1", "B=x=y"],
        label=["team=ml"],
        selector=["pool=idc"],
        toleration=["gpu=true:NoSchedule", "all"],
        data_dir=["/mnt/models:/models"],
        port=9000,
        readiness_probe_path="/v1/models",
        shell="bash",
        scale_target=0.5,
        image_pull_policy="Always",
        replicas=2,
    ),
    "cpu scale metric": dict(scale_metric="cpu", scale_target=80.0, max_replicas=4),
    "the virtual toleration given by hand": dict(
        toleration=["virtual-kubelet.io/provider:NoSchedule"]
    ),
}
POLICY = ResourcePolicy.model_validate(
    {
        "apiVersion": "scheduling.tierserve.io/v1alpha1",
        "kind": "ResourcePolicy",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {
            "selector": {"app": "isvc.demo-predictor"},
            "units": [{"resource": "ecs"}, {"resource": "eci"}],
        },
    }
)


def submitted(tierserve: bool = False, **flags: Any) -> InferenceService:
    service = service_for_submit(
        arena.KServeFlags(name="demo", command=["vllm serve /model/x --port 8080"], **flags),
        AutoscalerFlags(),
    )
    if tierserve:
        annotations = {
            **service.spec.annotations,
            serving.AUTOSCALER_ANNOTATION: serving.TIERSERVE,
        }
        spec = service.spec.model_copy(update={"annotations": annotations})
        service = service.model_copy(update={"spec": spec})
    return service


def as_live(objects: list[dict[str, Any]], raw: bool) -> Rendered:
    """The objects as the API server returns them: probe defaults filled in."""
    live = copy.deepcopy(objects)
    for obj in live:
        pod = (
            obj["spec"].get("template", {}).get("spec")
            if obj["kind"] == "Deployment"
            else obj["spec"].get("predictor")
        )
        if pod:
            for c in pod["containers"]:
                c["readinessProbe"].setdefault("periodSeconds", 10)
                c["readinessProbe"].setdefault("timeoutSeconds", 1)
                c["readinessProbe"].setdefault("failureThreshold", 3)
                c["readinessProbe"].setdefault("successThreshold", 1)
                c["terminationMessagePath"] = "/dev/termination-log"
    by_kind = {o["kind"]: o for o in live}
    primary = by_kind["Deployment"] if raw else by_kind["InferenceService"]
    return Rendered(
        primary, raw, hpa=by_kind.get("HorizontalPodAutoscaler"), service=by_kind.get("Service")
    )


@pytest.mark.parametrize("tierserve", [False, True], ids=["hpa", "tierserve autoscaler"])
@pytest.mark.parametrize("policies", [(), (POLICY,)], ids=["no policy", "virtual unit"])
@pytest.mark.parametrize("raw", [True, False], ids=["raw", "kserve"])
@pytest.mark.parametrize("case", list(CASES))
def test_a_read_back_service_renders_the_same_objects(
    case: str, raw: bool, policies: tuple[ResourcePolicy, ...], tierserve: bool
) -> None:
    service = submitted(tierserve, **CASES[case])
    objects = serving.render(service, raw, policies)
    doc = read_back(as_live(objects, raw), policies)
    again = InferenceService.model_validate(doc)
    assert serving.render(again, raw, policies) == objects


def test_an_update_renders_what_serve_kserve_with_the_new_flags_renders() -> None:
    objects = serving.render(submitted(**SEED), raw=True)
    current = read_back(as_live(objects, raw=True))
    flags = arena.UpdateFlags(
        name="demo", image="vllm/vllm-openai:v0.7", max_replicas=5, scale_target=70.0,
        env=["A=1"],
    )  # fmt: skip
    updated = service_for_update(current, flags, AutoscalerFlags())
    expected = submitted(
        **{**SEED, "image": "vllm/vllm-openai:v0.7", "max_replicas": 5, "scale_target": 70.0,
           "env": ["A=1"]}
    )  # fmt: skip
    assert serving.render(updated, raw=True) == serving.render(expected, raw=True)


def test_the_tierserve_autoscalers_service_keeps_the_deployments_replicas() -> None:
    objects = serving.render(submitted(tierserve=True, **SEED), raw=True)
    objects[0]["spec"]["replicas"] = 3  # what tierserve's autoscaler wrote
    doc = read_back(as_live(objects, raw=True))
    assert doc["spec"]["replicas"] == 3
    carried = json.loads(objects[0]["metadata"]["annotations"][serving.SERVICE_ANNOTATION])
    assert {k: v for k, v in doc["spec"].items() if k != "replicas"} == {
        k: v for k, v in carried["spec"].items() if k != "replicas"
    }

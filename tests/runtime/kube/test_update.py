"""``serve update kserve --backend kubernetes`` against an in-memory API server: the KServe
InferenceService path (the testbed has no KServe), and a write in between (409) retried
from the read. The raw path runs on the real testbed in ``test_serve_cli.py``."""

from __future__ import annotations

import asyncio
import copy
import json
from collections.abc import Mapping
from typing import Any, cast

import pytest

from tierserve.cli import arena
from tierserve.cli.serve import AutoscalerFlags, kube_service_for_update, service_for_submit
from tierserve.errors import ConflictError, NotFoundError, ValidationError
from tierserve.model.service import InferenceService
from tierserve.runtime.kube import serving
from tierserve.runtime.kube.apply import object_path
from tierserve.runtime.kube.client import KubeClient
from tierserve.runtime.kube.update import ATTEMPTS, update_async

Obj = dict[str, Any]


class FakeApiServer:
    """Objects by path; server-side apply replaces labels, annotations and spec, honours a
    ``resourceVersion`` precondition and bumps it only when something changed.
    ``conflicts``: how many real applies answer 409 first (someone else wrote)."""

    def __init__(self, objects: list[Obj], kserve: bool, conflicts: int = 0) -> None:
        self.objects = {object_path(o): copy.deepcopy(o) for o in objects}
        for obj in self.objects.values():
            obj["metadata"]["resourceVersion"] = "1"
        self.kserve = kserve
        self.conflicts = conflicts
        self.writes = 0

    async def get(self, path: str, params: Mapping[str, str] | None = None) -> Obj:
        return await self.request("GET", path)

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        if method == "GET" and path == f"/apis/{serving.KSERVE_API}" and self.kserve:
            return {}
        if method == "GET" and path in self.objects:
            return copy.deepcopy(self.objects[path])
        if method == "DELETE" and path in self.objects:
            return self.objects.pop(path)
        target = path.removesuffix("/scale")
        if method == "PATCH" and path.endswith("/scale") and target in self.objects:
            live = self.objects[target]
            if body["metadata"]["resourceVersion"] != live["metadata"]["resourceVersion"]:
                raise ConflictError("the object has been modified")
            if not (params or {}).get("dryRun"):
                live["spec"]["replicas"] = body["spec"]["replicas"]
                live["metadata"]["resourceVersion"] += "+"
                self.writes += 1
            return {}
        raise NotFoundError(path)

    async def apply(self, path: str, body: Obj, manager: str = "", dry_run: bool = False) -> Obj:
        live = self.objects.get(path)
        wanted = body["metadata"].get("resourceVersion")
        if not dry_run and self.conflicts:
            self.conflicts -= 1
            live["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) + 1)
            raise ConflictError("the object has been modified")
        if live is not None and wanted and wanted != live["metadata"]["resourceVersion"]:
            raise ConflictError("the object has been modified")
        new = copy.deepcopy(body)
        new["metadata"]["resourceVersion"] = live["metadata"]["resourceVersion"] if live else "1"
        if live is not None and new != live:
            new["metadata"]["resourceVersion"] = str(int(live["metadata"]["resourceVersion"]) + 1)
        if not dry_run:
            self.writes += live != new
            self.objects[path] = new
        return copy.deepcopy(new)


def submitted(**flags: Any) -> InferenceService:
    return service_for_submit(
        arena.KServeFlags(name="demo", command=["vllm serve /model/x --port 8080"], **flags),
        AutoscalerFlags(),
    )


SEED = dict(
    gpus=1, cpu="4", memory="12Gi", min_replicas=1, max_replicas=3,
    scale_metric="DCGM_CUSTOM_PROCESS_SM_UTIL", scale_target=50.0,
)  # fmt: skip


def run(
    api: FakeApiServer, dry_run: bool = False, auto: AutoscalerFlags | None = None, **flags: Any
) -> Any:
    def change(current: Obj) -> InferenceService:
        update = arena.UpdateFlags(name="demo", **flags)
        return kube_service_for_update(current, update, auto or AutoscalerFlags())

    kube = cast(KubeClient, api)
    return asyncio.run(update_async(kube, "demo", "default", change, dry_run))


def test_the_kserve_inferenceservice_and_its_hpa_are_updated() -> None:
    api = FakeApiServer(serving.render(submitted(**SEED), raw=False), kserve=True)
    done = run(api, max_replicas=5, image="vllm/vllm-openai:v0.7.0")
    assert done.configured == [
        "inferenceservice.serving.kserve.io/demo",
        "horizontalpodautoscaler.autoscaling/demo-hpa",
    ]
    expected = serving.render(
        submitted(**{**SEED, "max_replicas": 5, "image": "vllm/vllm-openai:v0.7.0"}), raw=False
    )
    for obj in expected:
        live = api.objects[object_path(obj)]
        assert {k: v for k, v in live.items() if k != "metadata"} == {
            k: v for k, v in obj.items() if k != "metadata"
        }
    assert run(api, max_replicas=5).unchanged
    assert api.writes == 2


def test_a_write_in_between_is_retried_from_the_read() -> None:
    api = FakeApiServer(serving.render(submitted(**SEED), raw=True), kserve=False, conflicts=2)
    done = run(api, replicas=2)
    assert done.configured == ["deployment.apps/demo-predictor"]
    assert (
        api.objects[object_path({**serving.render(submitted(**SEED), raw=True)[0]})]["spec"][
            "replicas"
        ]
        == 2
    )
    always = FakeApiServer(
        serving.render(submitted(**SEED), raw=True), kserve=False, conflicts=ATTEMPTS
    )
    with pytest.raises(ConflictError, match=f"kept changing while it was updated \\({ATTEMPTS}"):
        run(always, replicas=2)


def test_dry_run_bad_values_and_a_missing_job_write_nothing() -> None:
    api = FakeApiServer(serving.render(submitted(**SEED), raw=True), kserve=False)
    before = copy.deepcopy(api.objects)
    assert run(api, dry_run=True, replicas=2).configured == ["deployment.apps/demo-predictor"]
    with pytest.raises(ValidationError, match="--memory: '12GB'"):
        run(api, memory="12GB")
    assert api.objects == before
    empty = FakeApiServer([], kserve=True)
    with pytest.raises(NotFoundError, match="the serving job demo was not found in namespace"):
        run(empty, replicas=2)


def test_the_autoscaler_is_switched_as_serve_kserve_chooses_it() -> None:
    api = FakeApiServer(serving.render(submitted(**SEED), raw=True), kserve=False)
    deployment = object_path(serving.render(submitted(**SEED), raw=True)[0])

    def carried() -> Obj:
        annotations = api.objects[deployment]["metadata"].get("annotations") or {}
        text = annotations.get(serving.SERVICE_ANNOTATION)
        return json.loads(text)["spec"] if text else {}

    # to the tier planner: tierserve's autoscaler sizes it, the HPA goes
    done = run(api, auto=AutoscalerFlags(autoscaler="slo", slo="ttft=2s,tpot=100ms"))
    assert done.deleted == ["horizontalpodautoscaler.autoscaling/demo-hpa"]
    assert carried()["autoscaling"]["slo"] == {
        "ttftSeconds": 2.0,
        "tpotSeconds": 0.1,
        "attainment": 0.95,
    }
    assert "scaleMetric" not in carried()
    # one planner setting, on a service the planner sizes
    run(api, auto=AutoscalerFlags(headroom=0.2))
    assert carried()["autoscaling"]["headroom"] == 0.2
    assert carried()["autoscaling"]["slo"]["ttftSeconds"] == 2.0
    # back to the stock HPA
    done = run(
        api, auto=AutoscalerFlags(autoscaler="hpa"), scale_metric="DCGM_CUSTOM_PROCESS_SM_UTIL",
        scale_target=60.0,
    )  # fmt: skip
    assert "horizontalpodautoscaler.autoscaling/demo-hpa" in done.configured
    assert carried() == {}
    assert api.objects[deployment]["spec"]["template"]["metadata"].get("annotations") is None


def test_replicas_of_an_autoscaled_kserve_job_move_kserves_deployment() -> None:
    objects = serving.render(submitted(**SEED), raw=False)
    made = {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "demo-predictor", "namespace": "default",
                     "ownerReferences": [{"kind": "InferenceService", "name": "demo"}]},
        "spec": {"replicas": 3},
    }  # fmt: skip
    api = FakeApiServer([*objects, made], kserve=True)
    path = object_path(made)
    assert run(api, max_replicas=5).configured == [
        "inferenceservice.serving.kserve.io/demo",
        "horizontalpodautoscaler.autoscaling/demo-hpa",
    ]
    assert api.objects[path]["spec"]["replicas"] == 3  # the HPA's count, kept
    assert run(api, dry_run=True, replicas=2).configured == ["deployment.apps/demo-predictor"]
    assert api.objects[path]["spec"]["replicas"] == 3
    assert run(api, replicas=2).configured == ["deployment.apps/demo-predictor"]
    assert api.objects[path]["spec"]["replicas"] == 2
    assert run(api, replicas=2).unchanged

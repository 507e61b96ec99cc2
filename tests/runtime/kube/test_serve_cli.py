"""``tierserve serve ... --backend kubernetes``: arena's commands against the test cluster."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import yaml
from kubestack import Stack

pytestmark = [pytest.mark.kube, pytest.mark.slow]


def serve(stack: Stack, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", "serve", *args,
         "--backend", "kubernetes", "--kubeconfig", stack.kubeconfig],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if check:
        assert result.returncode == 0, result.stderr
    return result


def test_kserve_get_list_delete_on_the_cluster(stack: Stack) -> None:
    submitted = serve(
        stack, "kserve", "--name=cli-demo", "--raw", "--cpu=1", "--memory=1Gi",
        "--scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL", "--scale-target=50",
        "--min-replicas=1", "--max-replicas=3", "vllm serve /model/x --port 8080",
    )  # fmt: skip
    assert "deployment.apps/cli-demo-predictor created" in submitted.stdout
    assert "horizontalpodautoscaler.autoscaling/cli-demo-hpa created" in submitted.stdout

    got = serve(stack, "get", "cli-demo")
    assert "Name:       cli-demo" in got.stdout
    assert "Address:    http://cli-demo-default.example.com" in got.stdout
    assert "cli-demo" in serve(stack, "list").stdout

    deleted = serve(stack, "delete", "cli-demo")
    assert "deployment.apps/cli-demo-predictor deleted" in deleted.stdout
    missing = serve(stack, "get", "cli-demo", check=False)
    assert missing.returncode != 0 and "cli-demo" in missing.stderr


def test_unknown_backend_is_a_clear_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", "serve", "list", "--backend", "k8s"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 1
    assert "--backend: 'k8s' is not one of local, kubernetes" in result.stderr


def kube_get(stack: Stack, path: str) -> Any:
    return json.loads(stack.plane.get(path))


DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
HPAS = "/apis/autoscaling/v2/namespaces/default/horizontalpodautoscalers"


def within(want: Any, live: Any) -> bool:
    """``want`` is ``live`` but for fields the API server filled in (defaults)."""
    if isinstance(want, dict):
        return isinstance(live, dict) and all(
            k in live and within(v, live[k]) for k, v in want.items()
        )
    if isinstance(want, list):
        return (
            isinstance(live, list)
            and len(want) == len(live)
            and all(within(w, v) for w, v in zip(want, live, strict=True))
        )
    return bool(want == live)


def versions(stack: Stack, name: str) -> dict[str, str]:
    """What moves when the job's objects are written: the Deployment's and the HPA's
    generation (their controllers write status meanwhile), the Service's resourceVersion."""
    deployment = kube_get(stack, f"{DEPLOYMENTS}/{name}-predictor")["metadata"]
    hpa = kube_get(stack, f"{HPAS}/{name}-hpa")["metadata"]
    service = kube_get(stack, f"/api/v1/namespaces/default/services/{name}-predictor")
    return {
        "deployment": str(deployment["generation"]),
        "hpa": str(hpa["generation"]),
        "service": service["metadata"]["resourceVersion"],
    }


def test_update_changes_the_cluster_and_serve_get_shows_it(stack: Stack) -> None:
    serve(
        stack, "kserve", "--name=upd-demo", "--raw", "--cpu=1", "--memory=1Gi",
        "--scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL", "--scale-target=50",
        "--min-replicas=1", "--max-replicas=3", "vllm serve /model/x --port 8080",
    )  # fmt: skip
    try:
        # replicas, scale target, bounds and image: the Deployment and the HPA change
        updated = serve(
            stack, "update", "kserve", "--name=upd-demo", "--replicas=2", "--scale-target=70",
            "--max-replicas=4", "--image=vllm/vllm-openai:v0.7.0", "--env=A=1",
        )  # fmt: skip
        assert "deployment.apps/upd-demo-predictor configured" in updated.stdout
        assert "horizontalpodautoscaler.autoscaling/upd-demo-hpa configured" in updated.stdout
        assert "The serving job upd-demo with version 1 has been updated successfully" in (
            updated.stdout
        )
        deployment = kube_get(stack, f"{DEPLOYMENTS}/upd-demo-predictor")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "vllm/vllm-openai:v0.7.0"
        assert container["env"] == [{"name": "A", "value": "1"}]
        assert deployment["spec"]["replicas"] == 2
        hpa = kube_get(stack, f"{HPAS}/upd-demo-hpa")["spec"]
        assert (hpa["minReplicas"], hpa["maxReplicas"]) == (1, 4)
        assert hpa["metrics"][0]["pods"]["target"]["averageValue"] == "70"
        assert "Desired:    2" in serve(stack, "get", "upd-demo").stdout

        # the same again: arena's "unchanged", and nothing written
        before = versions(stack, "upd-demo")
        again = serve(stack, "update", "kserve", "--name=upd-demo", "--scale-target=70")
        assert "The serving job upd-demo with version 1 is unchanged" in again.stdout
        assert "configured" not in again.stdout
        assert versions(stack, "upd-demo") == before

        # what serve kserve renders with the new flags is what is on the cluster now
        rendered = serve(
            stack, "kserve", "--name=upd-demo", "--raw", "--dry-run", "--cpu=1",
            "--memory=1Gi", "--scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL", "--scale-target=70",
            "--min-replicas=1", "--max-replicas=4", "--replicas=2",
            "--image=vllm/vllm-openai:v0.7.0", "--env=A=1", "vllm serve /model/x --port 8080",
        )  # fmt: skip
        docs = {d["kind"]: d for d in yaml.safe_load_all(rendered.stdout) if d}
        assert docs["HorizontalPodAutoscaler"]["spec"] == hpa
        want = docs["Deployment"]["spec"]["template"]["spec"]
        assert within(want, deployment["spec"]["template"]["spec"])  # + the server's defaults

        # the server's dry run: said, not done
        dry = serve(stack, "update", "kserve", "--name=upd-demo", "--image=other:1", "--dry-run")
        assert "deployment.apps/upd-demo-predictor configured (server dry run)" in dry.stdout
        assert versions(stack, "upd-demo") == before

        # bad values: named as the local path names them, nothing changed on the cluster
        for flag, said in (
            ("--memory=12GB", "--memory: '12GB' is not a Kubernetes quantity"),
            ("--min-replicas=9", "--min-replicas: 9 is greater than --max-replicas 4"),
            ("--scale-target=-1", "--scale-target"),
        ):
            bad = serve(stack, "update", "kserve", "--name=upd-demo", flag, check=False)
            assert bad.returncode == 1, bad.stdout
            assert said in bad.stderr
            assert "Traceback" not in bad.stderr
        assert versions(stack, "upd-demo") == before

        # to tierserve's autoscaler and back: the HPA object goes, then comes back
        moved = serve(stack, "update", "kserve", "--name=upd-demo", "--autoscaler=tierserve")
        assert "horizontalpodautoscaler.autoscaling/upd-demo-hpa deleted" in moved.stdout
        annotations = kube_get(stack, f"{DEPLOYMENTS}/upd-demo-predictor")["metadata"][
            "annotations"
        ]
        assert annotations["autoscaling.tierserve.io/autoscaler"] == "tierserve"
        back = serve(
            stack, "update", "kserve", "--name=upd-demo", "--autoscaler=hpa",
            "--scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL", "--scale-target=70",
        )  # fmt: skip
        assert "horizontalpodautoscaler.autoscaling/upd-demo-hpa configured" in back.stdout
        assert kube_get(stack, f"{HPAS}/upd-demo-hpa")["spec"] == hpa
        annotations = (
            kube_get(stack, f"{DEPLOYMENTS}/upd-demo-predictor")["metadata"].get("annotations")
            or {}
        )
        assert "autoscaling.tierserve.io/autoscaler" not in annotations
    finally:
        serve(stack, "delete", "upd-demo")


def test_update_of_a_missing_job_fails_as_serve_get_does(stack: Stack) -> None:
    missing = serve(stack, "update", "kserve", "--name=no-such-job", "--replicas=2", check=False)
    got = serve(stack, "get", "no-such-job", check=False)
    assert missing.returncode == got.returncode == 1
    assert missing.stderr == got.stderr
    assert "the serving job no-such-job was not found in namespace default" in missing.stderr

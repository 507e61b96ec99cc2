"""``tierserve serve ... --backend kubernetes``: arena's commands against the test cluster."""

from __future__ import annotations

import subprocess
import sys

import pytest
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

"""``serve kserve --readiness-probe-path``: into the InferenceService, and onto the pod
template when served on Kubernetes."""

from __future__ import annotations

import pytest

from tierserve.cli import arena
from tierserve.errors import ValidationError
from tierserve.runtime.kube import serving

COMMAND = ["python -m llama_cpp.server --model /model/m.gguf --port {port}"]


def test_flag_sets_the_probe_path() -> None:
    flags = arena.KServeFlags(
        name="smollm2", gpus=0, readiness_probe_path="/v1/models", command=COMMAND
    )
    service = arena.service_from_flags(flags)
    assert service.spec.readiness_probe is not None
    assert service.spec.readiness_probe.paths() == ("/v1/models",)
    assert arena.manifest(service)["spec"]["readinessProbe"] == {"httpGet": {"path": "/v1/models"}}


def test_no_flag_no_probe() -> None:
    service = arena.service_from_flags(arena.KServeFlags(name="smollm2", command=COMMAND))
    assert service.spec.readiness_probe is None


def test_bad_path_names_the_flag() -> None:
    flags = arena.KServeFlags(name="smollm2", readiness_probe_path="v1/models", command=COMMAND)
    with pytest.raises(ValidationError) as caught:
        arena.service_from_flags(flags)
    assert "--readiness-probe-path" in str(caught.value) and "'v1/models'" in str(caught.value)


def test_kubernetes_pod_gets_the_probe() -> None:
    flags = arena.KServeFlags(
        name="smollm2", readiness_probe_path="/v1/models", port=8000, command=COMMAND
    )
    objects = serving.render(arena.service_from_flags(flags), raw=True)
    [deployment] = [o for o in objects if o["kind"] == "Deployment"]
    [container] = deployment["spec"]["template"]["spec"]["containers"]
    assert container["readinessProbe"] == {"httpGet": {"path": "/v1/models", "port": 8000}}

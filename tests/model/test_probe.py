"""``spec.readinessProbe``: Kubernetes' fields, defaults, and field-level errors."""

from __future__ import annotations

import pytest

from tierserve.errors import ValidationError
from tierserve.model import load_documents
from tierserve.model.probe import DEFAULT_READINESS_PATHS

SERVICE = """\
apiVersion: serving.tierserve.io/v1alpha1
kind: InferenceService
metadata: {{name: smollm2}}
spec:
  command: "python -m llama_cpp.server --port {{port}}"
{probe}
"""


def _service(probe: str) -> object:
    [obj] = load_documents(SERVICE.format(probe=probe))
    return obj


def test_no_probe_means_health_then_models() -> None:
    service = _service("")
    assert service.spec.readiness_probe is None  # type: ignore[attr-defined]
    assert DEFAULT_READINESS_PATHS == ("/health", "/v1/models")


def test_kubernetes_fields_load() -> None:
    service = _service(
        "  readinessProbe:\n"
        "    httpGet: {path: /v1/models, port: 8080}\n"
        "    initialDelaySeconds: 5\n    periodSeconds: 2\n"
        "    timeoutSeconds: 3\n    failureThreshold: 4\n"
    )
    probe = service.spec.readiness_probe  # type: ignore[attr-defined]
    assert probe.paths() == ("/v1/models",)
    assert (probe.initial_delay_seconds, probe.period_seconds) == (5, 2)
    assert (probe.timeout_seconds, probe.failure_threshold) == (3, 4)


@pytest.mark.parametrize(
    ("probe", "field", "said"),
    [
        ("    httpGet: {path: health}", "spec.readinessProbe.httpGet.path", "'health'"),
        ("    periodSeconds: 0", "spec.readinessProbe.periodSeconds", "greater than or equal to 1"),
        ("    failureThreshold: -1", "spec.readinessProbe.failureThreshold", "1"),
        ("    httpGet: {port: 70000}", "spec.readinessProbe.httpGet.port", "65535"),
        ("    httpGet: {port: 9000}", "spec", "readinessProbe.httpGet.port 9000"),
        ("    exec: {command: [true]}", "spec.readinessProbe.exec", "exec"),
    ],
)
def test_bad_probe_fields_are_named(probe: str, field: str, said: str) -> None:
    with pytest.raises(ValidationError) as caught:
        _service("  readinessProbe:\n" + probe)
    text = str(caught.value)
    assert field in text and said in text, text

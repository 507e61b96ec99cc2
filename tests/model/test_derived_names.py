"""Names whose derived names and labels would be invalid are refused at load time, naming
the field, the length, the limit and what the limit protects."""

import random

import pytest

from tierserve.errors import ValidationError
from tierserve.model import InferenceService, Replica, load_documents
from tierserve.model.service import name_limits
from tierserve.policy.naming import replica_name


def service_yaml(name: str, namespace: str = "default", extra: str = "") -> str:
    return (
        "apiVersion: serving.tierserve.io/v1alpha1\nkind: InferenceService\n"
        f"metadata: {{name: {name}, namespace: {namespace}}}\n"
        f"spec: {{command: vllm serve /m{extra}}}\n"
    )


def errors_of(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_documents(text, "f.yaml")
    return [e.render() for e in info.value.errors]


def test_the_longest_name_allowed_gives_valid_replicas_labels_and_host() -> None:
    name = "a" * 48  # 63 - len("isvc.") - len("-predictor") = 48
    (svc,) = load_documents(service_yaml(name))
    assert isinstance(svc, InferenceService)
    replica = replica_name(svc, random.Random(0), set())
    assert len(replica) == 48 + 27  # -predictor (10) -hash (11) -suffix (6)
    # What the service controller creates validates: every label within 63.
    Replica.new(replica, metadata={"labels": svc.replica_labels()}, spec={"service": name})
    assert len(svc.replica_labels()["app"]) == 63
    assert all(len(part) <= 63 for part in svc.host.split("."))


def test_49_characters_is_refused_naming_field_length_limit_and_reason() -> None:
    name = "a" * 49
    assert errors_of(service_yaml(name)) == [
        f"InferenceService {name}: metadata.name: '{name}' is 49 characters; an "
        "InferenceService name must be at most 48 so that the label "
        "app=isvc.<name>-predictor stays within 63"
    ]


def test_253_characters_is_refused_without_printing_the_whole_name() -> None:
    (message,) = errors_of(service_yaml("a" * 253))
    assert "metadata.name: " in message and "is 253 characters" in message
    assert "a" * 100 not in message


def test_a_long_namespace_lowers_the_limit_through_the_host() -> None:
    namespace = "n" * 30
    (svc,) = load_documents(service_yaml("s" * 32, namespace))  # 32 + 1 + 30 = 63
    assert len(svc.host.split(".")[0]) == 63
    (message,) = errors_of(service_yaml("s" * 33, namespace))
    assert message.endswith(
        "metadata.name: 'sssssssssssssssssssssssssssssssss' is 33 characters; an "
        f"InferenceService name must be at most 32 so that in namespace '{namespace}' the "
        "host's first DNS label <name>-<namespace> (<name>-<namespace>.example.com) "
        "stays within 63"
    )


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("deep.seek", "is not a valid InferenceService name"),
        ("7b-model", "starting with a letter"),
    ],
)
def test_service_names_must_also_name_a_kubernetes_service(name: str, why: str) -> None:
    (message,) = errors_of(service_yaml(name))
    assert "metadata.name: " in message and why in message
    assert "(it names the Kubernetes Service <name>-predictor)" in message


@pytest.mark.parametrize(
    ("namespace", "expected"),
    [
        ("../../etc", "'../../etc' is not a valid namespace"),
        ("team.a", "'team.a' is not a valid namespace"),
        ("n" * 64, "is 64 characters; at most 63 are allowed"),
    ],
)
def test_namespaces_are_dns_labels(namespace: str, expected: str) -> None:
    (message,) = errors_of(service_yaml("svc", f"'{namespace}'"))
    assert "metadata.namespace: " in message and expected in message


def test_object_names_are_dns_subdomains_part_by_part() -> None:
    node = "apiVersion: v1\nkind: Node\nmetadata: {name: %s}\n"
    load_documents(node % "a.b-c.d")
    for bad in ("a..b", "a.-b", "-a", "a" * 254):
        assert "metadata.name: " in errors_of(node % bad)[0]


def test_a_claim_name_must_be_a_pod_volume_name() -> None:
    text = service_yaml("svc").replace("spec: {", 'spec: {data: ["llm.model:/model"], ', 1)
    (message,) = errors_of(text)
    assert "spec.data[0].name: 'llm.model' is not a valid claim name for a pod volume" in (message)


def test_limits_of_each_derived_name() -> None:
    limits = [limit for limit, _ in name_limits("default")]
    assert limits == [
        63 - len("isvc.") - len("-predictor"),  # app label value: 48
        63 - len("-predictor"),  # Kubernetes Service name (DNS-1035 label): 53
        63,  # serving.kserve.io/inferenceservice and servingName label values
        63 - len("-default"),  # first DNS label of <name>-default.example.com: 55
        253 - len("-predictor") - len("-0123456789-abcde"),  # replica name: 226
    ]
    assert min(limit for limit, _ in name_limits("n" * 20)) == 63 - 1 - 20

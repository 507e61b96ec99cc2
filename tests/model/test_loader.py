import pytest

from tierserve.errors import ValidationError
from tierserve.examples import seed_text as seed
from tierserve.model import (
    GPU,
    MEMORY,
    InferenceService,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    ResourcePolicy,
    Secret,
    dump_documents,
    load_documents,
)


def errors_of(text: str) -> list[str]:
    with pytest.raises(ValidationError) as info:
        load_documents(text, "f.yaml")
    return [e.render() for e in info.value.errors]


def test_seed_storage_yaml_loads_verbatim() -> None:
    secret, pv, pvc = load_documents(seed("model-storage.yaml"))
    assert isinstance(secret, Secret) and secret.string_data["akId"] == "<your-oss-ak>"
    assert isinstance(pv, PersistentVolume)
    assert pv.spec.csi is not None and pv.spec.csi.driver == "ossplugin.csi.alibabacloud.com"
    assert pv.spec.capacity == {"storage": 30 * 2**30 * 1000}
    assert isinstance(pvc, PersistentVolumeClaim)
    assert pvc.spec.selector is not None
    assert pvc.spec.selector.match_labels == {"alicloud-pvname": "llm-model"}


def test_seed_resourcepolicy_loads_verbatim() -> None:
    (policy,) = load_documents(seed("resourcepolicy.yaml"))
    assert isinstance(policy, ResourcePolicy)
    assert policy.api_version == "scheduling.alibabacloud.com/v1alpha1"
    assert policy.spec.selector == {"app": "isvc.deepseek-predictor"}
    assert [u.resource for u in policy.spec.units] == ["ecs", "eci"]
    assert policy.spec.units[0].node_selector == {"alibabacloud.com/nodepool-id": "np-idc"}
    assert [u.virtual for u in policy.spec.units] == [False, True]
    # ACK's defaults when absent:
    assert policy.spec.when_try_next_units.policy == "LackResourceOrExceedMax"
    assert policy.spec.when_try_next_units.timeout_s == 15 * 60
    assert policy.spec.ignore_terminating_pod is True


def test_own_group_is_accepted_and_round_trips() -> None:
    text = seed("resourcepolicy.yaml").replace(
        "scheduling.alibabacloud.com", "scheduling.tierserve.io"
    )
    (policy,) = load_documents(text)
    (again,) = load_documents(dump_documents([policy]))
    assert again == policy


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "resource: eci",
            "resource: ecx",
            "ResourcePolicy deepseek: spec.units[1].resource: "
            "'ecx' is not one of ecs, eci, acs, elastic",
        ),
        (
            "nodeSelector:",
            "nodeSelectr:",
            "ResourcePolicy deepseek: spec.units[0].nodeSelectr: "
            "unknown field; did you mean 'nodeSelector'?",
        ),
        (
            "strategy: prefer",
            "strategy: always",
            "ResourcePolicy deepseek: spec.strategy: 'always' is not one of prefer, required",
        ),
        (
            "scheduling.alibabacloud.com/v1alpha1",
            "scheduling.example.com/v1",
            "ResourcePolicy deepseek: apiVersion: 'scheduling.example.com/v1' is not one of "
            "scheduling.tierserve.io/v1alpha1, scheduling.alibabacloud.com/v1alpha1",
        ),
        (
            "kind: ResourcePolicy",
            "kind: ResourcePolicie",
            "ResourcePolicie deepseek: kind: 'ResourcePolicie' is not one of Node, "
            "ResourcePolicy, InferenceService, Replica, PersistentVolume, PersistentVolumeClaim, "
            "Secret; did you mean 'ResourcePolicy'?",
        ),
        (
            "  strategy: prefer",
            "  strategy: prefer\n  whenTryNextUnits:\n    timeout: soon",
            "ResourcePolicy deepseek: spec.whenTryNextUnits.timeout: "
            "'soon' is not a duration; expected e.g. 15m, 1m30s, 90s or 500ms",
        ),
        (
            "  strategy: prefer",
            "  strategy: prefer\n  unitz: []",
            "ResourcePolicy deepseek: spec.unitz: unknown field; did you mean 'units'?",
        ),
    ],
)
def test_broken_policy_names_document_field_value_and_expectation(
    old: str, new: str, expected: str
) -> None:
    text = seed("resourcepolicy.yaml")
    assert old in text
    assert errors_of(text.replace(old, new, 1)) == [expected]


def test_every_error_of_every_document_is_reported() -> None:
    text = seed("model-storage.yaml").replace("storage: 30Gi", "storage: 30Gx", 1)
    text = text.replace("ReadOnlyMany", "ReadOnlyMeny", 1)
    assert errors_of(text) == [
        "PersistentVolume llm-model: spec.capacity: storage: "
        "'30Gx' is not a Kubernetes quantity such as 4, 500m, 12Gi or 1k",
        "PersistentVolume llm-model: spec.accessModes[0]: 'ReadOnlyMeny' is not one of "
        "ReadWriteOnce, ReadOnlyMany, ReadWriteMany, ReadWriteOncePod",
    ]


def test_missing_required_fields_and_non_mappings() -> None:
    assert errors_of("apiVersion: v1\nkind: Node\nmetadata: {}\n") == [
        "Node (document 1): metadata.name: required field is missing"
    ]
    assert errors_of("kind: Node\nmetadata: {name: a}\n") == [
        "Node a: apiVersion: required field is missing"
    ]
    assert errors_of("- just\n- a list\n") == ["document 1: ['just', 'a list'] is not a mapping"]


def test_yaml_syntax_error_names_line_and_column() -> None:
    with pytest.raises(ValidationError) as info:
        load_documents("kind: Node\nmetadata: {name: a\n", "bad.yaml")
    assert str(info.value).startswith("bad.yaml: line 3, column 1: not valid YAML")


def test_duplicate_objects_in_one_input_are_rejected() -> None:
    text = seed("resourcepolicy.yaml")
    assert errors_of(text + "---\n" + text) == [
        "ResourcePolicy deepseek: defined twice (documents 1 and 2)"
    ]


def test_secret_values_are_never_printed_back() -> None:
    (secret, *_rest) = load_documents(seed("model-storage.yaml"))
    dumped = dump_documents([secret])
    assert "<your-oss-ak>" not in dumped and "<your-oss-sk>" not in dumped
    assert "akId: <redacted>" in dumped
    assert "<your-oss-ak>" not in repr(secret)


NODE = """
apiVersion: v1
kind: Node
metadata:
  name: virtual-kubelet-cn-hangzhou-b
  labels: {type: virtual-kubelet}
spec:
  taints:
  - {key: virtual-kubelet.io/provider, value: alibabacloud, effect: NoSchedule}
  virtual: {coldStartSeconds: 45, pricePerGpuHour: 2.5, gpuQuota: 8}
  gpu: {model: V100-32G}
status:
  capacity: {nvidia.com/gpu: 100, cpu: 1k, memory: 4Ti, pods: 10k}
"""


def test_virtual_node_quota_caps_gpus_and_allocatable_defaults_to_capacity() -> None:
    (node,) = load_documents(NODE)
    assert isinstance(node, Node) and node.virtual and node.tier == "cloud"
    assert node.status.allocatable == node.status.capacity
    assert node.allocatable()[GPU] == 8_000  # min(100, quota 8) GPUs
    assert node.allocatable()[MEMORY] == 4 * 2**40 * 1000
    assert node.spec.gpu is not None and node.spec.gpu.emulated


def test_bad_gpu_model_and_negative_quota() -> None:
    text = NODE.replace("V100-32G", "V100").replace("gpuQuota: 8", "gpuQuota: -1")
    assert errors_of(text) == [
        "Node virtual-kubelet-cn-hangzhou-b: spec.virtual.gpuQuota: "
        "-1: input should be greater than or equal to 0",
        "Node virtual-kubelet-cn-hangzhou-b: spec.gpu.model: "
        "'V100' is not one of V100-32G, A10-24G, A100-80G, H100-80G, H200-141G",
    ]


SERVICE = """
apiVersion: serving.tierserve.io/v1alpha1
kind: InferenceService
metadata: {name: deepseek}
spec:
  gpus: 1
  cpu: "4"
  memory: 12Gi
  minReplicas: 1
  maxReplicas: 3
  scaleMetric: DCGM_CUSTOM_PROCESS_SM_UTIL
  scaleTarget: 50
  data: ["llm-model:/model/DeepSeek-R1-Distill-Qwen-7B"]
  annotations: {k8s.aliyun.com/eci-use-specs: ecs.gn6e-c12g1.3xlarge}
  command: >-
    vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080 --trust-remote-code
    --served-model-name deepseek-r1 --max-model-len 32768 --gpu-memory-utilization 0.95
    --enforce-eager --dtype=half
"""


def test_inference_service_derives_labels_host_requests_and_model_name() -> None:
    (svc,) = load_documents(SERVICE)
    assert isinstance(svc, InferenceService)
    assert svc.replica_labels()["app"] == "isvc.deepseek-predictor"
    assert svc.host == "deepseek-default.example.com"
    assert svc.requests() == {GPU: 1_000, "cpu": 4_000, MEMORY: 12 * 2**30 * 1000}
    assert svc.served_model_name() == "deepseek-r1"
    assert svc.spec.data[0].name == "llm-model"
    assert svc.spec.data[0].mount_path == "/model/DeepSeek-R1-Distill-Qwen-7B"
    assert [(m.name, m.target) for m in svc.scale_metrics()] == [
        ("DCGM_CUSTOM_PROCESS_SM_UTIL", 50.0)
    ]


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        (
            "minReplicas: 1",
            "minReplicas: 5",
            "InferenceService deepseek: spec: minReplicas 5 is greater than maxReplicas 3",
        ),
        (
            '["llm-model:/model/DeepSeek-R1-Distill-Qwen-7B"]',
            '["llm-model"]',
            "InferenceService deepseek: spec.data[0]: 'llm-model' is not a --data value; "
            "expected <name>:<absolute mount path>, e.g. llm-model:/model/DeepSeek-R1-Distill-"
            "Qwen-7B",
        ),
        (
            "memory: 12Gi",
            "memory: 12GB",
            "InferenceService deepseek: spec.memory: "
            "'12GB' is not a Kubernetes quantity such as 4, 500m, 12Gi or 1k",
        ),
        (
            "scaleTarget: 50",
            "scaleTarget: 0",
            "InferenceService deepseek: spec.scaleTarget: 0: input should be greater than 0",
        ),
    ],
)
def test_inference_service_errors(old: str, new: str, expected: str) -> None:
    assert old in SERVICE
    assert errors_of(SERVICE.replace(old, new, 1)) == [expected]

"""Small builders for placement and scale-in tests.

``node("idc001", gpu=1).label(pool="idc")``, ``pod("p1").on("idc001", unit=0)``,
``policy("deepseek", app="x").unit("ecs", pool="idc").unit("eci")``; each ``.build()``
returns the model object, and ``snapshot(nodes, pods)`` accepts builders or objects.
Defaults: a node has 16 CPUs, 128Gi memory and no pod limit; a pod asks for 1 GPU,
4 CPUs and 12Gi (the seed's ``arena serve --gpus=1 --cpu=4 --memory=12Gi``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tierserve.model import VIRTUAL_KUBELET_TAINT, Node, Phase, Replica, ResourcePolicy
from tierserve.model.loader import load_documents
from tierserve.policy.snapshot import Snapshot

SEED_POLICY = Path(__file__).resolve().parents[2] / "tierserve/examples/seed/resourcepolicy.yaml"
SEED_APP = "isvc.deepseek-predictor"
IDC_POOL = {"alibabacloud.com/nodepool-id": "np-idc"}
VK = "virtual-kubelet-cn-hangzhou-b"


def _labels(pairs: Mapping[str, str] | None, kw: Mapping[str, str]) -> dict[str, str]:
    return {**(pairs or {}), **kw}


class NodeBuilder:
    def __init__(self, name: str, gpu: int, cpu: int, memory: str, pods: int | None) -> None:
        self.name = name
        self.capacity: dict[str, Any] = {"nvidia.com/gpu": gpu, "cpu": cpu, "memory": memory}
        if pods is not None:
            self.capacity["pods"] = pods
        self.labels: dict[str, str] = {}
        self.taints: list[dict[str, str]] = []
        self.spec: dict[str, Any] = {}

    def label(self, pairs: Mapping[str, str] | None = None, **kw: str) -> NodeBuilder:
        self.labels.update(_labels(pairs, kw))
        return self

    def taint(self, key: str, value: str = "", effect: str = "NoSchedule") -> NodeBuilder:
        self.taints.append({"key": key, "value": value, "effect": effect})
        return self

    def virtual(self, quota: int | None = None, taint: bool = True) -> NodeBuilder:
        self.spec["virtual"] = {} if quota is None else {"gpuQuota": quota}
        if taint:
            t = VIRTUAL_KUBELET_TAINT
            self.taint(t.key, t.value, t.effect)
        return self

    def cordon(self) -> NodeBuilder:
        self.spec["unschedulable"] = True
        return self

    def build(self) -> Node:
        node: Node = Node.new(
            self.name,
            metadata={"labels": self.labels},
            spec={**self.spec, "taints": self.taints},
            status={"capacity": self.capacity},
        )
        return node


def node(
    name: str, gpu: int = 0, cpu: int = 16, memory: str = "128Gi", pods: int | None = None
) -> NodeBuilder:
    return NodeBuilder(name, gpu, cpu, memory, pods)


def idc(name: str = "idc001", gpu: int = 1) -> NodeBuilder:
    """An IDC node of the seed's node pool."""
    return node(name, gpu=gpu).label(IDC_POOL)


def virtual(name: str = VK, gpu: int = 1000, quota: int | None = None) -> NodeBuilder:
    """A virtual node with the virtual-kubelet taint and a large capacity."""
    return node(name, gpu=gpu, cpu=10_000, memory="100Ti").virtual(quota)


class PodBuilder:
    def __init__(self, name: str, gpu: int, cpu: int, memory: str, namespace: str) -> None:
        self.name = name
        self.namespace = namespace
        self.requests: dict[str, Any] = {"cpu": cpu, "memory": memory}
        if gpu:
            self.requests["nvidia.com/gpu"] = gpu
        self.labels: dict[str, str] = {"app": SEED_APP}
        self.annotations: dict[str, str] = {}
        self.tolerations: list[dict[str, str]] = []
        self.node_selector: dict[str, str] = {}
        self.status: dict[str, Any] = {"phase": "Pending", "createdS": 0.0}

    def label(self, pairs: Mapping[str, str] | None = None, **kw: str) -> PodBuilder:
        self.labels.update(_labels(pairs, kw))
        return self

    def unlabel(self, *keys: str) -> PodBuilder:
        for key in keys:
            self.labels.pop(key, None)
        return self

    def annotate(self, pairs: Mapping[str, str] | None = None, **kw: str) -> PodBuilder:
        self.annotations.update(_labels(pairs, kw))
        return self

    def tolerate(self, key: str, operator: str = "Exists", value: str = "") -> PodBuilder:
        self.tolerations.append({"key": key, "operator": operator, "value": value})
        return self

    def select(self, pairs: Mapping[str, str] | None = None, **kw: str) -> PodBuilder:
        self.node_selector.update(_labels(pairs, kw))
        return self

    def on(self, node_name: str, unit: int | None = None, phase: str = "Ready") -> PodBuilder:
        self.status.update(nodeName=node_name, unit=unit, phase=phase)
        return self

    def in_unit(self, unit: int, phase: str = "Pending") -> PodBuilder:
        self.status.update(unit=unit, phase=phase)
        return self

    def phase(self, phase: Phase | str) -> PodBuilder:
        self.status["phase"] = str(phase)
        return self

    def created(self, created_s: float) -> PodBuilder:
        self.status["createdS"] = created_s
        return self

    def build(self) -> Replica:
        replica: Replica = Replica.new(
            self.name,
            self.namespace,
            metadata={"labels": self.labels, "annotations": self.annotations},
            spec={
                "service": "deepseek",
                "requests": self.requests,
                "tolerations": self.tolerations,
                "nodeSelector": self.node_selector,
            },
            status=self.status,
        )
        return replica


def pod(
    name: str, gpu: int = 1, cpu: int = 4, memory: str = "12Gi", namespace: str = "default"
) -> PodBuilder:
    return PodBuilder(name, gpu, cpu, memory, namespace)


class PolicyBuilder:
    def __init__(self, name: str, selector: dict[str, str], namespace: str) -> None:
        self.name = name
        self.namespace = namespace
        self.spec: dict[str, Any] = {"selector": selector, "strategy": "prefer", "units": []}
        self.meta: dict[str, Any] = {}

    def unit(
        self,
        resource: str = "ecs",
        selector: Mapping[str, str] | None = None,
        **fields: Any,
    ) -> PolicyBuilder:
        self.spec["units"].append(
            {"resource": resource, "nodeSelector": dict(selector or {}), **fields}
        )
        return self

    def seed_units(self, **idc_fields: Any) -> PolicyBuilder:
        """The seed's units: IDC pool (``ecs``) then the virtual node (``eci``)."""
        return self.unit("ecs", IDC_POOL, **idc_fields).unit("eci")

    def when_try_next(self, policy: str, timeout: str | None = None) -> PolicyBuilder:
        self.spec["whenTryNextUnits"] = {"policy": policy}
        if timeout is not None:
            self.spec["whenTryNextUnits"]["timeout"] = timeout
        return self

    def set(self, **fields: Any) -> PolicyBuilder:
        self.spec.update(fields)
        return self

    def created_at(self, rfc3339: str) -> PolicyBuilder:
        self.meta["creationTimestamp"] = rfc3339
        return self

    def build(self) -> ResourcePolicy:
        built: ResourcePolicy = ResourcePolicy.new(
            self.name, self.namespace, metadata=self.meta, spec=self.spec
        )
        return built


def policy(name: str = "deepseek", namespace: str = "default", **selector: str) -> PolicyBuilder:
    return PolicyBuilder(name, selector or {"app": SEED_APP}, namespace)


def seed_policy() -> ResourcePolicy:
    """The seed's ResourcePolicy, loaded from its YAML."""
    (doc,) = load_documents(SEED_POLICY.read_text(encoding="utf-8"), str(SEED_POLICY))
    assert isinstance(doc, ResourcePolicy)
    return doc


def _built(items: Iterable[Any]) -> list[Any]:
    return [i.build() if hasattr(i, "build") else i for i in items]


def snapshot(nodes: Iterable[Any], pods: Iterable[Any] = ()) -> Snapshot:
    return Snapshot.build(_built(nodes), _built(pods))

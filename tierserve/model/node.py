"""Node: a machine (or a virtual, elastic pool of cloud capacity) that replicas run on.

A Node's ``status.capacity`` lists what replicas may request on it. ``cpu`` and ``memory``
are never silently 0: left out, they default to the default cluster's figures, 16 CPUs and
64Gi on an IDC node (``idc001``), 1k CPUs and 4Ti on a virtual node (elastic cloud
capacity). ``nvidia.com/gpu`` left out is 0 (a CPU node); ``pods`` left out means no pod
limit. ``status.allocatable`` defaults to the capacity, resource by resource for cpu and
memory.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field, model_validator

from tierserve.model.base import Strict, TypedObject
from tierserve.model.quantity import parse_milli
from tierserve.model.resources import CPU, GPU, MEMORY, ResourceList, Taint

GPUModel = Literal["V100-32G", "A10-24G", "A100-80G", "H100-80G", "H200-141G"]

VIRTUAL_KUBELET_TAINT = Taint(
    key="virtual-kubelet.io/provider", value="alibabacloud", effect="NoSchedule"
)
"""The taint ACK puts on its virtual nodes; eci/acs units tolerate it implicitly."""


IDC_DEFAULT_CAPACITY = {CPU: "16", MEMORY: "64Gi"}
"""cpu and memory of an IDC node whose capacity leaves them out: the default ``idc001``."""
VIRTUAL_DEFAULT_CAPACITY = {CPU: "1k", MEMORY: "4Ti"}
"""cpu and memory of a virtual node whose capacity leaves them out: elastic, effectively
unbounded next to its GPU quota."""


class VirtualSpec(Strict):
    """What makes a node *virtual*: elastic cloud capacity billed per use."""

    cold_start_seconds: float = Field(default=45.0, ge=0)
    """Image pull + weight load on a serverless GPU before a replica can start (s)."""
    price_per_gpu_hour: float = Field(default=0.0, ge=0)
    """Billing rate per GPU-hour, from the start of provisioning to termination."""
    gpu_quota: int | None = Field(default=None, ge=0)
    """At most this many GPUs in use at once on the node (an account quota); none = no quota."""


class GPUSpec(Strict):
    """The node's GPUs: a model name and whether they are emulated (no real GPU needed)."""

    model: GPUModel
    emulated: bool = True


class NodeSpec(Strict):
    taints: list[Taint] = Field(default_factory=list)
    unschedulable: bool = False
    virtual: VirtualSpec | None = None
    gpu: GPUSpec | None = None
    # Kubernetes fields that round-trip from `kubectl get node -o yaml`.
    pod_cidr: str | None = Field(default=None, alias="podCIDR")
    provider_id: str | None = Field(default=None, alias="providerID")


class NodeStatus(Strict):
    capacity: ResourceList = Field(default_factory=dict)
    allocatable: ResourceList = Field(default_factory=dict)
    addresses: list[dict[str, str]] = Field(default_factory=list)
    node_info: dict[str, Any] = Field(default_factory=dict)
    conditions: list[dict[str, Any]] = Field(default_factory=list)


class Node(TypedObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = ("v1", "tierserve.io/v1alpha1")
    KIND: ClassVar[str] = "Node"
    NAMESPACED: ClassVar[bool] = False

    api_version: str = "v1"
    kind: str = "Node"
    spec: NodeSpec = Field(default_factory=NodeSpec)
    status: NodeStatus = Field(default_factory=NodeStatus)

    @model_validator(mode="after")
    def _capacity_defaults(self) -> Node:
        """cpu/memory left out of the capacity get the documented defaults (module
        docstring); allocatable defaults to the capacity."""
        defaults = VIRTUAL_DEFAULT_CAPACITY if self.virtual else IDC_DEFAULT_CAPACITY
        capacity = dict(self.status.capacity)
        for name, amount in defaults.items():
            capacity.setdefault(name, parse_milli(amount))
        allocatable = dict(self.status.allocatable or capacity)
        for name in defaults:
            allocatable.setdefault(name, capacity[name])
        if (capacity, allocatable) != (self.status.capacity, self.status.allocatable):
            status = self.status.model_copy(
                update={"capacity": capacity, "allocatable": allocatable}
            )
            object.__setattr__(self, "status", status)
        return self

    @property
    def virtual(self) -> bool:
        return self.spec.virtual is not None

    @property
    def labels(self) -> dict[str, str]:
        return self.metadata.labels

    def allocatable(self) -> dict[str, int]:
        """Allocatable milli-amounts; a virtual node's GPU quota caps its GPUs."""
        alloc = dict(self.status.allocatable)
        quota = self.spec.virtual.gpu_quota if self.spec.virtual else None
        if quota is not None:
            alloc[GPU] = min(alloc.get(GPU, quota * 1000), quota * 1000)
        return alloc

    @property
    def tier(self) -> str:
        """``cloud`` for a virtual node, ``idc`` otherwise (for tables and metrics)."""
        return "cloud" if self.virtual else "idc"

"""The default local cluster, mirroring the seed: one IDC node and one virtual node.

``idc001`` is an IDC machine in node pool ``np-idc`` with one emulated V100-32G;
``virtual-kubelet-cn-hangzhou-b`` is elastic cloud capacity behind ACK's virtual-kubelet
taint, with emulated V100-32G GPUs, a GPU quota, a cold start and a price per GPU-hour.
A cluster file (multi-document YAML of Nodes, see ``tierserve/examples/cluster.yaml``)
replaces these defaults. ``up``'s ``--virtual-*`` flags set the default virtual node's cold
start, price and quota; with a cluster file, each flag given overrides that field of every
virtual node in the file (the file's other fields stay).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from tierserve.errors import FieldError, ValidationError
from tierserve.model import VIRTUAL_KUBELET_TAINT, Node, load_documents

IDC_NODE = "idc001"
VIRTUAL_NODE = "virtual-kubelet-cn-hangzhou-b"
IDC_POOL_LABEL = "alibabacloud.com/nodepool-id"

DEFAULT_COLD_START_S = 45.0
"""Image pull + weight load of a 7B model on a serverless GPU (order of a minute)."""
DEFAULT_PRICE_PER_GPU_HOUR = 2.5
"""Illustrative on-demand price of one V100-class serverless GPU-hour; set your own."""
DEFAULT_GPU_QUOTA = 8


@dataclass(frozen=True)
class VirtualNodeSettings:
    cold_start_s: float = DEFAULT_COLD_START_S
    price_per_gpu_hour: float = DEFAULT_PRICE_PER_GPU_HOUR
    gpu_quota: int | None = DEFAULT_GPU_QUOTA


@dataclass(frozen=True)
class VirtualNodeOverrides:
    """``up``'s ``--virtual-*`` flags; None: not given."""

    cold_start_s: float | None = None
    price_per_gpu_hour: float | None = None
    gpu_quota: int | None = None

    @property
    def given(self) -> bool:
        return any(
            v is not None for v in (self.cold_start_s, self.price_per_gpu_hour, self.gpu_quota)
        )

    def settings(self) -> VirtualNodeSettings:
        """The default virtual node's settings: the defaults, with what was given."""
        given = {k: v for k, v in vars(self).items() if v is not None}
        return replace(VirtualNodeSettings(), **given)


def load_cluster(text: str, source: str) -> list[Node]:
    """The Nodes of a cluster file; ValidationError for a bad Node, any other kind, or none."""
    objects = load_documents(text, source)
    errors = [
        FieldError(
            f"{o.KIND} {o.name}",
            "a cluster file holds only Nodes; apply the rest with `tierserve apply -f`",
        )
        for o in objects
        if not isinstance(o, Node)
    ]
    if not objects:
        errors.append(FieldError("", "holds no Node"))
    if errors:
        raise ValidationError(source, errors)
    return [o for o in objects if isinstance(o, Node)]


def override_virtual(nodes: list[Node], overrides: VirtualNodeOverrides) -> list[Node]:
    """``nodes`` with the given overrides applied to every virtual node's spec."""
    changes = {
        field: value
        for field, value in (
            ("cold_start_seconds", overrides.cold_start_s),
            ("price_per_gpu_hour", overrides.price_per_gpu_hour),
            ("gpu_quota", overrides.gpu_quota),
        )
        if value is not None
    }
    out = []
    for node in nodes:
        if node.spec.virtual is not None and changes:
            virtual = node.spec.virtual.model_copy(update=changes)
            node = node.model_copy(
                update={"spec": node.spec.model_copy(update={"virtual": virtual})}
            )
        out.append(node)
    return out


def default_nodes(virtual: VirtualNodeSettings | None = None) -> list[Node]:
    """The seed's two nodes."""
    v = virtual or VirtualNodeSettings()
    idc: Node = Node.new(
        IDC_NODE,
        metadata={"labels": {IDC_POOL_LABEL: "np-idc", "kubernetes.io/hostname": IDC_NODE}},
        spec={"gpu": {"model": "V100-32G", "emulated": True}},
        status={
            "capacity": {"nvidia.com/gpu": 1, "cpu": 16, "memory": "64Gi", "pods": 110},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        },
    )
    cloud: Node = Node.new(
        VIRTUAL_NODE,
        metadata={
            "labels": {
                "type": "virtual-kubelet",
                "kubernetes.io/role": "agent",
                "kubernetes.io/hostname": VIRTUAL_NODE,
            }
        },
        spec={
            "taints": [VIRTUAL_KUBELET_TAINT.to_dict()],
            "gpu": {"model": "V100-32G", "emulated": True},
            "virtual": {
                "coldStartSeconds": v.cold_start_s,
                "pricePerGpuHour": v.price_per_gpu_hour,
                "gpuQuota": v.gpu_quota,
            },
        },
        status={
            "capacity": {"nvidia.com/gpu": 100, "cpu": "1k", "memory": "4Ti", "pods": "10k"},
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
        },
    )
    return [idc, cloud]

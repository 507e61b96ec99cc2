"""The default local cluster, mirroring the seed: one IDC node and one virtual node.

``idc001`` is an IDC machine in node pool ``np-idc`` with one emulated V100-32G;
``virtual-kubelet-cn-hangzhou-b`` is elastic cloud capacity behind ACK's virtual-kubelet
taint, with emulated V100-32G GPUs, a GPU quota, a cold start and a price per GPU-hour.
A cluster file (multi-document YAML of Nodes) replaces these defaults; ``up``'s flags
override the virtual node's cold start, price and quota.
"""

from __future__ import annotations

from dataclasses import dataclass

from tierserve.model import VIRTUAL_KUBELET_TAINT, Node

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

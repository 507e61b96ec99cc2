"""GPU metrics of replicas on real NVIDIA GPUs, from NVML, as scrape values.

A replica on a node with ``spec.gpu.emulated: false`` runs a real engine; vLLM exports no
DCGM gauges of its own, so the control plane reads them from NVML (``nvml.py``) for the
replica's process tree and GPUs and records them with the replica's scraped metrics,
under dcgm-exporter's names (``DCGM_CUSTOM_PROCESS_SM_UTIL``, ``DCGM_FI_DEV_GPU_UTIL``,
...), so ``--scale-metric=DCGM_CUSTOM_PROCESS_SM_UTIL`` works the same on real and on
emulated GPUs. Several label sets of one name add up, as the scraper does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable

from tierserve.errors import FieldError, ValidationError
from tierserve.model import Node
from tierserve.runtime.local.nvml import Nvml
from tierserve.runtime.local.procfs import descendants

INSTALL_HINT = "install it with pip install 'tierserve[nvidia]' (nvidia-ml-py)"


def real_gpu_nodes(nodes: Iterable[Node]) -> list[Node]:
    """Nodes whose GPUs are real NVIDIA GPUs (``spec.gpu.emulated: false``)."""
    return [n for n in nodes if n.spec.gpu is not None and not n.spec.gpu.emulated]


class GpuMetrics:
    """NVML readings per replica; ``check`` says clearly when real GPUs cannot be read."""

    def __init__(self, nvml: Nvml, tree: Callable[[int], Collection[int]] = descendants) -> None:
        self.nvml = nvml
        self._tree = tree

    def check(self, nodes: Iterable[Node]) -> None:
        """Raise ``ValidationError`` naming each real-GPU node when NVML is unavailable
        (``nvidia-ml-py`` missing, or no driver): their GPU metrics could not be read."""
        real = real_gpu_nodes(nodes)
        if not real:
            return
        inventory = self.nvml.inventory()
        if inventory.available:
            return
        raise ValidationError(
            "cluster",
            [
                FieldError(
                    f"Node {n.name}: spec.gpu.emulated",
                    f"false (real NVIDIA GPUs), but {inventory.reason}; {INSTALL_HINT}, "
                    "or set spec.gpu.emulated: true",
                )
                for n in real
            ],
        )

    def values(self, pid: int, gpus: Collection[int], namespace: str, pod: str) -> dict[str, float]:
        """The replica's dcgm-style gauges, summed per name (empty when NVML is not there)."""
        gauges = self.nvml.replica_gauges(
            self._tree(pid), namespace=namespace, pod=pod, gpus=gpus or None
        )
        out: dict[str, float] = {}
        for gauge in gauges:
            out[gauge.name] = out.get(gauge.name, 0.0) + gauge.value
        return out

    def close(self) -> None:
        self.nvml.close()


class NvmlSource:
    """NVML's gauges as a ``policy.signals.MetricsSource``, for the replicas of real-GPU
    nodes the control plane names before each scrape (``on_gpus``)."""

    def __init__(self, metrics: GpuMetrics) -> None:
        self.metrics = metrics
        self.on_gpus: dict[tuple[str, str], tuple[int, tuple[int, ...]]] = {}
        """(namespace, replica) -> (pid, GPU indices) of replicas on real GPUs."""

    def signals(self, key: tuple[str, str], now: float) -> dict[str, float]:
        on = self.on_gpus.get(key)
        if on is None:
            return {}
        pid, gpus = on
        return self.metrics.values(pid, gpus, key[0], key[1])

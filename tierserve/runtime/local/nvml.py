"""Real NVIDIA GPUs through NVML (``nvidia-ml-py``, imported as ``pynvml``, lazily).

Without the package or a driver there are no NVIDIA GPUs, and every function says
so in ``GpuInventory.reason`` instead of raising. The NVML module is passed in
(``Nvml(module)``; ``Nvml.load()`` imports the real one), so tests hand in a fake.

Per-replica gauges are named and labelled like dcgm-exporter's (``gpu``, ``UUID``,
``device``, ``modelName``, ``Hostname``, ``container``, ``namespace``, ``pod``), the
same as the emulator exports, so autoscaling reads one metric on either:

* ``DCGM_FI_DEV_GPU_UTIL``: the GPU's utilisation (%), from
  ``nvmlDeviceGetUtilizationRates``.
* ``DCGM_FI_DEV_FB_USED``: the GPU's frame buffer in use (MiB).
* ``DCGM_CUSTOM_PROCESS_SM_UTIL`` (label ``pid``): one process's SM utilisation (%),
  the newest ``nvmlDeviceGetProcessUtilization`` sample for it.
* ``DCGM_CUSTOM_PROCESS_MEM_USED`` (label ``pid``): that process's GPU memory (MiB),
  from ``nvmlDeviceGetComputeRunningProcesses``.

A replica's processes are its pid and descendants (vLLM runs its engine core and
workers as children; ``procfs.descendants`` finds them).
"""

from __future__ import annotations

import contextlib
import importlib
import socket
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, cast

MIB = 1024 * 1024
NOT_INSTALLED = "no NVIDIA GPUs: nvidia-ml-py (pynvml) is not installed"


class NvmlModule(Protocol):
    """The part of ``pynvml`` tierserve uses."""

    @property
    def NVMLError(self) -> type[Exception]: ...

    def nvmlInit(self) -> None: ...
    def nvmlShutdown(self) -> None: ...
    def nvmlDeviceGetCount(self) -> int: ...
    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any: ...
    def nvmlDeviceGetName(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetUUID(self, handle: Any) -> str | bytes: ...
    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any: ...
    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any: ...
    def nvmlDeviceGetProcessUtilization(self, handle: Any, lastSeenTimeStamp: int) -> Any: ...
    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> Any: ...


def load_nvml() -> NvmlModule | None:
    """The real ``pynvml`` module, or None when ``nvidia-ml-py`` is not installed."""
    try:
        module = importlib.import_module("pynvml")
    except ImportError:
        return None
    return cast(NvmlModule, module)


@dataclass(frozen=True)
class GpuInfo:
    index: int
    name: str
    uuid: str
    memory_total_mib: int
    memory_used_mib: int
    utilization_pct: float


@dataclass(frozen=True)
class GpuInventory:
    """The machine's NVIDIA GPUs; empty with a ``reason`` when there are none."""

    gpus: tuple[GpuInfo, ...] = ()
    reason: str = ""

    @property
    def available(self) -> bool:
        return bool(self.gpus)


@dataclass(frozen=True)
class ProcessGpuUsage:
    gpu: int
    pid: int
    sm_util_pct: float
    memory_used_mib: float


@dataclass(frozen=True)
class Gauge:
    name: str
    help: str
    value: float
    labels: tuple[tuple[str, str], ...] = field(default=())


class Nvml:
    """NVML, initialised on first use; ``close()`` shuts it down."""

    def __init__(self, module: NvmlModule | None) -> None:
        self._nvml = module
        self._initialised = False
        self._init_error = "" if module is not None else NOT_INSTALLED

    @classmethod
    def load(cls) -> Nvml:
        return cls(load_nvml())

    def _ready(self) -> NvmlModule | None:
        nvml = self._nvml
        if nvml is None or self._init_error:
            return None
        if not self._initialised:
            try:
                nvml.nvmlInit()
            except nvml.NVMLError as exc:
                self._init_error = f"no NVIDIA GPUs: NVML did not initialise: {exc}"
                return None
            self._initialised = True
        return nvml

    def close(self) -> None:
        if self._nvml is not None and self._initialised:
            self._initialised = False
            with contextlib.suppress(self._nvml.NVMLError):
                self._nvml.nvmlShutdown()

    def inventory(self) -> GpuInventory:
        nvml = self._ready()
        if nvml is None:
            return GpuInventory(reason=self._init_error)
        try:
            gpus = tuple(self._info(nvml, i) for i in range(nvml.nvmlDeviceGetCount()))
        except nvml.NVMLError as exc:
            return GpuInventory(reason=f"no NVIDIA GPUs: NVML failed: {exc}")
        return GpuInventory(gpus, "" if gpus else "no NVIDIA GPUs: NVML reports none")

    def process_usage(
        self, pids: Collection[int], gpus: Collection[int] | None = None
    ) -> list[ProcessGpuUsage]:
        """SM utilisation and memory of each of ``pids`` on each GPU it uses."""
        nvml = self._ready()
        if nvml is None:
            return []
        wanted = set(pids)
        usage: list[ProcessGpuUsage] = []
        for index in self._indices(nvml, gpus):
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            sm = _newest_sm_util(nvml, handle)
            memory = _process_memory(nvml, handle)
            for pid in sorted(wanted & (set(sm) | set(memory))):
                usage.append(ProcessGpuUsage(index, pid, sm.get(pid, 0.0), memory.get(pid, 0.0)))
        return usage

    def replica_gauges(
        self,
        pids: Collection[int],
        namespace: str = "",
        pod: str = "",
        gpus: Collection[int] | None = None,
        container: str = "kserve-container",
    ) -> list[Gauge]:
        """dcgm-exporter-style gauges for one replica: its GPUs (those given, else those
        any of ``pids`` runs on) and its processes on them."""
        nvml = self._ready()
        if nvml is None:
            return []
        usage = self.process_usage(pids, gpus)
        indices = sorted(set(gpus) if gpus is not None else {u.gpu for u in usage})
        host = socket.gethostname()
        gauges: list[Gauge] = []
        for index in indices:
            info = self._info(nvml, index)
            base = (
                ("gpu", str(index)),
                ("UUID", info.uuid),
                ("device", f"nvidia{index}"),
                ("modelName", info.name),
                ("Hostname", host),
                ("container", container),
                ("namespace", namespace),
                ("pod", pod),
            )
            gauges.append(
                Gauge("DCGM_FI_DEV_GPU_UTIL", "GPU utilization (in %).", info.utilization_pct, base)
            )
            gauges.append(
                Gauge(
                    "DCGM_FI_DEV_FB_USED",
                    "Framebuffer memory used (in MiB).",
                    info.memory_used_mib,
                    base,
                )
            )
            for u in (u for u in usage if u.gpu == index):
                labels = (*base, ("pid", str(u.pid)))
                gauges.append(
                    Gauge(
                        "DCGM_CUSTOM_PROCESS_SM_UTIL",
                        "SM utilization of the process on the GPU (in %).",
                        u.sm_util_pct,
                        labels,
                    )
                )
                gauges.append(
                    Gauge(
                        "DCGM_CUSTOM_PROCESS_MEM_USED",
                        "GPU memory used by the process (in MiB).",
                        u.memory_used_mib,
                        labels,
                    )
                )
        return gauges

    def _indices(self, nvml: NvmlModule, gpus: Collection[int] | None) -> list[int]:
        return sorted(gpus) if gpus is not None else list(range(nvml.nvmlDeviceGetCount()))

    def _info(self, nvml: NvmlModule, index: int) -> GpuInfo:
        handle = nvml.nvmlDeviceGetHandleByIndex(index)
        memory = nvml.nvmlDeviceGetMemoryInfo(handle)
        try:
            util = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
        except nvml.NVMLError:
            util = 0.0  # not supported on some (virtualised) GPUs
        return GpuInfo(
            index=index,
            name=_text(nvml.nvmlDeviceGetName(handle)),
            uuid=_text(nvml.nvmlDeviceGetUUID(handle)),
            memory_total_mib=int(memory.total) // MIB,
            memory_used_mib=int(memory.used) // MIB,
            utilization_pct=util,
        )


def sm_util_pct(usage: Sequence[ProcessGpuUsage]) -> float:
    """A replica's SM utilisation: its processes' sum per GPU, the busiest GPU (%)."""
    per_gpu: dict[int, float] = {}
    for u in usage:
        per_gpu[u.gpu] = per_gpu.get(u.gpu, 0.0) + u.sm_util_pct
    return min(100.0, max(per_gpu.values(), default=0.0))


def render_gauges(gauges: Sequence[Gauge]) -> str:
    """Prometheus text exposition of ``gauges`` (HELP and TYPE once per name)."""
    lines: list[str] = []
    seen: set[str] = set()
    for gauge in gauges:
        if gauge.name not in seen:
            seen.add(gauge.name)
            lines += [f"# HELP {gauge.name} {gauge.help}", f"# TYPE {gauge.name} gauge"]
        labels = ",".join(f'{key}="{_escape(value)}"' for key, value in gauge.labels)
        lines.append(
            f"{gauge.name}{{{labels}}} {gauge.value:g}"
            if labels
            else f"{gauge.name} {gauge.value:g}"
        )
    return "\n".join(lines) + ("\n" if lines else "")


def _newest_sm_util(nvml: NvmlModule, handle: Any) -> dict[int, float]:
    """pid → SM % of its newest sample (NVML raises NotFound when it has no samples)."""
    try:
        samples = nvml.nvmlDeviceGetProcessUtilization(handle, 0)
    except nvml.NVMLError:
        return {}
    newest: dict[int, tuple[int, float]] = {}
    for sample in samples:
        pid, stamp = int(sample.pid), int(sample.timeStamp)
        if pid not in newest or stamp >= newest[pid][0]:
            newest[pid] = (stamp, float(sample.smUtil))
    return {pid: sm for pid, (_, sm) in newest.items()}


def _process_memory(nvml: NvmlModule, handle: Any) -> dict[int, float]:
    try:
        processes = nvml.nvmlDeviceGetComputeRunningProcesses(handle)
    except nvml.NVMLError:
        return {}
    memory: dict[int, float] = {}
    for process in processes:
        used = process.usedGpuMemory  # None when the driver cannot tell (e.g. Windows WDDM)
        memory[int(process.pid)] = memory.get(int(process.pid), 0.0) + (
            float(used) / MIB if used is not None else 0.0
        )
    return memory


def _text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

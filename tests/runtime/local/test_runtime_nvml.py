"""Real-GPU support through NVML, tested with a fake NVML module passed in."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from tierserve.runtime.local.nvml import (
    NOT_INSTALLED,
    Nvml,
    ProcessGpuUsage,
    render_gauges,
    sm_util_pct,
)

MIB = 1024 * 1024


class NVMLError(Exception):
    pass


@dataclass
class FakeGpu:
    name: str
    total_mib: int
    used_mib: int
    util_pct: int
    samples: list[tuple[int, int, int]] = field(default_factory=list)  # (pid, stamp, sm %)
    processes: list[tuple[int, int | None]] = field(default_factory=list)  # (pid, bytes)


class FakeNvml:
    """The part of pynvml tierserve calls; devices are plain data."""

    NVMLError = NVMLError

    def __init__(self, gpus: list[FakeGpu], init_error: str = "") -> None:
        self.gpus = gpus
        self.init_error = init_error
        self.calls: list[str] = []

    def nvmlInit(self) -> None:
        self.calls.append("init")
        if self.init_error:
            raise NVMLError(self.init_error)

    def nvmlShutdown(self) -> None:
        self.calls.append("shutdown")

    def nvmlDeviceGetCount(self) -> int:
        return len(self.gpus)

    def nvmlDeviceGetHandleByIndex(self, index: int) -> Any:
        return index

    def nvmlDeviceGetName(self, handle: Any) -> bytes:
        return self.gpus[int(handle)].name.encode()  # older pynvml returns bytes

    def nvmlDeviceGetUUID(self, handle: Any) -> str:
        return f"GPU-{handle:08d}"

    def nvmlDeviceGetMemoryInfo(self, handle: Any) -> Any:
        gpu = self.gpus[handle]
        return SimpleNamespace(total=gpu.total_mib * MIB, used=gpu.used_mib * MIB)

    def nvmlDeviceGetUtilizationRates(self, handle: Any) -> Any:
        return SimpleNamespace(gpu=self.gpus[handle].util_pct, memory=0)

    def nvmlDeviceGetProcessUtilization(self, handle: Any, lastSeenTimeStamp: int) -> Any:
        samples = self.gpus[handle].samples
        if not samples:
            raise NVMLError("Not Found")
        return [SimpleNamespace(pid=p, timeStamp=t, smUtil=s, memUtil=0) for p, t, s in samples]

    def nvmlDeviceGetComputeRunningProcesses(self, handle: Any) -> Any:
        return [SimpleNamespace(pid=p, usedGpuMemory=m) for p, m in self.gpus[handle].processes]


def two_h100s() -> FakeNvml:
    return FakeNvml(
        [
            FakeGpu(
                "NVIDIA H100 80GB HBM3",
                81_559,
                70_000,
                93,
                samples=[(200, 1, 40), (200, 5, 62), (300, 5, 20)],  # pid 200's newest: 62 %
                processes=[(200, 60_000 * MIB), (300, 10_000 * MIB)],
            ),
            FakeGpu("NVIDIA H100 80GB HBM3", 81_559, 0, 0),  # idle: NVML has no samples
        ]
    )


def test_without_pynvml_there_are_no_gpus() -> None:
    nvml = Nvml(None)
    inventory = nvml.inventory()
    assert not inventory.available and inventory.reason == NOT_INSTALLED
    assert nvml.replica_gauges([1]) == [] and nvml.process_usage([1]) == []


def test_driver_not_loaded_is_a_reason_not_an_error() -> None:
    inventory = Nvml(FakeNvml([], init_error="Driver Not Loaded")).inventory()
    assert inventory.gpus == () and "Driver Not Loaded" in inventory.reason


def test_inventory_lists_index_name_and_memory() -> None:
    fake = two_h100s()
    nvml = Nvml(fake)
    inventory = nvml.inventory()
    assert [(g.index, g.name, g.memory_total_mib) for g in inventory.gpus] == [
        (0, "NVIDIA H100 80GB HBM3", 81_559),
        (1, "NVIDIA H100 80GB HBM3", 81_559),
    ]
    nvml.inventory()
    nvml.close()
    assert fake.calls == ["init", "shutdown"]  # initialised once


def test_process_usage_takes_the_newest_sample_of_the_replicas_pids() -> None:
    usage = Nvml(two_h100s()).process_usage({100, 200})  # 100: the API server, 200: its engine
    assert usage == [ProcessGpuUsage(gpu=0, pid=200, sm_util_pct=62.0, memory_used_mib=60_000.0)]
    assert sm_util_pct(usage) == 62.0


def test_sm_util_sums_processes_per_gpu_and_takes_the_busiest() -> None:
    usage = [
        ProcessGpuUsage(0, 1, 30, 0),
        ProcessGpuUsage(0, 2, 25, 0),
        ProcessGpuUsage(1, 3, 40, 0),
    ]
    assert sm_util_pct(usage) == 55.0  # max(30 + 25, 40)
    assert sm_util_pct([]) == 0.0


def test_replica_gauges_render_like_dcgm_exporter() -> None:
    gauges = Nvml(two_h100s()).replica_gauges(
        {200}, namespace="default", pod="deepseek-predictor-abc12"
    )
    assert [g.name for g in gauges] == [
        "DCGM_FI_DEV_GPU_UTIL",
        "DCGM_FI_DEV_FB_USED",
        "DCGM_CUSTOM_PROCESS_SM_UTIL",
        "DCGM_CUSTOM_PROCESS_MEM_USED",
    ]
    text = render_gauges(gauges)
    assert "# TYPE DCGM_CUSTOM_PROCESS_SM_UTIL gauge" in text
    line = next(x for x in text.splitlines() if x.startswith("DCGM_CUSTOM_PROCESS_SM_UTIL{"))
    assert 'gpu="0"' in line and 'pod="deepseek-predictor-abc12"' in line
    assert 'pid="200"' in line and 'modelName="NVIDIA H100 80GB HBM3"' in line
    assert line.endswith(" 62")
    assert 'DCGM_FI_DEV_FB_USED{gpu="0"' in text and text.count("DCGM_FI_DEV_GPU_UTIL{") == 1


def test_assigned_but_idle_gpu_still_reports_device_gauges() -> None:
    gauges = Nvml(two_h100s()).replica_gauges({999}, gpus=[1])
    assert [(g.name, g.value) for g in gauges] == [
        ("DCGM_FI_DEV_GPU_UTIL", 0.0),
        ("DCGM_FI_DEV_FB_USED", 0.0),
    ]


def test_render_escapes_label_values() -> None:
    from tierserve.runtime.local.nvml import Gauge

    text = render_gauges([Gauge("X", "doc", 1.5, (("a", 'q"\\'),))])
    assert text == '# HELP X doc\n# TYPE X gauge\nX{a="q\\"\\\\"} 1.5\n'

"""Replicas on real NVIDIA GPUs get DCGM-style metrics from NVML (a fake NVML module
here), and a cluster with real GPUs but no NVML is refused with a clear error."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest
from test_runtime_nvml import FakeGpu, FakeNvml

from tierserve.errors import ValidationError
from tierserve.model import InferenceService, Node, Replica, load_documents
from tierserve.policy.lifecycle import SupervisorConfig
from tierserve.runtime.local.config import PID_FILE
from tierserve.runtime.local.controlplane import ControlPlane, ControlPlaneConfig
from tierserve.runtime.local.gpumetrics import GpuMetrics
from tierserve.runtime.local.nvml import NOT_INSTALLED, Nvml

CLUSTER = """\
apiVersion: tierserve.io/v1alpha1
kind: Node
metadata: {name: gpu001}
spec:
  gpu: {model: H100-80G, emulated: %s}
status:
  capacity: {nvidia.com/gpu: "2", cpu: "16", memory: 64Gi, pods: "110"}
"""


def nodes(emulated: bool) -> list[Node]:
    return [n for n in load_documents(CLUSTER % str(emulated).lower()) if isinstance(n, Node)]


def test_real_gpus_without_nvml_are_refused_naming_the_node() -> None:
    metrics = GpuMetrics(Nvml(None))
    metrics.check(nodes(emulated=True))  # emulated GPUs need no NVML
    with pytest.raises(ValidationError) as caught:
        metrics.check(nodes(emulated=False))
    text = str(caught.value)
    assert "Node gpu001: spec.gpu.emulated" in text and NOT_INSTALLED in text
    assert "tierserve[nvidia]" in text


def test_real_gpus_without_a_driver_are_refused() -> None:
    broken = GpuMetrics(Nvml(FakeNvml([], init_error="Driver Not Loaded")))  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="Driver Not Loaded"):
        broken.check(nodes(emulated=False))


def test_values_sum_a_replica_tree_on_its_gpus() -> None:
    gpus = [
        FakeGpu("H100", 81559, 1000, 90, samples=[(10, 1, 60), (11, 1, 30), (99, 1, 5)]),
        FakeGpu("H100", 81559, 2000, 10, samples=[(99, 1, 70)]),
    ]
    gpus[0].processes = [(10, 512 * 1024 * 1024), (11, 256 * 1024 * 1024)]
    metrics = GpuMetrics(Nvml(FakeNvml(gpus)), tree=lambda pid: {pid, pid + 1})  # type: ignore[arg-type]
    values = metrics.values(10, (0,), "default", "r1")
    # pids 10 and 11 on GPU 0: SM 60 + 30; memory 512 + 256 MiB; pid 99 is someone else's
    assert values["DCGM_CUSTOM_PROCESS_SM_UTIL"] == 90
    assert values["DCGM_CUSTOM_PROCESS_MEM_USED"] == 768
    assert values["DCGM_FI_DEV_GPU_UTIL"] == 90  # GPU 0 only: the replica's GPU


async def test_up_with_real_gpus_and_no_nvml_fails_at_start(tmp_path: Path) -> None:
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(CLUSTER % "false")
    config = ControlPlaneConfig(state_dir=tmp_path / "state", cluster_file=cluster)
    with pytest.raises(ValidationError, match="nvidia-ml-py"):
        await ControlPlane(config, nvml=Nvml(None)).start()
    assert not (tmp_path / "state" / PID_FILE).exists()


async def test_control_plane_scrapes_nvml_for_replicas_on_real_gpus(
    tmp_path: Path, server_script: str
) -> None:
    cluster = tmp_path / "cluster.yaml"
    cluster.write_text(CLUSTER % "false")
    fake = FakeNvml([FakeGpu("H100", 81559, 0, 0), FakeGpu("H100", 81559, 0, 0)])
    config = ControlPlaneConfig(
        state_dir=tmp_path / "state",
        cluster_file=cluster,
        tick_s=0.05,
        metrics_interval_s=0.05,
        supervisor=SupervisorConfig(probe_interval_s=0.05, check_interval_s=0.05, grace_s=1),
        shutdown_grace_s=1,
    )
    plane = ControlPlane(config, nvml=Nvml(fake))  # type: ignore[arg-type]
    await plane.start()
    try:
        service: InferenceService = InferenceService.new(
            "real",
            spec={"gpus": 1, "command": f"{sys.executable} {server_script} --port {{port}}"},
        )
        plane.store.put(service)
        async with asyncio.timeout(20):
            while not [r for r in plane.store.list(Replica) if r.ready]:
                await asyncio.sleep(0.05)
        [replica] = plane.store.list(Replica)
        assert replica.status.pid is not None
        gpu = plane.runner.gpus_of(replica)
        assert gpu == (0,)  # its CUDA_VISIBLE_DEVICES
        fake.gpus[0].samples = [(replica.status.pid, 1, 42)]
        fake.gpus[0].processes = [(replica.status.pid, 1024 * 1024 * 1024)]
        key = (replica.namespace, replica.name)

        def latest(metric: str) -> float | None:
            return plane.scraper.latest(key, metric, plane.clock.now(), max_age_s=60)

        async with asyncio.timeout(10):
            while latest("DCGM_CUSTOM_PROCESS_SM_UTIL") != 42:
                await asyncio.sleep(0.05)
        assert latest("DCGM_CUSTOM_PROCESS_MEM_USED") == 1024
    finally:
        await plane.stop(stop_replicas=True)

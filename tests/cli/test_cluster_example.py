"""The example cluster file that ships with tierserve, ``tierserve example``, Node
cpu/memory defaults, and ``up --cluster`` with ``--virtual-*`` overrides end to end."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import pytest

from tierserve import testing
from tierserve.errors import ValidationError
from tierserve.model import Node, load_documents
from tierserve.model.resources import CPU, GPU, MEMORY
from tierserve.runtime.local.cluster import VirtualNodeOverrides, load_cluster, override_virtual
from tierserve.testing import control_plane, wait_until

EXAMPLE = resources.files("tierserve.examples").joinpath("cluster.yaml")
GIB = 2**30 * 1000  # milli-bytes


def tierserve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tierserve.cli.main", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_example_cluster_is_two_idc_nodes_of_two_gpus_and_a_priced_virtual_node() -> None:
    nodes = load_cluster(EXAMPLE.read_text("utf-8"), "cluster.yaml")
    idc = [n for n in nodes if not n.virtual]
    (cloud,) = [n for n in nodes if n.virtual]
    assert [(n.name, n.allocatable()[GPU]) for n in idc] == [("idc001", 2000), ("idc002", 2000)]
    assert all(n.labels["alibabacloud.com/nodepool-id"] == "np-idc" for n in idc)
    assert cloud.spec.virtual is not None
    assert (cloud.spec.virtual.gpu_quota, cloud.spec.virtual.price_per_gpu_hour) == (4, 2.5)
    assert cloud.spec.virtual.cold_start_seconds == 45
    assert cloud.allocatable()[GPU] == 4000  # min(100 GPUs, quota 4)


def test_tierserve_example_prints_the_installed_file_and_its_path() -> None:
    text = tierserve("example", "cluster")
    assert text.returncode == 0 and text.stdout == EXAMPLE.read_text("utf-8")
    path = tierserve("example", "cluster", "--path").stdout.strip()
    assert Path(path).read_text("utf-8") == text.stdout
    seed = tierserve("example", "seed").stdout
    kinds = [o.KIND for o in load_documents(seed)]
    assert kinds == ["Secret", "PersistentVolume", "PersistentVolumeClaim", "ResourcePolicy"]


NO_CPU_MEMORY = """\
apiVersion: v1
kind: Node
metadata: {name: gpu-box}
status:
  capacity: {nvidia.com/gpu: 2}
---
apiVersion: v1
kind: Node
metadata: {name: vk}
spec:
  virtual: {gpuQuota: 2}
status:
  capacity: {nvidia.com/gpu: 100}
  allocatable: {nvidia.com/gpu: 50}
---
apiVersion: v1
kind: Node
metadata: {name: bare}
"""


def test_a_node_without_cpu_or_memory_gets_the_documented_defaults_not_zero() -> None:
    box, vk, bare = (n for n in load_documents(NO_CPU_MEMORY) if isinstance(n, Node))
    # IDC node: the default idc001's 16 CPUs and 64Gi; virtual node: 1k CPUs and 4Ti.
    assert (box.allocatable()[CPU], box.allocatable()[MEMORY]) == (16_000, 64 * GIB)
    assert (vk.allocatable()[CPU], vk.allocatable()[MEMORY]) == (1_000_000, 4 * 1024 * GIB)
    assert vk.allocatable()[GPU] == 2000  # the given allocatable, capped by the quota
    assert bare.status.capacity == {CPU: 16_000, MEMORY: 64 * GIB}  # no GPUs: a CPU node
    assert box.to_dict()["status"]["capacity"] == {
        "nvidia.com/gpu": "2",
        "cpu": "16",
        "memory": "64Gi",
    }


def test_overrides_change_only_the_given_fields_of_every_virtual_node() -> None:
    nodes = load_cluster(EXAMPLE.read_text("utf-8"), "cluster.yaml")
    changed = override_virtual(nodes, VirtualNodeOverrides(cold_start_s=1.0))
    (cloud,) = [n.spec.virtual for n in changed if n.spec.virtual]
    assert (cloud.cold_start_seconds, cloud.gpu_quota, cloud.price_per_gpu_hour) == (1.0, 4, 2.5)
    assert [n.spec for n in changed if not n.virtual] == [n.spec for n in nodes if not n.virtual]


def test_a_cluster_file_holds_only_nodes() -> None:
    with pytest.raises(ValidationError, match="a cluster file holds only Nodes"):
        load_cluster(
            EXAMPLE.read_text("utf-8")
            + "---\n"
            + resources.files("tierserve.examples")
            .joinpath("seed/resourcepolicy.yaml")
            .read_text("utf-8"),
            "x",
        )


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[testing.Cli]:
    # control_plane passes --virtual-cold-start-s 1: it overrides the file's 45 s.
    example = testing.Cli(tmp_path / "state")("example", "cluster", "--path").stdout.strip()
    with control_plane(testing.Cli(tmp_path / "state"), "--cluster", example) as c:
        yield c


@pytest.mark.slow
def test_up_with_the_example_cluster_and_a_cold_start_override(cli: testing.Cli) -> None:
    nodes = json.loads(cli("get", "nodes", "-o", "json").stdout)["items"]
    assert [n["metadata"]["name"] for n in nodes] == [
        "idc001", "idc002", "virtual-kubelet-cn-hangzhou-b",
    ]  # fmt: skip
    virtual = nodes[2]["spec"]["virtual"]
    assert virtual == {"coldStartSeconds": 1.0, "pricePerGpuHour": 2.5, "gpuQuota": 4}
    wide = cli("get", "nodes", "-o", "wide").stdout
    assert "2xV100-32G (emulated)" in wide and "4xV100-32G (emulated)" in wide
    # The overridden copy is loaded at start and removed just after.
    wait_until(lambda: not list(cli.root.glob(".cluster-*")), message="transient file removed")

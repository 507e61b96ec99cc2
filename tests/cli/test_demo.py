"""The seed walkthrough end to end (``tierserve demo`` with short delays)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tierserve.testing import replica_pids

pytestmark = pytest.mark.slow


def test_demo_runs_the_seed_walkthrough_and_leaves_nothing_running(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tierserve.cli.main",
            "demo",
            "--cold-start-s",
            "3",
            "--time-scale",
            "0.05",
            "--hpa-period-s",
            "2",
            "--stabilization-s",
            "6",
            "--step-timeout-s",
            "90",
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr + out[-3000:]
    # The seed's steps, in order.
    steps = [
        "$ tierserve get nodes -o wide",
        "resourcepolicy.scheduling.alibabacloud.com/deepseek created",
        "horizontalpodautoscaler.autoscaling/deepseek-hpa created",
        "inferenceservice.serving.kserve.io/deepseek created",
        '"model": "deepseek-r1"',
        "Scaled out: one replica on idc001, two on the virtual node.",
        "New size: 2; reason: pods metric DCGM_CUSTOM_PROCESS_SM_UTIL above target",
        "New size: 1; reason: All metrics below target",
        "cloud GPU-seconds:",
        "tierserve control plane stopped",
    ]
    positions = [out.find(s) for s in steps]
    assert all(p >= 0 for p in positions), [
        s for s, p in zip(steps, positions, strict=True) if p < 0
    ]
    assert "[200]" in out  # the load got answers
    # Cloud replicas were billed; the demo stopped every process it started.
    cloud = float(out.split("cloud GPU-seconds:")[1].split()[0])
    assert cloud > 0
    assert not replica_pids(state.resolve())


def test_demo_with_the_tier_planner_rents_no_cloud_for_the_seed_load(tmp_path: Path) -> None:
    state = tmp_path / "state"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tierserve.cli.main",
            "demo",
            "--autoscaler",
            "slo",
            "--cold-start-s",
            "3",
            "--time-scale",
            "0.1",
            "--hpa-period-s",
            "1.5",
            "--step-timeout-s",
            "120",
            "--state-dir",
            str(state),
        ],
        capture_output=True,
        text=True,
        timeout=400,
    )
    out = result.stdout
    assert result.returncode == 0, result.stderr + out[-3000:]
    steps = [
        "--autoscaler=slo --slo=ttft=2s,tpot=100ms",
        "so it rents no cloud GPU",
        "Still one replica, on idc001:",
        "Step 5: a real burst",
        "on virtual-kubelet-cn-hangzhou-b",
        "New size: 2 (idc 1, cloud 1); reason: ",
        "New size: 1 (idc 1, cloud 0); reason: ",
        "tierserve control plane stopped",
    ]
    positions = [out.find(s) for s in steps]
    assert all(p >= 0 for p in positions), [
        s for s, p in zip(steps, positions, strict=True) if p < 0
    ]
    assert positions == sorted(positions)
    assert not replica_pids(state.resolve())

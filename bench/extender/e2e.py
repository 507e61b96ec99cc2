"""Pods scheduled per second end to end on the test control plane.

kube-apiserver + controller-manager + a kube-scheduler with the ``tierserve-scheduler``
profile calling ``tierserve kube extender`` (filter, prioritize, bind); 20 fake IDC nodes
with 8 GPUs each and one virtual node. A Deployment of N one-GPU pods selected by a
ResourcePolicy (IDC first, then the virtual node) is created; the figure is N divided by
the time from creating it to the last pod bound.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from tierserve.runtime.kube.apply import install_crd
from tierserve.runtime.kube.client import KubeClient, load_config
from tierserve.testing.kube import control_plane, free_port, scheduler_config

ROOT = Path(__file__).resolve().parents[2]


async def _run(kubeconfig: str, n: int) -> float:
    async with KubeClient(load_config(kubeconfig)) as kube:
        cap_idc = {"cpu": "96", "memory": "768Gi", "nvidia.com/gpu": "8", "pods": "110"}
        cap_vk = {"cpu": "1k", "memory": "4Ti", "nvidia.com/gpu": "1k", "pods": "10k"}
        nodes = [(f"idc{i:03d}", {"pool": "idc"}, [], cap_idc) for i in range(20)]
        taint = {"key": "virtual-kubelet.io/provider", "value": "x", "effect": "NoSchedule"}
        nodes.append(("virtual-kubelet-0", {"type": "virtual-kubelet"}, [taint], cap_vk))
        for name, labels, taints, cap in nodes:
            await kube.create(
                "/api/v1/nodes",
                {
                    "apiVersion": "v1",
                    "kind": "Node",
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"taints": taints},
                },
            )
            await kube.patch(
                f"/api/v1/nodes/{name}/status", {"status": {"capacity": cap, "allocatable": cap}}
            )
        await kube.create(
            "/apis/scheduling.tierserve.io/v1alpha1/namespaces/default/resourcepolicies",
            {
                "apiVersion": "scheduling.tierserve.io/v1alpha1",
                "kind": "ResourcePolicy",
                "metadata": {"name": "bench"},
                "spec": {
                    "selector": {"app": "bench"},
                    "units": [
                        {"resource": "ecs", "nodeSelector": {"pool": "idc"}},
                        {"resource": "eci"},
                    ],
                },
            },
        )
        await asyncio.sleep(1.0)
        start = time.monotonic()
        await kube.create(
            "/apis/apps/v1/namespaces/default/deployments",
            {
                "apiVersion": "apps/v1",
                "kind": "Deployment",
                "metadata": {"name": "bench"},
                "spec": {
                    "replicas": n,
                    "selector": {"matchLabels": {"app": "bench"}},
                    "template": {
                        "metadata": {"labels": {"app": "bench"}},
                        "spec": {
                            "schedulerName": "tierserve-scheduler",
                            "tolerations": [
                                {"key": "virtual-kubelet.io/provider", "operator": "Exists"}
                            ],
                            "containers": [
                                {
                                    "name": "m",
                                    "image": "x",
                                    "resources": {"limits": {"nvidia.com/gpu": "1"}},
                                }
                            ],
                        },
                    },
                },
            },
        )
        while True:
            pods = (await kube.get("/api/v1/namespaces/default/pods")).get("items") or []
            bound = sum(1 for p in pods if p["spec"].get("nodeName"))
            if bound >= n:
                return time.monotonic() - start
            if time.monotonic() - start > 300:
                raise TimeoutError(f"{bound} of {n} bound after 300 s")
            await asyncio.sleep(0.1)


def end_to_end(n: int) -> str:
    with control_plane() as plane:
        kubeconfig = str(plane.kubeconfig)

        async def crd() -> None:
            async with KubeClient(load_config(kubeconfig)) as kube:
                await install_crd(kube)

        asyncio.run(crd())
        port = free_port()
        log = (plane.logs / "extender.log").open("wb")
        ext = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tierserve.cli.kube",
                "kube",
                "extender",
                "--quiet",
                f"--listen=127.0.0.1:{port}",
                "--kubeconfig",
                kubeconfig,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
            start_new_session=True,
        )
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1)
                    break
                except OSError:
                    time.sleep(0.2)
            config = plane.root / "tierserve-scheduler.yaml"
            config.write_text(
                scheduler_config(
                    plane.root / "kube-scheduler.kubeconfig",
                    "tierserve-scheduler",
                    f"http://127.0.0.1:{port}",
                )
            )
            plane.start_scheduler("tierserve-scheduler", config)
            elapsed = asyncio.run(_run(kubeconfig, n))
        finally:
            os.killpg(ext.pid, signal.SIGTERM)
            ext.wait(10)
    return f"end to end: {n} pods bound in {elapsed:.2f} s = {n / elapsed:.1f} pods/s"


if __name__ == "__main__":
    print(end_to_end(int(sys.argv[1]) if len(sys.argv) > 1 else 200))

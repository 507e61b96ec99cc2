"""Pods scheduled per second end to end on the test control plane, with the tierserve
extender and without it, side by side in one run.

One control plane (kube-apiserver, controller-manager) with two kube-schedulers: the
stock ``default-scheduler`` profile, and the ``tierserve-scheduler`` profile calling
``tierserve kube extender`` (filter, prioritize, bind over HTTPS with a client
certificate, ``percentageOfNodesToScore: 100``, as the manifests render it). ``--nodes``
fake IDC nodes (8 GPUs each) and one virtual node. Each round creates a Deployment of
``--pods`` one-GPU pods for each scheduler in turn (the extender's selected by a
ResourcePolicy: IDC first, then the virtual node), and times creation to the last pod
bound; pods are deleted between rounds. Printed per round and as medians: pods/s for
each, the ratio (goal >= 0.75), and FailedScheduling events of the extender's pods.
The extender's own filter/bind latency histograms are printed at the end, and where the
CPU went: each process's CPU milliseconds per pod scheduled (from ``/proc``), for the
default scheduler's rounds and the extender's, over the same processes.

    python bench/extender/e2e.py --nodes 500 --pods 300 --rounds 3
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

from tierserve.runtime.kube.apply import install_crd
from tierserve.runtime.kube.client import KubeClient, load_config
from tierserve.testing.kube import (
    ControlPlane,
    control_plane,
    free_port,
    issue_certificate,
    scheduler_config,
)

ROOT = Path(__file__).resolve().parents[2]
PODS = "/api/v1/namespaces/default/pods"
DEPLOYMENTS = "/apis/apps/v1/namespaces/default/deployments"
GOAL = 0.75


async def _nodes(kube: KubeClient, count: int) -> None:
    cap_idc = {"cpu": "96", "memory": "768Gi", "nvidia.com/gpu": "8", "pods": "110"}
    cap_vk = {"cpu": "1k", "memory": "4Ti", "nvidia.com/gpu": "10k", "pods": "10k"}
    nodes: list[tuple[str, dict[str, str], list[Any], dict[str, str]]] = [
        (f"idc{i:04d}", {"pool": "idc"}, [], cap_idc) for i in range(count)
    ]
    taint = {"key": "virtual-kubelet.io/provider", "value": "x", "effect": "NoSchedule"}
    nodes.append(("virtual-kubelet-0", {"type": "virtual-kubelet"}, [taint], cap_vk))
    ready = {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "fake"}

    async def one(
        name: str, labels: dict[str, str], taints: list[Any], cap: dict[str, str]
    ) -> None:
        await kube.create(
            "/api/v1/nodes",
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name, "labels": labels},
             "spec": {"taints": taints}},
        )  # fmt: skip
        await kube.patch(
            f"/api/v1/nodes/{name}/status",
            {"status": {"capacity": cap, "allocatable": cap, "conditions": [ready]}},
        )

    for start in range(0, len(nodes), 50):
        await asyncio.gather(*(one(*n) for n in nodes[start : start + 50]))


def _deployment(name: str, scheduler: str, replicas: int) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {
                    "schedulerName": scheduler,
                    "tolerations": [{"key": "virtual-kubelet.io/provider", "operator": "Exists"}],
                    "terminationGracePeriodSeconds": 0,
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
    }


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) each process has used so far, from /proc (0 for one
    that is gone)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            out[name] = 0.0
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick  # utime, stime
    return out


def cpu_table(per_pod: dict[str, dict[str, list[float]]]) -> list[str]:
    """Median CPU ms per pod of each process, for each kind of round."""
    names = list(next(iter(per_pod.values())))
    lines = ["CPU ms per pod scheduled (median over rounds), by process:"]
    lines.append(f"  {'process':<22}" + "".join(f"{k:>12}" for k in per_pod))
    for name in [*names, "total"]:
        cells = []
        for kind in per_pod:
            if name == "total":
                xs = [sum(v) for v in zip(*per_pod[kind].values(), strict=True)]
            else:
                xs = per_pod[kind][name]
            cells.append(f"{statistics.median(xs):>12.2f}")
        lines.append(f"  {name:<22}" + "".join(cells))
    return lines


async def _round(
    kube: KubeClient, name: str, scheduler: str, n: int, pids: dict[str, int]
) -> tuple[float, dict[str, float]]:
    """Seconds from creating the Deployment to its last pod bound, and each process's CPU
    seconds over that time. Bindings are counted from a watch, as an informer sees them:
    polling the pod list instead costs the API server (and this process) CPU in
    proportion to the round's length, which slows the slower scheduler most."""
    selector = f"app={name}"
    path = f"{PODS}?{urllib.parse.urlencode({'labelSelector': selector})}"
    bound: set[str] = set()

    async def until_bound() -> None:
        while True:  # list, then watch from the list; list again if the watch ends
            listed = await kube.get(PODS, {"labelSelector": selector})
            bound.update(
                p["metadata"]["uid"] for p in listed.get("items") or [] if p["spec"].get("nodeName")
            )
            if len(bound) >= n:
                return
            version = str(listed.get("metadata", {}).get("resourceVersion", ""))
            async for kind, pod in kube.watch(path, version):
                if kind == "ERROR":  # e.g. 410 Gone: list again
                    break
                if kind in ("ADDED", "MODIFIED") and pod.get("spec", {}).get("nodeName"):
                    bound.add(pod["metadata"]["uid"])
                    if len(bound) >= n:
                        return

    before = cpu_seconds(pids)
    start = time.monotonic()
    await kube.create(DEPLOYMENTS, _deployment(name, scheduler, n))
    try:
        await asyncio.wait_for(until_bound(), 300)
    except TimeoutError:
        raise TimeoutError(f"{name}: {len(bound)} of {n} bound after 300 s") from None
    elapsed = time.monotonic() - start
    after = cpu_seconds(pids)
    await kube.delete(f"{DEPLOYMENTS}/{name}")
    await kube.delete(PODS, {"labelSelector": f"app={name}", "gracePeriodSeconds": "0"})
    while (await kube.get(PODS, {"labelSelector": f"app={name}"})).get("items"):
        await asyncio.sleep(0.2)
    return elapsed, {k: after[k] - before[k] for k in pids}


async def _failed_scheduling(kube: KubeClient, prefix: str) -> int:
    events = await kube.get(
        "/api/v1/namespaces/default/events", {"fieldSelector": "reason=FailedScheduling"}
    )
    return sum(
        int(e.get("count") or 1)
        for e in events.get("items") or []
        if e.get("involvedObject", {}).get("name", "").startswith(prefix)
    )


async def _bench(
    plane: ControlPlane, nodes: int, pods: int, rounds: int, extender_pid: int
) -> list[str]:
    out = []
    pids = {name: proc.pid for name, proc in plane.processes.items()}
    pids["tierserve extender"] = extender_pid
    pids["this benchmark"] = os.getpid()
    cpu: dict[str, dict[str, list[float]]] = {
        "default": {n: [] for n in pids},
        "ext": {n: [] for n in pids},
    }
    async with KubeClient(load_config(str(plane.kubeconfig))) as kube:
        await install_crd(kube)
        await _nodes(kube, nodes)
        await kube.create(
            "/apis/scheduling.tierserve.io/v1alpha1/namespaces/default/resourcepolicies",
            {
                "apiVersion": "scheduling.tierserve.io/v1alpha1",
                "kind": "ResourcePolicy",
                "metadata": {"name": "bench"},
                "spec": {
                    "selector": {"app": "bench-ext"},
                    "units": [
                        {"resource": "ecs", "nodeSelector": {"pool": "idc"}},
                        {"resource": "eci"},
                    ],
                },
            },
        )
        await asyncio.sleep(2.0)  # the extender's watch has nodes and the policy
        default: list[float] = []
        extender: list[float] = []
        for r in range(rounds):
            # alternate which goes first, so neither always meets a warmer API server
            order = [("default", "default-scheduler"), ("ext", "tierserve-scheduler")]
            if r % 2:
                order.reverse()
            for kind, scheduler in order:
                elapsed, used = await _round(kube, f"bench-{kind}", scheduler, pods, pids)
                for name in pids:
                    cpu[kind][name].append(1000 * used[name] / pods)
                (default if kind == "default" else extender).append(pods / elapsed)
            out.append(
                f"round {r + 1}: default {default[-1]:.1f} pods/s, extender "
                f"{extender[-1]:.1f} pods/s, ratio {extender[-1] / default[-1]:.2f}"
            )
        failed = await _failed_scheduling(kube, "bench-ext")
    d, e = statistics.median(default), statistics.median(extender)
    verdict = "met" if e / d >= GOAL else "NOT met"
    out.append(
        f"median of {rounds}: default-scheduler {d:.1f} pods/s, with the extender {e:.1f} "
        f"pods/s: ratio {e / d:.2f} (goal >= {GOAL}: {verdict}); FailedScheduling of "
        f"the extender's pods: {failed}"
    )
    out += cpu_table(cpu)
    return out


def run(nodes: int, pods: int, rounds: int) -> list[str]:
    with control_plane() as plane:
        pki = plane.root / "pki"
        issue_certificate(pki, "extender", "tierserve-extender", server=True)
        crt, key = issue_certificate(pki, "scheduler-client", "tierserve-scheduler", server=False)
        port = free_port()
        log = (plane.logs / "extender.log").open("wb")
        ext = subprocess.Popen(
            [sys.executable, "-m", "tierserve.cli.kube", "kube", "extender", "--quiet",
             f"--listen=127.0.0.1:{port}", f"--tls-cert={pki / 'extender.crt'}",
             f"--tls-key={pki / 'extender.key'}", f"--client-ca={plane.ca}",
             "--client-name=tierserve-scheduler", "--kubeconfig", str(plane.kubeconfig)],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
        )  # fmt: skip
        import ssl

        ctx = ssl.create_default_context(cafile=str(plane.ca))
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(
                        f"https://127.0.0.1:{port}/readyz", timeout=1, context=ctx
                    )
                    break
                except OSError:
                    time.sleep(0.2)
            config = plane.root / "tierserve-scheduler.yaml"
            config.write_text(
                scheduler_config(
                    plane.root / "kube-scheduler.kubeconfig",
                    "tierserve-scheduler",
                    f"https://127.0.0.1:{port}",
                    tls_config={"caFile": str(plane.ca), "certFile": str(crt), "keyFile": str(key)},
                )
            )
            plane.start_scheduler("tierserve-scheduler", config)
            lines = asyncio.run(_bench(plane, nodes, pods, rounds, ext.pid))
            with urllib.request.urlopen(
                f"https://127.0.0.1:{port}/metrics", timeout=5, context=ctx
            ) as resp:
                metrics = resp.read().decode()
        finally:
            os.killpg(ext.pid, signal.SIGTERM)
            ext.wait(10)
    lines.append("extender latency over the run (from its histogram; bucket upper bounds):")
    lines += [f"  {verb}: {_quantiles(metrics, verb)}" for verb in ("filter", "bind")]
    return lines


def _quantiles(metrics: str, verb: str) -> str:
    """count, mean, and the bucket holding p50 / p90 / p99 of one verb's histogram."""
    buckets: list[tuple[float, float]] = []
    total = count = 0.0
    for line in metrics.splitlines():
        if f'verb="{verb}"' not in line:
            continue
        name, value = line.rsplit(" ", 1)
        if name.startswith("tierserve_extender_request_duration_seconds_bucket"):
            le = name.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float("inf") if le == "+Inf" else float(le), float(value)))
        elif name.startswith("tierserve_extender_request_duration_seconds_sum"):
            total = float(value)
        elif name.startswith("tierserve_extender_request_duration_seconds_count"):
            count = float(value)
    if not count:
        return "no calls"

    def upper(q: float) -> str:
        bound = next(le for le, n in sorted(buckets) if n >= q * count)
        return f"<= {bound * 1000:g} ms"

    mean_ms = total / count * 1000
    return (
        f"{count:.0f} calls, mean {mean_ms:.2f} ms, p50 {upper(0.5)}, p90 {upper(0.9)}, "
        f"p99 {upper(0.99)}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=500)
    parser.add_argument("--pods", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}", flush=True)
    for line in run(args.nodes, args.pods, args.rounds):
        print(line, flush=True)


if __name__ == "__main__":
    main()

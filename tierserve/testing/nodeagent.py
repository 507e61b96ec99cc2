"""A test-only node agent: fake Nodes whose pods really run, as local processes.

The test control plane has no kubelet, so pods are bound and never run. This agent plays
the kubelet for a few fake nodes, for end-to-end tests only (it is not a product
feature):

* it registers its Nodes (labels, taints, capacity, Ready), e.g. an IDC node with one GPU
  and a virtual-kubelet node with the taint and a cold start;
* it watches the pods bound to them; for each it takes a loopback address of its own
  (``127.0.0.x``, so every pod can listen on 8080 as in a cluster) as ``status.podIP``,
  waits the node's cold start, and runs the container's command as a local process
  (``vllm serve ...`` becomes tierserve's emulator, on that address, with the node's GPU
  model); it reports ``Running``, then ``Ready`` once the container's readiness probe
  (``httpGet``) answers 200;
* a pod being deleted gets SIGTERM, then SIGKILL after its grace period, and is then
  removed from the API (grace 0), as a kubelet does; a process that exits is restarted
  (``restartPolicy: Always``) with the restart counted;
* :meth:`NodeAgent.stop` ends every process it started (no orphans);
* each pod's stdout and stderr go to a file of its own (``<log_dir>/<ns>_<pod>.log``),
  and, given :class:`KubeletTLS`, the agent serves them as a kubelet does to
  kube-apiserver's ``pods/log``: ``GET /containerLogs/<ns>/<pod>/<container>``
  (``tailLines``, ``follow``) over TLS on 127.0.0.1, only to a client certificate of the
  testbed's CA (kube-apiserver's ``--kubelet-client-certificate``). Its Nodes name that
  endpoint (``status.addresses`` InternalIP 127.0.0.1,
  ``status.daemonEndpoints.kubeletEndpoint.Port``).

Loopback only: every address it hands out is in 127.0.0.0/8.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
import signal
import ssl
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from tierserve.errors import ConflictError, NotFoundError, TierserveError
from tierserve.runtime.kube.client import STRATEGIC_PATCH, KubeClient
from tierserve.runtime.local.command import needs_shell

log = logging.getLogger(__name__)

Obj = dict[str, Any]
SHELLS = ("sh", "/bin/sh", "bash", "/bin/bash")
VIRTUAL_TAINT = {"key": "virtual-kubelet.io/provider", "value": "alibabacloud",
                 "effect": "NoSchedule"}  # fmt: skip


@dataclass(frozen=True)
class FakeNode:
    """One node the agent plays the kubelet for."""

    name: str
    labels: dict[str, str] = field(default_factory=dict)
    gpus: int = 1
    virtual: bool = False
    cold_start_s: float = 0.0
    """Before a pod's containers start (a virtual node provisioning its instance)."""
    gpu_model: str = "A10-24G"
    load_time_s: float = 0.5
    """The emulator's model load time (short, for tests)."""
    dcgm_window_s: float | None = None
    """The emulator's SM-utilisation window (its default, 30 s, makes an HPA slow)."""

    def manifest(self) -> Obj:
        labels = dict(self.labels)
        taints: list[Obj] = []
        if self.virtual:
            labels.setdefault("type", "virtual-kubelet")
            taints.append(dict(VIRTUAL_TAINT))
        return {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": self.name, "labels": labels},
            "spec": {"taints": taints},
        }

    def capacity(self) -> dict[str, str]:
        if self.virtual:
            return {"cpu": "1k", "memory": "4Ti", "nvidia.com/gpu": str(self.gpus), "pods": "1k"}
        return {"cpu": "16", "memory": "64Gi", "nvidia.com/gpu": str(self.gpus), "pods": "110"}


@dataclass(frozen=True)
class KubeletTLS:
    """The agent's kubelet endpoint: its serving certificate (for 127.0.0.1), and the CA
    whose client certificates it answers (``client_names``: the common names it lets in;
    empty: any the CA signed)."""

    cert: Path
    key: Path
    client_ca: Path
    client_names: tuple[str, ...] = ()

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.client_ca))
        ctx.load_cert_chain(self.cert, self.key)
        ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx


LOOPBACK = "127.0.0.1"
"""Every Node's InternalIP and the kubelet endpoint's address."""
FOLLOW_POLL_S = 0.2
"""How often a followed log is read again for what the process wrote since."""


def tail_lines(data: bytes, lines: int | None) -> bytes:
    """The last ``lines`` lines of ``data`` (a last line without its newline counts)."""
    if lines is None:
        return data
    if lines <= 0:
        return b""
    parts = data.splitlines(keepends=True)
    return b"".join(parts[-lines:])


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def container_argv(container: Obj, node: FakeNode, ip: str) -> list[str]:
    """The process to run for ``container`` on ``node`` at ``ip`` (``vllm serve`` becomes
    the emulator; anything else runs as written)."""
    words = [*(container.get("command") or []), *(container.get("args") or [])]
    if len(words) == 3 and words[0] in SHELLS and words[1] == "-c" and not needs_shell(words[2]):
        words = shlex.split(words[2])  # arena's `sh -c "vllm serve ..."`, nothing shell-ish
    elif len(words) == 1 and " " in words[0]:
        words = shlex.split(words[0])
    if words[:2] == ["vllm", "serve"]:
        rest = words[2:]
        argv = [sys.executable, "-m", "tierserve.cli.main", "engine", "emulate", *rest]
        if "--host" not in rest:
            argv += ["--host", ip]
        if "--port" not in rest:
            argv += ["--port", "8000"]
        if "--gpu" not in rest:
            argv += ["--gpu", node.gpu_model]
        if "--load-time-s" not in rest:
            argv += ["--load-time-s", f"{node.load_time_s:g}"]
        if node.dcgm_window_s is not None and "--dcgm-window-s" not in rest:
            argv += ["--dcgm-window-s", f"{node.dcgm_window_s:g}"]
        return argv
    return words


@dataclass
class _Pod:
    key: tuple[str, str]
    uid: str
    node: FakeNode
    ip: str
    task: asyncio.Task[None] | None = None
    proc: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    deleting: bool = False
    container: str = ""


class NodeAgent:
    """Run the pods bound to ``nodes`` as local processes (see the module docstring)."""

    def __init__(
        self,
        kube: KubeClient,
        nodes: Sequence[FakeNode],
        log_dir: Path,
        first_ip: int = 100,
        kubelet: KubeletTLS | None = None,
    ) -> None:
        self.kube = kube
        self.nodes = {n.name: n for n in nodes}
        self.log_dir = log_dir
        self.pods: dict[tuple[str, str], _Pod] = {}
        self._free = [f"127.0.0.{i}" for i in range(first_ip, 255)]
        self._watch: asyncio.Task[None] | None = None
        self._terminating: set[asyncio.Task[None]] = set()
        self.kubelet = kubelet
        self.kubelet_port = 0
        """The kubelet endpoint's port on 127.0.0.1 (0: none)."""
        self._runner: web.AppRunner | None = None

    def log_file(self, namespace: str, pod: str) -> Path:
        """Where the pod's container writes (stdout and stderr, every restart)."""
        return self.log_dir / f"{namespace}_{pod}.log"

    # --- the kubelet endpoint ----------------------------------------------------------

    async def _serve_kubelet(self) -> None:
        if self.kubelet is None:
            return
        allowed = self.kubelet.client_names

        @web.middleware
        async def client_certificate(
            request: web.Request,
            handler: Callable[[web.Request], Awaitable[web.StreamResponse]],
        ) -> web.StreamResponse:
            # the TLS handshake required a certificate of the CA; check who it names
            peer = request.transport.get_extra_info("peercert") if request.transport else None
            names = [
                v for rdn in (peer or {}).get("subject", ()) for k, v in rdn if k == "commonName"
            ]
            if allowed and not any(n in allowed for n in names):
                return web.Response(status=403, text=f"Forbidden (user={','.join(names)})\n")
            return await handler(request)

        app = web.Application(middlewares=[client_certificate])
        app.router.add_get("/containerLogs/{namespace}/{pod}/{container}", self._container_logs)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, LOOPBACK, 0, ssl_context=self.kubelet.server_context())
        await site.start()
        host, port = self._runner.addresses[0][:2]
        assert host == LOOPBACK, host
        self.kubelet_port = int(port)

    async def _container_logs(self, request: web.Request) -> web.StreamResponse:
        """The kubelet's ``containerLogs``: the container's output, ``tailLines`` of it,
        then (``follow=true``) what it writes until its pod is gone."""
        ns, name = request.match_info["namespace"], request.match_info["pod"]
        container = request.match_info["container"]
        pod = self.pods.get((ns, name))
        path = self.log_file(ns, name)
        if pod is None and not path.exists():
            return web.Response(status=404, text=f'pod "{name}" in namespace "{ns}" not found\n')
        if pod is not None and pod.container and container != pod.container:
            return web.Response(
                status=404, text=f'container "{container}" not found in pod "{name}"\n'
            )
        if not path.exists():
            return web.Response(
                status=400,
                text=f'container "{container}" in pod "{name}" is waiting to start: '
                "ContainerCreating\n",
            )
        text = request.query.get("tailLines")
        try:
            lines = None if text is None else int(text)
        except ValueError:
            return web.Response(status=400, text=f"tailLines: {text!r} is not an integer\n")
        follow = request.query.get("follow") in ("true", "1")
        data = await asyncio.to_thread(path.read_bytes)
        if not follow:
            return web.Response(body=tail_lines(data, lines), content_type="text/plain")
        response = web.StreamResponse(headers={"Content-Type": "text/plain"})
        await response.prepare(request)
        await response.write(tail_lines(data, lines))
        offset = len(data)
        while True:
            alive = (live := self.pods.get((ns, name))) is not None and not live.deleting
            with path.open("rb") as f:
                f.seek(offset)
                more = f.read()
            if more:
                offset += len(more)
                await response.write(more)
            if not alive:
                break
            await asyncio.sleep(FOLLOW_POLL_S)
        await response.write_eof()
        return response

    # --- nodes ---------------------------------------------------------------------------

    async def register(self) -> None:
        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                 "message": "tierserve test node agent"}  # fmt: skip
        for node in self.nodes.values():
            with contextlib.suppress(ConflictError):
                await self.kube.create("/api/v1/nodes", node.manifest())
            cap = node.capacity()
            status: Obj = {"capacity": cap, "allocatable": cap, "conditions": [ready],
                           "addresses": [{"type": "InternalIP", "address": LOOPBACK}]}  # fmt: skip
            if self.kubelet_port:
                # kube-apiserver's pods/log asks https://<InternalIP>:<this port>
                status["daemonEndpoints"] = {"kubeletEndpoint": {"Port": self.kubelet_port}}
            await self.kube.patch(f"/api/v1/nodes/{node.name}/status", {"status": status})

    async def start(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        await self._serve_kubelet()
        await self.register()
        self._watch = asyncio.create_task(self._watch_pods())

    async def stop(self, unregister: bool = True) -> None:
        """Stop watching, end every process (no orphans), optionally remove the Nodes."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        for pod in list(self.pods.values()):
            if pod.task is not None:
                pod.task.cancel()
            self._kill(pod, grace_s=2.0)
        self.pods.clear()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if unregister:
            for name in self.nodes:
                with contextlib.suppress(NotFoundError):
                    await self.kube.delete(f"/api/v1/nodes/{name}")

    # --- pods ----------------------------------------------------------------------------

    async def _watch_pods(self) -> None:
        while True:
            try:
                listed = await self.kube.get("/api/v1/pods")
                for obj in listed.get("items") or []:
                    await self._on_pod(obj, deleted=False)
                version = str(listed.get("metadata", {}).get("resourceVersion", ""))
                async for kind, obj in self.kube.watch("/api/v1/pods", version):
                    if kind == "ERROR":
                        break
                    if kind != "BOOKMARK":
                        await self._on_pod(obj, deleted=kind == "DELETED")
            except asyncio.CancelledError:
                raise
            except TierserveError as exc:
                log.warning("node agent watch: %s; retrying", exc)
                await asyncio.sleep(0.5)

    async def _on_pod(self, obj: Obj, deleted: bool) -> None:
        meta, spec = obj["metadata"], obj.get("spec") or {}
        node = self.nodes.get(spec.get("nodeName") or "")
        key = (meta.get("namespace", "default"), meta["name"])
        known = self.pods.get(key)
        if known is not None and known.uid != meta.get("uid"):
            known = None  # another pod of that name: the old one is being torn down
        if deleted:
            if known is not None:
                self._forget(known)
            return
        if node is None:
            return
        if known is None:
            if meta.get("deletionTimestamp"):
                await self._remove(key, str(meta.get("uid")))
                return
            if not self._free:
                log.warning("node agent: out of loopback addresses for %s/%s", *key)
                return
            pod = _Pod(key, str(meta.get("uid")), node, self._free.pop(0))
            self.pods[key] = pod
            pod.task = asyncio.create_task(self._run(pod, obj))
        elif meta.get("deletionTimestamp") and not known.deleting:
            known.deleting = True
            grace = float(meta.get("deletionGracePeriodSeconds") or 0)
            task = asyncio.create_task(self._terminate(known, grace))
            self._terminating.add(task)
            task.add_done_callback(self._terminating.discard)

    def _forget(self, pod: _Pod) -> None:
        pod.deleting = True
        if pod.task is not None:
            pod.task.cancel()
        if pod.proc is not None and pod.proc.poll() is None:
            # force-deleted from the API (grace 0): end the process off the event loop
            asyncio.get_running_loop().run_in_executor(None, self._kill, pod, 1.0)
        if self.pods.get(pod.key) is pod:
            del self.pods[pod.key]
            self._free.append(pod.ip)

    async def _terminate(self, pod: _Pod, grace_s: float) -> None:
        if pod.task is not None:
            pod.task.cancel()
        await asyncio.to_thread(self._kill, pod, grace_s)
        await self._remove(pod.key, pod.uid)
        self._forget(pod)

    async def _remove(self, key: tuple[str, str], uid: str) -> None:
        """The kubelet's last word on a pod: delete it for good (its containers are gone)."""
        body = {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0,
                "preconditions": {"uid": uid}}  # fmt: skip
        with contextlib.suppress(NotFoundError, ConflictError):
            await self.kube.request("DELETE", f"/api/v1/namespaces/{key[0]}/pods/{key[1]}", body)

    def _kill(self, pod: _Pod, grace_s: float) -> None:
        proc = pod.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(max(0.1, grace_s))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)

    async def _status(self, pod: _Pod, status: Obj) -> None:
        path = f"/api/v1/namespaces/{pod.key[0]}/pods/{pod.key[1]}/status"
        # strategic merge: conditions merge by type, so the scheduler's PodScheduled stays
        with contextlib.suppress(NotFoundError):
            await self.kube.patch(path, {"status": status}, STRATEGIC_PATCH)

    async def _run(self, pod: _Pod, obj: Obj) -> None:
        spec = obj.get("spec") or {}
        container = (spec.get("containers") or [{}])[0]
        name = container.get("name", "main")
        pod.container = name
        base = {"hostIP": "127.0.0.1", "podIP": pod.ip, "podIPs": [{"ip": pod.ip}]}
        waiting = {"name": name, "ready": False, "restartCount": 0, "image": "local",
                   "state": {"waiting": {"reason": "ContainerCreating"}}}  # fmt: skip
        await self._status(pod, {**base, "phase": "Pending", "containerStatuses": [waiting]})
        await asyncio.sleep(pod.node.cold_start_s)
        argv = container_argv(container, pod.node, pod.ip)
        env = {**os.environ, "POD_IP": pod.ip, "POD_NAME": pod.key[1],
               "POD_NAMESPACE": pod.key[0], "PYTHONUNBUFFERED": "1"}  # fmt: skip
        for item in container.get("env") or []:
            if "value" in item:
                env[item["name"]] = str(item["value"])
        probe = (container.get("readinessProbe") or {}).get("httpGet")
        while True:
            started = _now()
            logfile = self.log_file(*pod.key).open("ab")
            try:
                pod.proc = subprocess.Popen(
                    argv, env=env, stdout=logfile, stderr=subprocess.STDOUT,
                    start_new_session=True,
                )  # fmt: skip
            except OSError as exc:
                log.warning("node agent: %s/%s: cannot start %s: %s", *pod.key, argv, exc)
                pod.proc = None
            finally:
                logfile.close()
            running = {"name": name, "ready": False, "restartCount": pod.restarts,
                       "image": "local", "started": True,
                       "state": {"running": {"startedAt": started}}}  # fmt: skip
            await self._status(
                pod,
                {**base, "phase": "Running", "startTime": started,
                 "containerStatuses": [running],
                 "conditions": [{"type": "Ready", "status": "False"},
                                {"type": "ContainersReady", "status": "False"}]},
            )  # fmt: skip
            if pod.proc is not None and await self._ready(pod, probe):
                ready = {**running, "ready": True}
                await self._status(
                    pod,
                    {**base, "phase": "Running", "containerStatuses": [ready],
                     "conditions": [{"type": "Ready", "status": "True"},
                                    {"type": "ContainersReady", "status": "True"}]},
                )  # fmt: skip
            code = await asyncio.to_thread(pod.proc.wait) if pod.proc is not None else 127
            if pod.deleting:
                return
            pod.restarts += 1
            log.info("node agent: %s/%s exited %s; restarting", *pod.key, code)
            await asyncio.sleep(min(10.0, 0.5 * 2 ** min(pod.restarts, 5)))

    async def _ready(self, pod: _Pod, probe: Obj | None) -> bool:
        """Poll the readiness probe until it passes (True) or the process dies (False)."""
        if probe is None:
            return pod.proc is not None and pod.proc.poll() is None
        port, path = probe.get("port", 8080), probe.get("path", "/")
        url = f"http://{pod.ip}:{port}{path}"
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=1)) as session:
            while pod.proc is not None and pod.proc.poll() is None:
                with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError):
                    async with session.get(url) as resp:
                        if resp.status == 200:
                            return True
                await asyncio.sleep(0.1)
        return False


__all__ = ["FakeNode", "KubeletTLS", "NodeAgent", "container_argv", "tail_lines"]

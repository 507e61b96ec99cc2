"""Long-running entry points: the extender server and the pod controllers (deletion cost,
requeue of waiting pods)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import ssl
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from tierserve.errors import FieldError, ValidationError
from tierserve.runtime.kube.cache import ClusterCache, installed_groups
from tierserve.runtime.kube.client import KubeClient, KubeConfig
from tierserve.runtime.kube.controller import DeletionCostController, RequeueController
from tierserve.runtime.kube.extender import Extender, app
from tierserve.runtime.kube.lease import LeaderElector
from tierserve.runtime.kube.ledger import KubeLedger

log = logging.getLogger(__name__)


async def _groups(kube: KubeClient, groups: list[str] | None) -> list[str]:
    found = groups or await installed_groups(kube)
    if not found:
        log.warning("no ResourcePolicy CRD installed: every pod passes through")
    return found


@dataclass(frozen=True)
class ExtenderTLS:
    """HTTPS for the extender, and who may call its verbs.

    kube-scheduler's extender client supports ``enableHTTPS`` with a ``tlsConfig``
    (``caFile`` to check this server, ``certFile``/``keyFile`` to present a client
    certificate). With ``client_ca`` set, filter/prioritize/bind demand a client
    certificate signed by it (and, with ``client_names``, one of those common names);
    ``/healthz``, ``/readyz`` and ``/metrics`` stay open to probes and Prometheus.
    """

    cert_file: str
    key_file: str
    client_ca: str | None = None
    client_names: tuple[str, ...] = ()

    def context(self) -> ssl.SSLContext:
        for flag, value in (
            ("--tls-cert", self.cert_file),
            ("--tls-key", self.key_file),
            ("--client-ca", self.client_ca),
        ):
            if value is not None and not Path(value).is_file():
                raise ValidationError("", [FieldError(flag, f"{value!r} is not a readable file")])
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            ctx.load_cert_chain(self.cert_file, self.key_file)
            if self.client_ca is not None:
                ctx.load_verify_locations(self.client_ca)
                # optional at the handshake (probes have no certificate); the verbs check
                ctx.verify_mode = ssl.CERT_OPTIONAL
        except ssl.SSLError as exc:
            what = f"cannot load the certificate, key or CA: {exc}"
            raise ValidationError("", [FieldError("--tls-cert", what)]) from exc
        return ctx


def default_identity() -> str:
    """A replica's name in the Lease: the pod name (hostname) and a random suffix, so a
    restarted container does not pass for its former self."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class LeaderElection:
    """Active/passive replicas: only the holder of this Lease answers kube-scheduler (and
    runs the controllers); the others keep a warm cache, report not ready (so a Service
    sends them nothing) and take over when the holder stops renewing."""

    namespace: str
    name: str = "tierserve-extender"
    duration_s: float = 15.0
    identity: str = field(default_factory=default_identity)


async def serve_extender(
    config: KubeConfig,
    host: str,
    port: int,
    groups: list[str] | None = None,
    with_controller: bool = False,
    tls: ExtenderTLS | None = None,
    scheduler_name: str = "tierserve-scheduler",
    webhook: tuple[str, int] | None = None,
    leader: LeaderElection | None = None,
    all_feasible: bool = False,
) -> None:
    """Serve the extender (and optionally the pod controllers) until cancelled."""
    ssl_context = tls.context() if tls is not None else None
    async with KubeClient(config) as kube:
        cache = ClusterCache()
        watch = asyncio.create_task(cache.run(kube, await _groups(kube, groups)))
        tasks = [watch]
        await cache.wait_synced(60.0)
        extender = Extender(cache, kube, scheduler_name=scheduler_name, all_feasible=all_feasible)
        gate = None
        if leader is not None:

            async def catch_up() -> None:
                # what the last leader bound may not have reached our watch yet: list
                # the pods afresh before answering, and start with no stale memory
                await cache.relist(kube, "pods", "/api/v1/pods")
                extender.filtered.clear()

            elector = LeaderElector(
                kube,
                leader.namespace,
                leader.name,
                leader.identity,
                leader.duration_s,
                on_lead=catch_up,
            )
            gate = extender.leading = elector.leading
            tasks.append(asyncio.create_task(elector.run()))
        ledger = KubeLedger(cache, leading=gate)
        extender.metrics.registry.register(ledger)
        tasks.append(asyncio.create_task(ledger.run()))
        if with_controller:
            tasks.append(asyncio.create_task(DeletionCostController(cache, kube).run(gate=gate)))
            tasks.append(asyncio.create_task(RequeueController(cache, kube).run(gate=gate)))
        cache.snapshot()
        gc.collect()
        gc.freeze()  # the cache is long-lived: keep full collections from walking it (p99)
        require = None
        if tls is not None and tls.client_ca is not None:
            require = tls.client_names or ("*",)
        else:
            log.warning(
                "the extender accepts filter/prioritize/bind from any client: serve it with "
                "--tls-cert/--tls-key/--client-ca so only kube-scheduler can bind pods"
            )
        runner = web.AppRunner(app(extender, clients=require), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
        await site.start()
        if webhook is not None:
            # the admission webhook on its own port: kube-apiserver calls it from outside
            # the pod network, so the NetworkPolicy can open this port alone
            await web.TCPSite(runner, webhook[0], webhook[1], ssl_context=ssl_context).start()
        scheme = "https" if ssl_context is not None else "http"
        log.info(
            "tierserve extender on %s://%s:%d (%d nodes)", scheme, host, port, len(cache.nodes)
        )
        print(f"tierserve extender listening on {scheme}://{host}:{port}", flush=True)
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*tasks, return_exceptions=True)
            await runner.cleanup()


async def run_controller(config: KubeConfig, groups: list[str] | None = None) -> None:
    """Run the pod controllers (deletion cost, requeue) until cancelled."""
    async with KubeClient(config) as kube:
        cache = ClusterCache()
        watch = asyncio.create_task(cache.run(kube, await _groups(kube, groups)))
        await cache.wait_synced(60.0)
        controller = DeletionCostController(cache, kube)
        requeue = RequeueController(cache, kube)
        await controller.reconcile()
        print("tierserve pod controllers running (deletion cost, requeue)", flush=True)
        try:
            await asyncio.gather(watch, controller.run(), requeue.run())
        finally:
            watch.cancel()


__all__ = ["ExtenderTLS", "LeaderElection", "default_identity", "run_controller", "serve_extender"]

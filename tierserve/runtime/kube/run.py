"""Long-running entry points: the extender server and the pod controllers (deletion cost,
requeue of waiting pods)."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging

from aiohttp import web

from tierserve.runtime.kube.cache import ClusterCache, installed_groups
from tierserve.runtime.kube.client import KubeClient, KubeConfig
from tierserve.runtime.kube.controller import DeletionCostController, RequeueController
from tierserve.runtime.kube.extender import Extender, app

log = logging.getLogger(__name__)


async def _groups(kube: KubeClient, groups: list[str] | None) -> list[str]:
    found = groups or await installed_groups(kube)
    if not found:
        log.warning("no ResourcePolicy CRD installed: every pod passes through")
    return found


async def serve_extender(
    config: KubeConfig,
    host: str,
    port: int,
    groups: list[str] | None = None,
    with_controller: bool = False,
) -> None:
    """Serve the extender (and optionally the deletion-cost controller) until cancelled."""
    async with KubeClient(config) as kube:
        cache = ClusterCache()
        watch = asyncio.create_task(cache.run(kube, await _groups(kube, groups)))
        tasks = [watch]
        await cache.wait_synced(60.0)
        if with_controller:
            tasks.append(asyncio.create_task(DeletionCostController(cache, kube).run()))
            tasks.append(asyncio.create_task(RequeueController(cache, kube).run()))
        cache.snapshot()
        gc.collect()
        gc.freeze()  # the cache is long-lived: keep full collections from walking it (p99)
        runner = web.AppRunner(app(Extender(cache, kube)), access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        log.info("tierserve extender on http://%s:%d (%d nodes)", host, port, len(cache.nodes))
        print(f"tierserve extender listening on http://{host}:{port}", flush=True)
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


__all__ = ["run_controller", "serve_extender"]

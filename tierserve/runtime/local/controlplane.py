"""The embedded control plane: store + API server + controllers + gateway, on one machine.

``ControlPlane.start`` opens the state directory, seeds the default cluster on first
start (or the nodes of a cluster file), re-adopts replica processes a previous control
plane left running (pid + start time + port), stops processes that belong to no replica,
then serves the API and runs the controllers every ``tick_s``. ``stop`` ends it, stopping
every replica process (``tierserve down``) or leaving them for the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tierserve.gateway.app import GATEWAY_STATE, create_gateway_app
from tierserve.gateway.config import GatewayConfig
from tierserve.gateway.routes import dump_routes
from tierserve.gateway.run import serve_app
from tierserve.gateway.table import RouteTable
from tierserve.model import (
    InferenceService,
    Node,
    PersistentVolume,
    PersistentVolumeClaim,
    Phase,
    Replica,
    load_documents,
)
from tierserve.policy.autoscaling import AutoscalerConfig
from tierserve.policy.lifecycle import SupervisorConfig
from tierserve.policy.signals import GatewaySource
from tierserve.runtime.clock import Clock, SystemClock
from tierserve.runtime.local.api import ApiServer
from tierserve.runtime.local.autoscaler import Autoscaler
from tierserve.runtime.local.cluster import (
    VIRTUAL_NODE,
    VirtualNodeSettings,
    default_nodes,
)
from tierserve.runtime.local.config import (
    DB_FILE,
    PID_FILE,
    ClientConfig,
    ensure_not_running,
    ensure_token,
)
from tierserve.runtime.local.controllers import ControllerSettings, Reconciler
from tierserve.runtime.local.feed import DashboardFeed, FeedSettings
from tierserve.runtime.local.gpumetrics import GpuMetrics, NvmlSource, real_gpu_nodes
from tierserve.runtime.local.health import HttpHealthProbe
from tierserve.runtime.local.nvml import Nvml
from tierserve.runtime.local.ports import PortAllocator
from tierserve.runtime.local.process import PosixLauncher, ProcessLauncher
from tierserve.runtime.local.routing import service_routes
from tierserve.runtime.local.runner import ReplicaRunner
from tierserve.runtime.local.scraper import MetricsScraper
from tierserve.runtime.local.store import SqliteStore
from tierserve.runtime.planner import PlannerInputs
from tierserve.web.dashboard import DashboardRoutes
from tierserve.web.history import DEFAULT_POINTS

log = logging.getLogger("tierserve.controlplane")

STARTUP_OVERHEAD_S = 1.0
"""Wall seconds a replica process takes to start before its engine loads (the tier
planner's prior for a cold start, with the engine's load time)."""


@dataclass
class ControlPlaneConfig:
    state_dir: Path
    host: str = "127.0.0.1"
    api_port: int = 0
    """0 = any free port (printed by ``up`` and written to client.json)."""
    gateway_port: int = 0
    tick_s: float = 0.5
    cluster_file: Path | None = None
    virtual: VirtualNodeSettings | None = None
    """Overrides for the default virtual node (flags of ``up``); None keeps what is stored."""
    controllers: ControllerSettings = field(default_factory=ControllerSettings)
    autoscaler: AutoscalerConfig = field(default_factory=AutoscalerConfig)
    gateway: GatewayConfig = field(default_factory=GatewayConfig)
    emulator_time_scale: float | None = None
    """Passed to every emulated replica as ``--time-scale`` (demos, tests); None = real time."""
    metrics_interval_s: float = 1.0
    """How often every Ready replica's /metrics is scraped."""
    supervisor: SupervisorConfig = field(default_factory=SupervisorConfig)
    shutdown_grace_s: float = 10.0
    history_interval_s: float | None = None
    """Seconds between the dashboard's points (None: the autoscaler's period)."""
    history_points: int = DEFAULT_POINTS
    """Points of history kept per service (memory: ``web.history``)."""


class ControlPlane:
    def __init__(
        self,
        config: ControlPlaneConfig,
        clock: Clock | None = None,
        launcher: ProcessLauncher | None = None,
        nvml: Nvml | None = None,
    ) -> None:
        """``nvml``: how real NVIDIA GPUs are read (default: ``pynvml`` when installed)."""
        self.config = config
        self.clock = clock or SystemClock()
        root = config.state_dir
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self.store = SqliteStore(root / DB_FILE, clock=self.clock.now)
        self.token = ensure_token(root)
        self.launcher = launcher or PosixLauncher(str(root), clock=self.clock)
        self.probe = HttpHealthProbe()
        self.ports = PortAllocator(config.host)
        self.runner = ReplicaRunner(
            self.launcher,
            self.probe,
            self.clock,
            str(root),
            supervisor=config.supervisor,
            ports=self.ports,
            emulator_args=(
                ("--time-scale", f"{config.emulator_time_scale:g}")
                if config.emulator_time_scale is not None
                else ()
            ),
        )
        self.table = RouteTable()
        # One clock for the gateway's signals and the autoscaler that reads them.
        self.gateway_app = create_gateway_app(self.table, config.gateway, now=self.clock.now)
        gateway = self.gateway_app[GATEWAY_STATE]
        self._gateway_task: asyncio.Task[None] | None = None
        self.reconciler = Reconciler(
            self.store,
            self.runner,
            config.controllers,
            inflight=lambda r: gateway.in_flight(r.name),
        )
        self.reconciler.on_change = self.refresh_routes
        self.scraper = MetricsScraper()
        self.gpu_metrics = GpuMetrics(nvml if nvml is not None else Nvml.load())
        self.nvml_source = NvmlSource(self.gpu_metrics)
        # Under ``emulator_time_scale`` the TTFT signal is in emulated seconds, like the
        # emulator's own metrics, so the same target works at any time scale.
        self.gateway_source = GatewaySource(gateway, config.emulator_time_scale or 1.0)
        max_age = config.autoscaler.metric_max_age_s
        self.planner = PlannerInputs(
            gateway,
            lambda key, now: self.scraper.fresh(key, now, max_age),
            time_scale=config.emulator_time_scale or 1.0,
            startup_overhead_s=STARTUP_OVERHEAD_S,
        )
        self.autoscaler = Autoscaler(self.store, self.scraper, config.autoscaler, self.planner)
        self.feed = DashboardFeed(
            self.store,
            self.scraper,
            gateway,
            FeedSettings(
                interval_s=config.history_interval_s or config.autoscaler.period_s,
                points=config.history_points,
                metric_max_age_s=max_age,
            ),
            config.autoscaler,
        )
        self._scrape_task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._stop_replicas = True
        self._site: web.TCPSite | None = None
        self._runner_web: web.AppRunner | None = None
        self._loop_task: asyncio.Task[None] | None = None
        self.client: ClientConfig | None = None

    # -- start -------------------------------------------------------------------------------

    def _seed_cluster(self) -> None:
        if self.config.cluster_file is not None:
            text = self.config.cluster_file.read_text(encoding="utf-8")
            nodes = [
                o
                for o in load_documents(text, str(self.config.cluster_file))
                if isinstance(o, Node)
            ]
            wanted = {n.name for n in nodes}
            for stale in self.store.list(Node):
                if stale.name not in wanted:
                    self.store.delete(stale)
            self.store.put_all(nodes)
            return
        if not self.store.list(Node):
            self.store.put_all(default_nodes(self.config.virtual))
        elif self.config.virtual is not None:
            current = self.store.get(Node, "", VIRTUAL_NODE)
            if current is not None and current.spec.virtual is not None:
                v = self.config.virtual
                spec = current.spec.model_copy(
                    update={
                        "virtual": current.spec.virtual.model_copy(
                            update={
                                "cold_start_seconds": v.cold_start_s,
                                "price_per_gpu_hour": v.price_per_gpu_hour,
                                "gpu_quota": v.gpu_quota,
                            }
                        )
                    }
                )
                self.store.put(current.model_copy(update={"spec": spec}))

    async def _adopt(self) -> None:
        """Re-adopt replica processes of a previous control plane; stop the strays."""
        nodes = {n.name: n for n in self.store.list(Node)}
        services = {(s.namespace, s.name): s for s in self.store.list(InferenceService)}
        claims = self.store.list(PersistentVolumeClaim)
        volumes = self.store.list(PersistentVolume)
        for replica in self.store.list(Replica):
            if replica.phase not in (Phase.STARTING, Phase.READY, Phase.TERMINATING):
                continue
            node = nodes.get(replica.node_name or "")
            service = services.get((replica.namespace, replica.spec.service))
            adopted = False
            if node is not None and service is not None:
                adopted = self.runner.adopt(replica, service, node, claims, volumes)
            if not adopted:  # its process is gone: start it again (Terminating ones finish)
                self.reconciler.not_adopted(replica, self.clock.now())
        stray = await self.runner.sweep(self.config.shutdown_grace_s)
        for handle in stray:
            log.warning("stopped orphan process %d (%s)", handle.pid, handle.replica)

    async def _serve_api(self) -> str:
        api = ApiServer(
            self.store,
            self.token,
            str(self.config.state_dir),
            on_shutdown=self.request_stop,
            tier_of=self._tier_of,
            clock=self.clock,
            routes=lambda: dump_routes(self.table.routes),
            dashboard=DashboardRoutes(self.feed, self.token, self._stopping.is_set),
        )
        self._runner_web = web.AppRunner(api.app(), access_log=None)
        await self._runner_web.setup()
        self._site = web.TCPSite(self._runner_web, self.config.host, self.config.api_port)
        await self._site.start()
        port = self._runner_web.addresses[0][1]
        return f"http://{self.config.host}:{port}"

    def refresh_routes(self) -> None:
        """Point the gateway at the Ready replicas of every service."""
        routes = service_routes(
            self.store.list(InferenceService, None),
            self.store.list(Replica, None),
            {n.name: n for n in self.store.list(Node)},
            self.config.host,
        )
        if routes != list(self.table.routes):
            self.table.set_routes(routes)

    async def _serve_gateway(self) -> int:
        bound: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        self._gateway_task = asyncio.get_running_loop().create_task(
            serve_app(
                self.gateway_app,
                self.config.host,
                self.config.gateway_port,
                on_ready=bound.set_result,
            )
        )
        pending: set[asyncio.Future[Any]] = {bound, self._gateway_task}
        await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
        if not bound.done():
            self._gateway_task.result()  # raises why the gateway could not start
        return bound.result()

    def _tier_of(self, replica: Replica) -> str:
        node = self.store.get(Node, "", replica.node_name or "")
        return node.tier if node is not None else ""

    async def start(self) -> ClientConfig:
        root = self.config.state_dir
        pid_path = root / PID_FILE
        ensure_not_running(root)
        pid_path.write_text(str(os.getpid()))
        self._seed_cluster()
        try:  # real GPUs whose metrics cannot be read: say so now, not as a silent 0
            self.gpu_metrics.check(self.store.list(Node))
        except Exception:
            pid_path.unlink(missing_ok=True)
            self.store.close()
            raise
        await self._adopt()
        api_url = await self._serve_api()
        self.refresh_routes()
        gateway_port = await self._serve_gateway()
        self.client = ClientConfig(
            api_url=api_url,
            gateway_url=f"http://{self.config.host}:{gateway_port}",
            token=self.token,
            pid=os.getpid(),
        )
        self.client.save(root)
        loop = asyncio.get_running_loop()
        self._loop_task = loop.create_task(self._loop())
        self._scrape_task = loop.create_task(self._scrape_loop())
        return self.client

    # -- run / stop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._stopping.is_set():
            now = self.clock.now()
            # A bug in one step must not stop the control plane, nor the other steps.
            for step in (self.autoscaler.tick, self.reconciler.tick, self.feed.tick):
                try:
                    step(now)
                except Exception:
                    log.exception("controller tick failed")
            try:
                self.refresh_routes()
            except Exception:
                log.exception("route refresh failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.tick_s)

    def _scrape_targets(self) -> list[tuple[tuple[str, str], int]]:
        targets: list[tuple[tuple[str, str], int]] = []
        on_real_gpus: dict[tuple[str, str], tuple[int, tuple[int, ...]]] = {}
        real = {n.name for n in real_gpu_nodes(self.store.list(Node))}
        for r in self.store.list(Replica, None):
            if not r.ready or not r.status.port:
                continue
            key = (r.namespace, r.name)
            targets.append((key, r.status.port))
            if r.node_name in real and r.status.pid is not None:
                on_real_gpus[key] = (r.status.pid, self.runner.gpus_of(r))
        self.nvml_source.on_gpus = on_real_gpus
        return targets

    async def _scrape_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.scraper.scrape(
                    self._scrape_targets(),
                    self.clock.now(),
                    sources=(self.gateway_source, self.nvml_source),
                )
            except Exception:
                log.exception("metrics scrape failed")
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.config.metrics_interval_s)

    def request_stop(self, stop_replicas: bool = True) -> None:
        self._stop_replicas = stop_replicas
        self._stopping.set()

    async def wait(self) -> None:
        await self._stopping.wait()

    async def stop(self, stop_replicas: bool | None = None) -> None:
        if stop_replicas is not None:
            self._stop_replicas = stop_replicas
        self._stopping.set()
        for task in (self._loop_task, self._scrape_task):
            if task is not None:
                await task
        self.feed.close()
        await self.scraper.close()
        self.gpu_metrics.close()
        self.planner.close()
        if self._gateway_task is not None:
            self._gateway_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._gateway_task
        await self.runner.shutdown(self._stop_replicas, self.config.shutdown_grace_s)
        if self._stop_replicas:
            await self.runner.sweep(self.config.shutdown_grace_s)
            self.reconciler.processes_stopped()
        if self._runner_web is not None:
            await self._runner_web.cleanup()
        await self.probe.close()
        root = self.config.state_dir
        with contextlib.suppress(FileNotFoundError):
            (root / PID_FILE).unlink()
        self.store.close()

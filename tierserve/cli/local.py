"""``tierserve up`` / ``down`` / ``logs``: the embedded control plane on this machine."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from tierserve.aio import loop_factory
from tierserve.cli.common import NamespaceOption, StateDirOption, client_for, root_of
from tierserve.cli.output import fail
from tierserve.errors import TierserveError
from tierserve.gateway.config import GatewayConfig
from tierserve.runtime.local.autoscaler import AutoscalerSettings
from tierserve.runtime.local.cluster import (
    DEFAULT_COLD_START_S,
    DEFAULT_GPU_QUOTA,
    DEFAULT_PRICE_PER_GPU_HOUR,
    VirtualNodeSettings,
)
from tierserve.runtime.local.config import (
    CLIENT_FILE,
    LOG_FILE,
    PID_FILE,
    ClientConfig,
    ensure_not_running,
    running_pid,
)
from tierserve.runtime.local.controllers import ControllerSettings
from tierserve.runtime.local.controlplane import ControlPlane, ControlPlaneConfig
from tierserve.runtime.local.lifecycle import SupervisorConfig
from tierserve.runtime.local.process import PosixLauncher, sweep_orphans


def _print_up(config: ClientConfig, root: Path) -> None:
    typer.echo(f"tierserve control plane is up (pid {config.pid}, state {root})")
    typer.echo(f"API:      {config.api_url}")
    typer.echo(f"Gateway:  {config.gateway_url}")


async def _run_foreground(config: ControlPlaneConfig) -> None:
    plane = ControlPlane(config)
    client = await plane.start()
    _print_up(client, config.state_dir)
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, plane.request_stop, True)
    await plane.wait()
    await plane.stop()
    typer.echo("tierserve control plane stopped")


def _detach(argv: list[str], root: Path, timeout_s: float) -> None:
    root.mkdir(parents=True, exist_ok=True)
    try:
        ensure_not_running(root)  # before touching client.json: it is the running one's
    except TierserveError as exc:
        fail(exc)
    with contextlib.suppress(FileNotFoundError):
        (root / CLIENT_FILE).unlink()
    log = open(root / LOG_FILE, "ab")  # noqa: SIM115 - handed to the child
    child = subprocess.Popen(
        [sys.executable, "-m", "tierserve.cli.main", *argv],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if child.poll() is not None:
            tail = (root / LOG_FILE).read_text(errors="replace").strip().splitlines()[-5:]
            fail("the control plane exited at start:\n" + "\n".join(tail))
        with contextlib.suppress(TierserveError, json.JSONDecodeError, TypeError):
            config = ClientConfig.load(root)
            if config.pid == child.pid:
                _print_up(config, root)
                return
        time.sleep(0.1)
    child.terminate()
    fail(f"the control plane did not come up within {timeout_s:g}s; see {root / LOG_FILE}")


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        state_dir: Path | None = StateDirOption,
        detach: bool = typer.Option(False, "--detach", "-d", help="Run in the background."),
        host: str = typer.Option("127.0.0.1", help="Address to bind the API and gateway."),
        api_port: int = typer.Option(0, help="API port (0: any free port)."),
        gateway_port: int = typer.Option(0, help="Gateway port (0: any free port)."),
        cluster: Path | None = typer.Option(
            None,
            "--cluster",
            help="YAML of the cluster's Nodes (default: the seed's "
            "idc001 + virtual-kubelet-cn-hangzhou-b).",
        ),
        virtual_cold_start_s: float | None = typer.Option(
            None, min=0, help=f"Virtual node cold start [default: {DEFAULT_COLD_START_S:g}]."
        ),
        virtual_price_per_gpu_hour: float | None = typer.Option(
            None, min=0, help=f"Virtual node price [default: {DEFAULT_PRICE_PER_GPU_HOUR:g}]."
        ),
        virtual_gpu_quota: int | None = typer.Option(
            None, min=0, help=f"Virtual node GPU quota [default: {DEFAULT_GPU_QUOTA}]."
        ),
        tick_s: float = typer.Option(0.5, min=0.01, help="Controller period."),
        start_timeout_s: float = typer.Option(
            600.0, min=0.1, help="A replica not healthy this long after start is replaced."
        ),
        drain_grace_s: float = typer.Option(
            30.0, min=0, help="How long a terminating replica may finish its requests."
        ),
        stop_grace_s: float = typer.Option(10.0, min=0.1, help="SIGTERM to SIGKILL grace."),
        ready_timeout_s: float = typer.Option(30.0, min=1, help="--detach: wait this long."),
        hpa_period_s: float = typer.Option(
            5.0, min=0.01, help="Autoscaler period (Kubernetes' HPA sync period is 15 s)."
        ),
        hpa_downscale_stabilization_s: float = typer.Option(
            300.0, min=0, help="Scale-down stabilization window (Kubernetes: 300 s)."
        ),
        metrics_interval_s: float = typer.Option(
            1.0, min=0.05, help="How often replicas' /metrics are scraped."
        ),
        routing_policy: str = typer.Option(
            "least_outstanding", help="Gateway balancing: least_outstanding or round_robin."
        ),
        hold_timeout_s: float = typer.Option(
            60.0, min=0, help="Gateway: hold a request this long while no replica is Ready."
        ),
        api_key: list[str] | None = typer.Option(
            None, "--api-key", help="Gateway: accept only these client keys (repeatable)."
        ),
        emulator_time_scale: float | None = typer.Option(
            None,
            min=0.001,
            help="Run emulated replicas this much faster (e.g. 0.1 = 10x) for demos and "
            "tests; their metrics stay in emulated units.",
        ),
    ) -> None:
        """Start the control plane: API server, controllers and gateway."""
        root = root_of(state_dir)
        virtual = None
        if any(
            v is not None
            for v in (virtual_cold_start_s, virtual_price_per_gpu_hour, virtual_gpu_quota)
        ):
            virtual = VirtualNodeSettings(
                cold_start_s=DEFAULT_COLD_START_S
                if virtual_cold_start_s is None
                else virtual_cold_start_s,
                price_per_gpu_hour=DEFAULT_PRICE_PER_GPU_HOUR
                if virtual_price_per_gpu_hour is None
                else virtual_price_per_gpu_hour,
                gpu_quota=DEFAULT_GPU_QUOTA if virtual_gpu_quota is None else virtual_gpu_quota,
            )
        if cluster is not None and not cluster.is_file():
            fail(f"--cluster: {cluster} is not a file")
        if detach:
            argv = [a for a in sys.argv[1:] if a not in ("--detach", "-d")]
            if "--state-dir" not in argv:
                argv += ["--state-dir", str(root)]
            _detach(argv, root, ready_timeout_s)
            return
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        config = ControlPlaneConfig(
            state_dir=root,
            host=host,
            api_port=api_port,
            gateway_port=gateway_port,
            tick_s=tick_s,
            cluster_file=cluster,
            virtual=virtual,
            controllers=ControllerSettings(drain_grace_s=drain_grace_s, stop_grace_s=stop_grace_s),
            supervisor=SupervisorConfig(start_timeout_s=start_timeout_s, grace_s=stop_grace_s),
            shutdown_grace_s=stop_grace_s,
            autoscaler=AutoscalerSettings(
                period_s=hpa_period_s, downscale_stabilization_s=hpa_downscale_stabilization_s
            ),
            metrics_interval_s=metrics_interval_s,
            emulator_time_scale=emulator_time_scale,
        )
        try:
            config.gateway = GatewayConfig(
                policy=routing_policy, hold_timeout_s=hold_timeout_s,
                api_keys=tuple(api_key or ()),
            )
            # uvloop (when installed) roughly halves the gateway's CPU per request.
            with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
                runner.run(_run_foreground(config))
        except TierserveError as exc:
            fail(exc)

    @app.command()
    def down(
        state_dir: Path | None = StateDirOption,
        timeout_s: float = typer.Option(60.0, min=1, help="Wait this long for it to stop."),
    ) -> None:
        """Stop the control plane and every replica process it started."""
        root = root_of(state_dir)
        pid_file = root / PID_FILE
        pid = running_pid(root)
        stopped = False
        if pid:
            try:
                client_for(state_dir).shutdown(stop_replicas=True)
            except (TierserveError, SystemExit, typer.Exit):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline and pid_file.exists():
                try:
                    os.kill(pid, 0)
                except ProcessLookupError:
                    break
                time.sleep(0.1)
            stopped = True
        # Replica processes left by a control plane that crashed: stop them too.
        strays = asyncio.run(sweep_orphans(PosixLauncher(str(root)), (), grace_s=10.0))
        with contextlib.suppress(FileNotFoundError):
            (root / CLIENT_FILE).unlink()
        if not stopped and not strays:
            typer.echo(f"no control plane running in {root}")
            return
        extra = f"; stopped {len(strays)} leftover replica process(es)" if strays else ""
        typer.echo(f"tierserve control plane stopped{extra}")

    @app.command()
    def logs(
        replica: str = typer.Argument(..., help="Replica (pod) name."),
        tail: int | None = typer.Option(None, "--tail", min=0, help="Last N lines."),
        namespace: str = NamespaceOption,
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Print a replica's log (kubectl logs)."""
        try:
            typer.echo(client_for(state_dir).logs(namespace, replica, tail), nl=False)
        except TierserveError as exc:
            fail(exc)

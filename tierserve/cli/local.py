"""``tierserve up`` / ``down`` / ``logs``: the embedded control plane on this machine."""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import ipaddress
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import typer

from tierserve.aio import loop_factory, tune_gc_for_serving
from tierserve.cli.common import NamespaceOption, StateDirOption, client_for, root_of
from tierserve.cli.dashboard import dashboard_url
from tierserve.cli.output import fail
from tierserve.errors import (
    FieldError,
    NotFoundError,
    TierserveError,
    ValidationError,
)
from tierserve.gateway.config import GatewayConfig
from tierserve.model import Node, dump_documents
from tierserve.policy.autoscaling import AutoscalerConfig
from tierserve.policy.lifecycle import SupervisorConfig
from tierserve.runtime.local.client import Client
from tierserve.runtime.local.cluster import (
    DEFAULT_COLD_START_S,
    DEFAULT_GPU_QUOTA,
    DEFAULT_PRICE_PER_GPU_HOUR,
    VirtualNodeOverrides,
    load_cluster,
    override_virtual,
)
from tierserve.runtime.local.config import (
    CLIENT_FILE,
    LOG_FILE,
    PID_FILE,
    TOKEN_FILE,
    ClientConfig,
    ensure_not_running,
    running_pid,
)
from tierserve.runtime.local.controllers import ControllerSettings
from tierserve.runtime.local.controlplane import ControlPlane, ControlPlaneConfig
from tierserve.runtime.local.process import PosixLauncher, sweep_orphans


def _print_up(config: ClientConfig, root: Path) -> None:
    typer.echo(f"tierserve control plane is up (pid {config.pid}, state {root})")
    typer.echo(f"API:      {config.api_url}")
    typer.echo(f"Gateway:  {config.gateway_url}")
    typer.echo(f"Dashboard: {dashboard_url(config)}  (sign in with {root / TOKEN_FILE})")


async def _run_foreground(config: ControlPlaneConfig, transient: Path | None) -> None:
    plane = ControlPlane(config)
    client = await plane.start()
    tune_gc_for_serving()  # after start: the store, the adopted replicas and the gateway
    if transient is not None:  # loaded into the store at start; nothing reads it again
        transient.unlink(missing_ok=True)
    _print_up(client, config.state_dir)
    sys.stdout.flush()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, plane.request_stop, True)
    await plane.wait()
    await plane.stop()
    typer.echo("tierserve control plane stopped")


def is_loopback(host: str) -> bool:
    """Whether ``host`` is reachable from this machine only (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name: it may resolve to anything


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


def _cluster_nodes(cluster: Path, overrides: VirtualNodeOverrides) -> list[Node]:
    """The Nodes of ``--cluster`` with the ``--virtual-*`` flags given applied to its
    virtual nodes; exits 1 naming every bad field (or a flag with no virtual node to set)."""
    if not cluster.is_file():
        fail(ValidationError("", [FieldError("--cluster", f"{str(cluster)!r} is not a file")]))
    try:
        nodes = load_cluster(cluster.read_text(encoding="utf-8"), str(cluster))
    except (OSError, UnicodeDecodeError) as exc:
        fail(ValidationError("", [FieldError("--cluster", f"{str(cluster)!r}: {exc}")]))
    except ValidationError as exc:
        fail(exc)
    given = [
        flag
        for flag, value in (
            ("--virtual-cold-start-s", overrides.cold_start_s),
            ("--virtual-price-per-gpu-hour", overrides.price_per_gpu_hour),
            ("--virtual-gpu-quota", overrides.gpu_quota),
        )
        if value is not None
    ]
    if given and not any(n.virtual for n in nodes):
        problem = f"{str(cluster)!r} has no virtual node (spec.virtual) to set it on"
        fail(ValidationError("", [FieldError(flag, problem) for flag in given]))
    return override_virtual(nodes, overrides)


def _transient_cluster_file(root: Path, nodes: list[Node]) -> Path:
    """``nodes`` as a cluster file in the state directory, for the control plane to load at
    start (and the caller to remove then)."""
    root.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=root, prefix=".cluster-", suffix=".yaml")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(dump_documents(nodes, redact=False))
    return Path(name)


def register(app: typer.Typer) -> None:
    @app.command()
    def up(
        state_dir: Path | None = StateDirOption,
        detach: bool = typer.Option(
            False, "--detach", "-d", help="Run in the background (default: in the foreground)."
        ),
        host: str = typer.Option("127.0.0.1", help="Address to bind the API and gateway."),
        api_port: int = typer.Option(0, min=0, max=65535, help="API port (0: any free port)."),
        gateway_port: int = typer.Option(
            0, min=0, max=65535, help="Gateway port (0: any free port)."
        ),
        cluster: Path | None = typer.Option(
            None,
            "--cluster",
            help="YAML of the cluster's Nodes, replacing the default cluster (the seed's "
            "idc001 + virtual-kubelet-cn-hangzhou-b); an example: `tierserve example cluster`.",
            show_default=False,
        ),
        virtual_cold_start_s: float | None = typer.Option(
            None,
            min=0,
            help="Virtual node cold start, in seconds (default: "
            f"{DEFAULT_COLD_START_S:g}; with --cluster: overrides every virtual node's).",
            show_default=False,
        ),
        virtual_price_per_gpu_hour: float | None = typer.Option(
            None,
            min=0,
            help="Virtual node price per GPU-hour (default: "
            f"{DEFAULT_PRICE_PER_GPU_HOUR:g}; with --cluster: overrides every virtual node's).",
            show_default=False,
        ),
        virtual_gpu_quota: int | None = typer.Option(
            None,
            min=0,
            help="Virtual node GPU quota: GPUs in use at once (default: "
            f"{DEFAULT_GPU_QUOTA}; with --cluster: overrides every virtual node's).",
            show_default=False,
        ),
        tick_s: float = typer.Option(0.5, min=0.01, help="Controller period, in seconds."),
        start_timeout_s: float = typer.Option(
            600.0,
            min=0.1,
            help="A replica not healthy this many seconds after start is replaced.",
        ),
        drain_grace_s: float = typer.Option(
            30.0, min=0, help="Seconds a terminating replica may finish its requests."
        ),
        stop_grace_s: float = typer.Option(
            10.0, min=0.1, help="Seconds from SIGTERM to SIGKILL of a replica."
        ),
        ready_timeout_s: float = typer.Option(
            30.0, min=1, help="--detach: wait this many seconds for the control plane."
        ),
        hpa_period_s: float = typer.Option(
            5.0,
            min=0.01,
            help="Autoscaler period, in seconds (Kubernetes' HPA sync period is 15 s).",
        ),
        hpa_downscale_stabilization_s: float = typer.Option(
            300.0, min=0, help="Scale-down stabilization window, in seconds (Kubernetes: 300)."
        ),
        metrics_interval_s: float = typer.Option(
            1.0, min=0.05, help="Seconds between scrapes of the replicas' /metrics."
        ),
        routing_policy: str = typer.Option(
            "least_outstanding", help="Gateway balancing: least_outstanding or round_robin."
        ),
        hold_timeout_s: float = typer.Option(
            60.0,
            min=0,
            help="Gateway: hold a request this many seconds while no replica is Ready.",
        ),
        api_key: list[str] | None = typer.Option(
            None,
            "--api-key",
            help="Gateway: accept only these client keys (repeatable; default: any client).",
            show_default=False,
        ),
        emulator_time_scale: float | None = typer.Option(
            None,
            min=0.001,
            help="Run emulated replicas this much faster, a factor (e.g. 0.1 = 10x) for demos "
            "and tests; their metrics stay in emulated units (default: 1, real time).",
            show_default=False,
        ),
    ) -> None:
        """Start the control plane: API server, controllers and gateway."""
        root = root_of(state_dir)
        if not api_key and not is_loopback(host):
            typer.echo(
                f"warning: --host {host} exposes the gateway beyond this machine with no API "
                "keys: anyone who can reach it can use the models; give --api-key KEY",
                err=True,
            )
        overrides = VirtualNodeOverrides(
            virtual_cold_start_s, virtual_price_per_gpu_hour, virtual_gpu_quota
        )
        # Validated here, before --detach forks: a bad file fails this very command.
        nodes = _cluster_nodes(cluster, overrides) if cluster is not None else None
        if detach:
            argv = [a for a in sys.argv[1:] if a not in ("--detach", "-d")]
            if "--state-dir" not in argv:
                argv += ["--state-dir", str(root)]
            _detach(argv, root, ready_timeout_s)
            return
        cluster_file, transient = cluster, None
        if nodes is not None and overrides.given:
            transient = cluster_file = _transient_cluster_file(root, nodes)
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
            cluster_file=cluster_file,
            virtual=overrides.settings() if overrides.given and cluster is None else None,
            controllers=ControllerSettings(drain_grace_s=drain_grace_s, stop_grace_s=stop_grace_s),
            supervisor=SupervisorConfig(start_timeout_s=start_timeout_s, grace_s=stop_grace_s),
            shutdown_grace_s=stop_grace_s,
            autoscaler=AutoscalerConfig(
                period_s=hpa_period_s, downscale_stabilization_s=hpa_downscale_stabilization_s
            ),
            metrics_interval_s=metrics_interval_s,
            emulator_time_scale=emulator_time_scale,
        )
        try:
            config.gateway = GatewayConfig(
                policy=routing_policy,
                hold_timeout_s=hold_timeout_s,
                api_keys=tuple(api_key or ()),
            )
            # uvloop (when installed) roughly halves the gateway's CPU per request.
            with asyncio.Runner(loop_factory=loop_factory("auto")) as runner:
                runner.run(_run_foreground(config, transient))
        except TierserveError as exc:
            fail(exc)
        finally:
            if transient is not None:
                transient.unlink(missing_ok=True)

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
        tail: int | None = typer.Option(
            None, "--tail", min=0, help="Last N lines (default: all).", show_default=False
        ),
        follow: bool = typer.Option(
            False,
            "-f",
            "--follow",
            help="Keep printing what the replica writes, until it is gone or Ctrl-C.",
        ),
        namespace: str = NamespaceOption,
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Print a replica's log (kubectl logs)."""
        try:
            client = client_for(state_dir)
            if follow:
                with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C ends it, exit 0
                    _follow(client, namespace, replica, tail)
                return
            typer.echo(client.logs(namespace, replica, tail), nl=False)
        except TierserveError as exc:
            fail(exc)


FOLLOW_POLL_S = 0.5
"""How often ``logs -f`` asks for new output (the API has no streaming endpoint)."""


def _follow(client: Client, namespace: str, name: str, tail: int | None) -> None:
    """``logs -f``: the log (its last ``tail`` lines), then what is appended, asked for
    with ``?offset=`` (the API's ``X-Log-Offset`` of its last answer): at once after an
    answer with bytes (the API sends a big log in chunks), else after ``FOLLOW_POLL_S``;
    until the replica is gone (kubectl: until the container ends; the API answers 404).

    Bytes are decoded incrementally, so a character split between two answers prints
    whole."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    if tail is not None:
        body, offset = client.log_bytes(namespace, name, tail=tail)
    else:
        body, offset = client.log_bytes(namespace, name, offset=0)
    while True:
        text = decoder.decode(body)
        if text:
            typer.echo(text, nl=False)
        if not body:
            time.sleep(FOLLOW_POLL_S)
        try:
            body, offset = client.log_bytes(namespace, name, offset=offset)
        except NotFoundError:
            return

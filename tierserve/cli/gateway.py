"""``tierserve gateway``: the OpenAI-compatible gateway on its own, fed by a routes file or
URL, or by the pods of a Kubernetes cluster (``--discovery kubernetes``)."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import typer

from tierserve.cli.output import fail
from tierserve.errors import FieldError, TierserveError, ValidationError


def register(app: typer.Typer) -> None:
    """Add the ``gateway`` command to the ``tierserve`` app."""

    @app.command()
    def gateway(
        host: str = typer.Option("127.0.0.1", help="Address to listen on."),
        port: int = typer.Option(8000, help="Port to listen on (0: any free port)."),
        routes: Path | None = typer.Option(
            None,
            "--routes",
            help="Routes file (JSON/YAML, docs/gateway.md); re-read on change.",
        ),
        routes_url: str | None = typer.Option(
            None, "--routes-url", help="Control-plane URL serving the routes JSON."
        ),
        routes_token: str | None = typer.Option(
            None, "--routes-token", help="Bearer token for --routes-url."
        ),
        routes_interval_s: float = typer.Option(
            1.0, "--routes-interval-s", help="How often to re-check the routes file or URL."
        ),
        discovery: str | None = typer.Option(
            None,
            "--discovery",
            help="kubernetes: route to the pods of each service in the cluster of "
            "--kubeconfig (a watch; their tier from their node).",
        ),
        kubeconfig: str | None = typer.Option(
            None, "--kubeconfig", envvar="KUBECONFIG", help="kubeconfig for --discovery."
        ),
        context: str | None = typer.Option(None, "--context", help="kubeconfig context."),
        workers: int = typer.Option(
            1, help="Worker processes sharing the port (SO_REUSEPORT); each has its own routes."
        ),
        policy: str = typer.Option(
            "least_outstanding", help="Routing policy: least_outstanding or round_robin."
        ),
        slow_start_s: float = typer.Option(
            10.0,
            help="A newly Ready replica's share of new requests ramps up over this, in "
            "seconds (least_outstanding; 0: off).",
        ),
        hold_timeout_s: float = typer.Option(
            60.0, help="How long a request waits for a Ready replica before 503."
        ),
        max_body_bytes: int = typer.Option(16 * 1024 * 1024, help="Request body limit (413)."),
        request_timeout_s: float = typer.Option(600.0, help="Whole-request timeout (504)."),
        retries: int = typer.Option(1, help="Retries on another replica before the first byte."),
        client_header_timeout_s: float = typer.Option(
            10.0, help="A request's head must arrive within this, in seconds (else 408)."
        ),
        client_body_timeout_s: float = typer.Option(
            60.0, help="Longest wait for the next bytes of a body, in seconds (else 408)."
        ),
        client_keepalive_s: float = typer.Option(
            75.0, help="Idle client connections are closed after this, in seconds."
        ),
        upstream_keepalive_s: float = typer.Option(
            4.0, help="Idle connections to a replica are kept this long, in seconds (< 5)."
        ),
        upstream_max_idle: int = typer.Option(
            128, help="Idle connections kept per replica (0: none)."
        ),
        api_key: list[str] = typer.Option(
            [], "--api-key", help="Accepted client key (Authorization: Bearer); repeatable."
        ),
        loop: str = typer.Option(
            "auto", help="Event loop: auto (uvloop when installed), asyncio or uvloop."
        ),
        log_level: str = typer.Option("INFO", help="Python log level."),
    ) -> None:
        """Serve the OpenAI API in front of the replicas a routes file or URL lists, or of
        a Kubernetes cluster's pods (--discovery kubernetes)."""
        from tierserve.gateway.config import GatewayConfig
        from tierserve.gateway.run import RouteSourceSpec, run_gateway

        logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        try:
            config = GatewayConfig(
                policy=policy,
                slow_start_s=slow_start_s,
                hold_timeout_s=hold_timeout_s,
                retries=retries,
                request_timeout_s=request_timeout_s,
                max_body_bytes=max_body_bytes,
                api_keys=tuple(api_key),
                client_header_timeout_s=client_header_timeout_s,
                client_body_timeout_s=client_body_timeout_s,
                client_keepalive_s=client_keepalive_s,
                upstream_keepalive_s=upstream_keepalive_s,
                upstream_max_idle=upstream_max_idle,
            )
            factory = None
            if discovery is not None:
                if discovery != "kubernetes":
                    what = f"{discovery!r} is not one of kubernetes"
                    raise ValidationError("", [FieldError("discovery", what)])
                from tierserve.runtime.kube import discovery as kube_discovery
                from tierserve.runtime.kube.client import load_config

                factory = functools.partial(
                    kube_discovery.route_source, load_config(kubeconfig, context)
                )
            spec = RouteSourceSpec(
                routes_file=str(routes) if routes is not None else None,
                routes_url=routes_url,
                routes_token=routes_token,
                poll_interval_s=routes_interval_s,
                factory=factory,
            )
            run_gateway(config, spec, host, port, workers, loop)
        except ValidationError as exc:  # name the flags, as the user typed them
            flags = [FieldError(f"--{e.path.replace('_', '-')}", e.message) for e in exc.errors]
            fail(ValidationError("", flags), code=2)
        except TierserveError as exc:
            fail(exc, code=2)

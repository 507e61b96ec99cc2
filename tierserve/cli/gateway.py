"""``tierserve gateway``: the OpenAI-compatible gateway on its own, fed by a routes file or URL."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from tierserve.errors import TierserveError


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
        workers: int = typer.Option(
            1, help="Worker processes sharing the port (SO_REUSEPORT); each has its own routes."
        ),
        policy: str = typer.Option(
            "least_outstanding", help="Routing policy: least_outstanding or round_robin."
        ),
        hold_timeout_s: float = typer.Option(
            60.0, help="How long a request waits for a Ready replica before 503."
        ),
        max_body_bytes: int = typer.Option(16 * 1024 * 1024, help="Request body limit (413)."),
        request_timeout_s: float = typer.Option(600.0, help="Whole-request timeout (504)."),
        retries: int = typer.Option(1, help="Retries on another replica before the first byte."),
        api_key: list[str] = typer.Option(
            [], "--api-key", help="Accepted client key (Authorization: Bearer); repeatable."
        ),
        loop: str = typer.Option(
            "auto", help="Event loop: auto (uvloop when installed), asyncio or uvloop."
        ),
        log_level: str = typer.Option("INFO", help="Python log level."),
    ) -> None:
        """Serve the OpenAI API in front of the replicas a routes file or URL lists."""
        from tierserve.gateway.config import GatewayConfig
        from tierserve.gateway.run import RouteSourceSpec, run_gateway

        logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
        try:
            config = GatewayConfig(
                policy=policy,
                hold_timeout_s=hold_timeout_s,
                retries=retries,
                request_timeout_s=request_timeout_s,
                max_body_bytes=max_body_bytes,
                api_keys=tuple(api_key),
            )
            spec = RouteSourceSpec(
                routes_file=str(routes) if routes is not None else None,
                routes_url=routes_url,
                routes_token=routes_token,
                poll_interval_s=routes_interval_s,
            )
            run_gateway(config, spec, host, port, workers, loop)
        except TierserveError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from exc

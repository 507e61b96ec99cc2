"""``tierserve kube metrics``: serve ``custom.metrics.k8s.io/v1beta2`` for the stock HPA
(an aggregated API behind the APIService ``v1beta2.custom.metrics.k8s.io``)."""

from __future__ import annotations

import asyncio
import logging

import typer

from tierserve.cli.output import fail
from tierserve.errors import FieldError, TierserveError, ValidationError
from tierserve.policy.metricsapi import SERVED_METRICS, metric_names
from tierserve.runtime.kube.client import load_config
from tierserve.runtime.kube.custom_metrics import serve_metrics_api
from tierserve.runtime.kube.frontproxy import FrontProxyTLS


def _listen(value: str) -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValidationError("", [FieldError("--listen", f"{value!r}: expected HOST:PORT")])
    return host.strip("[]"), int(port)


def gateway_url(url: str) -> str:
    """A --gateway-url, checked (the custom metrics API and the autoscaler take it)."""
    if not url.startswith(("http://", "https://")):
        what = f"{url!r}: expected http(s)://HOST:PORT/metrics"
        raise ValidationError("", [FieldError("--gateway-url", what)])
    return url


def register(kube: typer.Typer) -> None:
    """Add ``metrics`` to the ``kube`` group."""

    @kube.command("metrics")
    def metrics(
        listen: str = typer.Option("0.0.0.0:6443", "--listen", help="HOST:PORT to serve on."),
        tls_cert: str = typer.Option(
            ..., "--tls-cert", help="Serving certificate (PEM), for <service>.<namespace>.svc."
        ),
        tls_key: str = typer.Option(..., "--tls-key", help="The certificate's key (PEM)."),
        requestheader_client_ca: str | None = typer.Option(
            None,
            "--requestheader-client-ca",
            help="The front proxy's CA (kube-apiserver --requestheader-client-ca-file; "
            "default: read from kube-system/extension-apiserver-authentication, as "
            "aggregated servers do). Only clients with a certificate it signed are served, "
            "and only then is X-Remote-User believed.",
        ),
        requestheader_allowed_names: list[str] | None = typer.Option(
            None,
            "--requestheader-allowed-names",
            help="Also require one of these client certificate common names (repeatable "
            "or comma-separated; kube-apiserver --requestheader-allowed-names).",
        ),
        metric: list[str] | None = typer.Option(
            None,
            "--metric",
            help="Serve this pod metric too (repeatable); always served: "
            + ", ".join(SERVED_METRICS)
            + ".",
        ),
        pod_port: int = typer.Option(
            8080,
            "--pod-port",
            min=1,
            max=65535,
            help="Scrape pods on this port when they declare no container port and no "
            "prometheus.io/port annotation.",
        ),
        scrape_timeout: float = typer.Option(
            2.0, "--scrape-timeout", min=0.1, help="Seconds to wait for a pod's /metrics."
        ),
        gateway_urls: list[str] | None = typer.Option(
            None,
            "--gateway-url",
            help="A gateway's /metrics URL (repeatable, e.g. each gateway pod's "
            "http://IP:8000/metrics): also serve tierserve:inflight_requests per pod, the "
            "requests the gateways have in flight to it, summed.",
        ),
        kubeconfig: str | None = typer.Option(
            None,
            "--kubeconfig",
            envvar="KUBECONFIG",
            help="Path to a kubeconfig (default ~/.kube/config, else in-cluster).",
        ),
        context: str | None = typer.Option(None, "--context", help="kubeconfig context."),
        verbose: bool = typer.Option(False, "--verbose/--quiet", help="Log every answer."),
    ) -> None:
        """Serve the custom metrics API (custom.metrics.k8s.io/v1beta2) from pods' own
        /metrics (DCGM-style and vLLM names), for the stock HPA."""
        logging.basicConfig(
            level=logging.INFO if verbose else logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )
        try:
            host, port = _listen(listen)
            names = tuple(
                n.strip() for item in requestheader_allowed_names or () for n in item.split(",")
            )
            tls = FrontProxyTLS(
                tls_cert, tls_key, requestheader_client_ca, tuple(n for n in names if n)
            )
            served = metric_names(metric or ())
            config = load_config(kubeconfig, context)
            asyncio.run(
                serve_metrics_api(
                    config,
                    host,
                    port,
                    tls,
                    served,
                    pod_port,
                    scrape_timeout,
                    tuple(gateway_url(u) for u in gateway_urls or ()),
                )
            )
        except TierserveError as exc:
            fail(exc)
        except KeyboardInterrupt:
            pass

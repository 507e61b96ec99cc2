"""``tierserve kube ...``: run tierserve's policy on a Kubernetes cluster.

``install`` applies the ResourcePolicy CRD; ``extender`` serves kube-scheduler's
extender protocol; ``controller`` keeps pod deletion costs (cloud-first scale-in);
``manifests`` prints everything to deploy them in a cluster.
"""

from __future__ import annotations

import asyncio
import logging

import typer

from tierserve.cli import kube_metrics
from tierserve.cli.output import fail
from tierserve.errors import FieldError, TierserveError, ValidationError
from tierserve.policy.autoscaling import AutoscalerConfig
from tierserve.runtime.kube import manifests as kube_manifests
from tierserve.runtime.kube.apply import describe, install_crd
from tierserve.runtime.kube.autoscaler import run_autoscaler
from tierserve.runtime.kube.client import KubeClient, load_config
from tierserve.runtime.kube.crd import ACK_GROUP, TIERSERVE_GROUP
from tierserve.runtime.kube.lease import LeaderElector
from tierserve.runtime.kube.run import (
    ExtenderTLS,
    LeaderElection,
    default_identity,
    run_controller,
    serve_extender,
)

KubeconfigOption = typer.Option(
    None, "--kubeconfig", envvar="KUBECONFIG", help="Path to a kubeconfig (default ~/.kube/config)."
)
ContextOption = typer.Option(None, "--context", help="kubeconfig context (default: current).")
GroupOption = typer.Option(
    None,
    "--group",
    help=f"ResourcePolicy API group(s) to watch ({TIERSERVE_GROUP}, {ACK_GROUP}); "
    "default: every one whose CRD is installed.",
)


def _listen(value: str, flag: str = "--listen") -> tuple[str, int]:
    host, _, port = value.rpartition(":")
    if not host or not port.isdigit():
        raise ValidationError("", [FieldError(flag, f"{value!r}: expected HOST:PORT")])
    return host, int(port)


def _tls(
    cert: str | None, key: str | None, client_ca: str | None, names: tuple[str, ...]
) -> ExtenderTLS | None:
    if cert is None and key is None:
        if client_ca is not None or names:
            flag = "--client-ca" if client_ca is not None else "--client-name"
            what = "needs --tls-cert and --tls-key (client certificates need HTTPS)"
            raise ValidationError("", [FieldError(flag, what)])
        return None
    if cert is None or key is None:
        flag, other = ("--tls-key", "--tls-cert") if cert is None else ("--tls-cert", "--tls-key")
        raise ValidationError("", [FieldError(flag, f"is required with {other}")])
    if names and client_ca is None:
        raise ValidationError("", [FieldError("--client-name", "needs --client-ca")])
    return ExtenderTLS(cert, key, client_ca, names)


def _logging(verbose: bool) -> None:
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


def register(app: typer.Typer) -> None:
    """Add the ``kube`` group to ``app``."""
    kube = typer.Typer(
        name="kube",
        no_args_is_help=True,
        help="Kubernetes runtime: CRD install, scheduler extender, deletion-cost controller, "
        "manifests.",
    )
    app.add_typer(kube, name="kube")
    kube_metrics.register(kube)

    @kube.command("install")
    def install(
        ack_compatible: bool = typer.Option(
            False,
            "--ack-compatible",
            help=f"Register {ACK_GROUP} instead of {TIERSERVE_GROUP} (ACK's YAML applies as is).",
        ),
        dry_run: bool = typer.Option(False, "--dry-run", help="Server-side dry run only."),
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
    ) -> None:
        """Apply the ResourcePolicy CRD and wait until the API server serves it."""
        group = ACK_GROUP if ack_compatible else TIERSERVE_GROUP

        async def main() -> str:
            async with KubeClient(load_config(kubeconfig, context)) as client:
                crd = await install_crd(client, group, dry_run)
                return describe(crd)

        try:
            what = asyncio.run(main())
        except TierserveError as exc:
            fail(exc)
        typer.echo(f"{what} {'configured (dry run)' if dry_run else 'configured'}")

    @kube.command("extender")
    def extender(
        listen: str = typer.Option("127.0.0.1:8890", "--listen", help="HOST:PORT to serve on."),
        with_controller: bool = typer.Option(
            False,
            "--with-controller",
            help="Also run the pod controllers (deletion cost, requeue).",
        ),
        tls_cert: str | None = typer.Option(
            None, "--tls-cert", help="Serve HTTPS with this certificate (PEM; with --tls-key)."
        ),
        tls_key: str | None = typer.Option(None, "--tls-key", help="The certificate's key (PEM)."),
        client_ca: str | None = typer.Option(
            None,
            "--client-ca",
            help="Accept filter/prioritize/bind only from clients with a certificate signed "
            "by this CA (kube-scheduler's tlsConfig certFile/keyFile).",
        ),
        client_name: list[str] | None = typer.Option(
            None,
            "--client-name",
            help="Also require this client certificate common name (repeatable).",
        ),
        webhook_listen: str | None = typer.Option(
            None,
            "--webhook-listen",
            help="Also serve the pod-defaults admission webhook (POST /mutate-pods) on "
            "HOST:PORT (HTTPS: needs --tls-cert).",
        ),
        all_feasible: bool = typer.Option(
            False,
            "--all-feasible",
            help="Filter allows every fitting node of the unit (kube-scheduler's own scoring "
            "then weighs in, one more call per pod) instead of the best-packed node only.",
        ),
        leader_elect: bool = typer.Option(
            False,
            "--leader-elect",
            help="Run as one of several replicas: only the holder of a Lease answers "
            "(and runs the controllers); the others stand by, not ready.",
        ),
        lease_namespace: str = typer.Option(
            kube_manifests.ManifestOptions.namespace,
            "--lease-namespace",
            envvar="POD_NAMESPACE",
            help="Namespace of the Lease.",
        ),
        lease_name: str = typer.Option("tierserve-extender", "--lease-name"),
        lease_duration: float = typer.Option(
            15.0,
            "--lease-duration",
            min=1.0,
            help="Seconds without renewal after which a standby takes over.",
        ),
        scheduler_name: str = typer.Option(
            kube_manifests.SCHEDULER_NAME,
            "--scheduler-name",
            help="The kube-scheduler profile served: bind refuses pods of other schedulers.",
        ),
        group: list[str] | None = GroupOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
        verbose: bool = typer.Option(True, "--verbose/--quiet", help="Log every decision."),
    ) -> None:
        """Serve kube-scheduler's extender protocol (filter, prioritize, bind)."""
        _logging(verbose)
        try:
            host, port = _listen(listen)
            tls = _tls(tls_cert, tls_key, client_ca, tuple(client_name or ()))
            webhook = None
            if webhook_listen is not None:
                if tls is None:
                    what = (
                        "needs --tls-cert and --tls-key (kube-apiserver calls webhooks over HTTPS)"
                    )
                    raise ValidationError("", [FieldError("--webhook-listen", what)])
                webhook = _listen(webhook_listen, "--webhook-listen")
            config = load_config(kubeconfig, context)
            leader = (
                LeaderElection(lease_namespace, lease_name, lease_duration)
                if leader_elect
                else None
            )
            asyncio.run(
                serve_extender(
                    config,
                    host,
                    port,
                    group or None,
                    with_controller,
                    tls,
                    scheduler_name,
                    webhook,
                    leader,
                    all_feasible,
                )
            )
        except TierserveError as exc:
            fail(exc)
        except KeyboardInterrupt:
            pass

    @kube.command("autoscaler")
    def autoscaler(
        period: float = typer.Option(
            15.0, "--period", min=0.1, help="Seconds between evaluations (the HPA's sync period)."
        ),
        downscale_stabilization: float = typer.Option(
            300.0,
            "--downscale-stabilization",
            min=0.0,
            help="Seconds of recommendations a scale-in takes the highest of (the HPA's window).",
        ),
        leader_elect: bool = typer.Option(
            False, "--leader-elect", help="Act only while holding the Lease (several replicas)."
        ),
        lease_namespace: str = typer.Option(
            kube_manifests.ManifestOptions.namespace, "--lease-namespace", envvar="POD_NAMESPACE"
        ),
        lease_name: str = typer.Option("tierserve-autoscaler", "--lease-name"),
        lease_duration: float = typer.Option(15.0, "--lease-duration", min=1.0),
        gateway_urls: list[str] | None = typer.Option(
            None,
            "--gateway-url",
            help="A gateway's /metrics URL (repeatable: each gateway pod's "
            "http://IP:8000/metrics): the tier planner's load (arrivals, streamed TTFT), "
            "summed over the gateways. Without one, services of --autoscaler slo keep their "
            "size.",
        ),
        emulator_time_scale: float = typer.Option(
            1.0,
            "--emulator-time-scale",
            min=1e-6,
            help="The engines are emulated at this --time-scale: the tier planner converts "
            "rates and latencies to emulated seconds, so the same SLO holds at any scale.",
        ),
        scrape_timeout: float = typer.Option(
            2.0, "--scrape-timeout", min=0.1, help="Seconds to wait for a /metrics."
        ),
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
        verbose: bool = typer.Option(True, "--verbose/--quiet", help="Log every rescale."),
    ) -> None:
        """Size the services rendered with --autoscaler tierserve or slo: the local
        runtime's autoscalers (the HPA's arithmetic, the tier planner) on metrics scraped
        from the pods and the gateways, writing the Deployment's scale."""
        _logging(verbose)
        config = AutoscalerConfig(
            period_s=period, downscale_stabilization_s=downscale_stabilization
        )
        try:
            gateways = tuple(kube_metrics.gateway_url(u) for u in gateway_urls or ())
        except TierserveError as exc:
            fail(exc)

        async def main() -> None:
            async with KubeClient(load_config(kubeconfig, context)) as kube:
                elector = None
                if leader_elect:
                    identity = default_identity()
                    elector = LeaderElector(
                        kube, lease_namespace, lease_name, identity, lease_duration
                    )
                print("tierserve autoscaler running", flush=True)
                await run_autoscaler(
                    kube, config, elector, gateways, scrape_timeout, emulator_time_scale
                )

        try:
            asyncio.run(main())
        except TierserveError as exc:
            fail(exc)
        except KeyboardInterrupt:
            pass

    @kube.command("controller")
    def controller(
        group: list[str] | None = GroupOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
        verbose: bool = typer.Option(True, "--verbose/--quiet", help="Log every patch."),
    ) -> None:
        """Keep controller.kubernetes.io/pod-deletion-cost on pods a ResourcePolicy selects,
        and requeue waiting pods when their unit timeout ends or their policy changes."""
        _logging(verbose)
        try:
            asyncio.run(run_controller(load_config(kubeconfig, context), group or None))
        except TierserveError as exc:
            fail(exc)
        except KeyboardInterrupt:
            pass

    @kube.command("manifests")
    def manifests(
        namespace: str = typer.Option(
            kube_manifests.ManifestOptions.namespace, "--namespace", "-n"
        ),
        image: str = typer.Option(
            kube_manifests.ManifestOptions.image, "--image", help="tierserve image."
        ),
        scheduler_image: str = typer.Option(
            kube_manifests.ManifestOptions.scheduler_image,
            "--scheduler-image",
            help="Upstream kube-scheduler image for the second scheduler.",
        ),
        ack_compatible: bool = typer.Option(
            False, "--ack-compatible", help=f"CRD under {ACK_GROUP}."
        ),
    ) -> None:
        """Print the YAML to deploy tierserve in a cluster (kubectl apply -f -)."""
        opts = kube_manifests.ManifestOptions(
            namespace=namespace,
            image=image,
            scheduler_image=scheduler_image,
            ack_compatible=ack_compatible,
        )
        typer.echo(kube_manifests.dump(kube_manifests.manifests(opts)), nl=False)


def main() -> None:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    register(app)
    app()


if __name__ == "__main__":
    main()

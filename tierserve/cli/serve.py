"""``tierserve serve ...``: arena's ``serve`` commands against the local control plane.

``serve kserve`` takes ``arena serve kserve``'s flags and prints its submit lines;
``serve get|list|delete|update kserve|logs`` print arena's layouts. The translation of
flags to objects and the layouts are pure (``tierserve.cli.arena``); this module reads
the clock, talks to the control plane and prints.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import typer
import yaml

from tierserve.cli import arena, arena_layout
from tierserve.cli.common import NamespaceOption, StateDirOption, client_for
from tierserve.cli.output import fail
from tierserve.errors import (
    ConflictError,
    FieldError,
    NotFoundError,
    TierserveError,
    ValidationError,
)
from tierserve.model.loader import dump_documents
from tierserve.runtime.kube import serving as kube_serving
from tierserve.runtime.local.client import Client

SERVICES = "inferenceservices"

BackendOption = typer.Option(
    "local",
    "--backend",
    envvar="TIERSERVE_BACKEND",
    help="local (the embedded control plane) or kubernetes (the cluster of --kubeconfig).",
)
KubeconfigOption = typer.Option(
    None, "--kubeconfig", envvar="KUBECONFIG", help="kubeconfig for --backend kubernetes."
)
ContextOption = typer.Option(None, "--context", help="kubeconfig context.")


def _kube(backend: str) -> bool:
    if backend not in ("local", "kubernetes"):
        fail(
            ValidationError(
                "", [FieldError("--backend", f"{backend!r} is not one of local, kubernetes")]
            )
        )
    return backend == "kubernetes"


TypeOption = typer.Option(
    None, "--type", "-T", help="Serving type; only kserve is served.", show_default=False
)
VersionOption = typer.Option(
    None, "--version", help="Serving version (always 1 here).", show_default=False
)


def _not_found(name: str) -> NotFoundError:
    return NotFoundError(
        f"Not found serving job {name}, please check it with `tierserve serve list | grep {name}`"
    )


def _service(client: Client, name: str, namespace: str) -> dict[str, Any]:
    try:
        return client.get(SERVICES, name, namespace)
    except NotFoundError:
        raise _not_found(name) from None


def _prices(client: Client) -> dict[str, float]:
    """Node name -> price per GPU-hour, for virtual (cloud) nodes."""
    return {
        n["metadata"]["name"]: float(n["spec"]["virtual"].get("pricePerGpuHour", 0.0))
        for n in client.list_objects("nodes", None)
        if n.get("spec", {}).get("virtual") is not None
    }


def _check_output(output: str | None) -> None:
    if output not in (None, "wide", "json", "yaml"):
        fail(ValidationError("", [FieldError("-o", f"{output!r} is not one of wide, json, yaml")]))


def _dump(data: Any, output: str) -> None:
    if output == "json":
        typer.echo(json.dumps(data, indent=4))
    else:
        typer.echo(yaml.safe_dump(data, sort_keys=False).rstrip())


def _skipped(name: str, elapsed_s: float) -> str:
    """What arena prints for a serving job ``serve delete`` does not find."""
    return arena_layout.info_line(
        elapsed_s, f"The serving job '{name}' does not exist, skip deleting it."
    )


NOTHING_TO_UPDATE = (
    "nothing to update: give at least one of --replicas, --min-replicas, --max-replicas, "
    "--scale-metric, --scale-target, --image, --gpus, --cpu, --memory, --env, --annotation, "
    "--label, --selector, --toleration, --command"
)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` group to ``app``."""
    serve = typer.Typer(
        name="serve",
        no_args_is_help=True,
        help="arena-compatible serving: kserve, get, list, update, delete, logs.",
    )
    update = typer.Typer(
        name="update", no_args_is_help=True, help="Change a serving job (arena serve update)."
    )
    serve.add_typer(update, name="update")
    app.add_typer(serve, name="serve")

    @serve.command("kserve")
    def kserve(
        command: list[str] | None = typer.Argument(
            None,
            help='The command line the replica runs, e.g. "vllm serve /model/...".',
            show_default=False,
        ),
        name: str | None = typer.Option(
            None, "--name", help="Serving job name (required).", show_default=False
        ),
        namespace: str = NamespaceOption,
        image: str | None = typer.Option(None, "--image", help="Container image."),
        image_pull_policy: str | None = typer.Option(
            None, "--image-pull-policy", help="Always, IfNotPresent or Never."
        ),
        gpus: int | None = typer.Option(None, "--gpus", help="GPUs per replica."),
        cpu: str | None = typer.Option(None, "--cpu", help="CPU per replica, e.g. 4 or 500m."),
        memory: str | None = typer.Option(None, "--memory", help="Memory per replica, e.g. 12Gi."),
        replicas: int | None = typer.Option(
            None, "--replicas", help="Replicas at start (default: --min-replicas, else 1)."
        ),
        min_replicas: int | None = typer.Option(
            None, "--min-replicas", help="Fewest replicas the autoscaler keeps."
        ),
        max_replicas: int | None = typer.Option(
            None, "--max-replicas", help="Most replicas the autoscaler makes."
        ),
        scale_metric: str | None = typer.Option(
            None, "--scale-metric", help="Per-replica metric, e.g. DCGM_CUSTOM_PROCESS_SM_UTIL."
        ),
        scale_target: float | None = typer.Option(
            None, "--scale-target", help="Target average of --scale-metric, e.g. 50."
        ),
        data: list[str] | None = typer.Option(None, "--data", help="PVC:/mount/path (repeatable)."),
        data_dir: list[str] | None = typer.Option(
            None, "--data-dir", help="/host/path:/mount/path (repeatable)."
        ),
        env: list[str] | None = typer.Option(None, "--env", "-e", help="KEY=VALUE (repeatable)."),
        annotation: list[str] | None = typer.Option(
            None, "--annotation", "-a", help="Replica annotation KEY=VALUE (repeatable)."
        ),
        label: list[str] | None = typer.Option(
            None, "--label", "-l", help="Replica label KEY=VALUE (repeatable)."
        ),
        toleration: list[str] | None = typer.Option(
            None, "--toleration", help="all, KEY, or KEY=VALUE:EFFECT[,OPERATOR] (repeatable)."
        ),
        selector: list[str] | None = typer.Option(
            None, "--selector", help="Node selector KEY=VALUE (repeatable)."
        ),
        port: int | None = typer.Option(None, "--port", help="The engine's port (default: 8080)."),
        model_name: str | None = typer.Option(None, "--model-name", help="Served model name."),
        shell: str | None = typer.Option(
            None, "--shell", help="Shell running COMMAND (default: sh)."
        ),
        readiness_probe_path: str | None = typer.Option(
            None,
            "--readiness-probe-path",
            help="HTTP path that answers 200 once the engine is ready "
            "(default: /health, else /v1/models).",
        ),
        dry_run: bool = typer.Option(
            False, "--dry-run", help="Print the InferenceService; create nothing."
        ),
        backend: str = BackendOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
        raw: bool = typer.Option(
            False, "--raw", help="kubernetes: a Deployment + Service + HPA instead of KServe."
        ),
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Submit a KServe-style inference service (arena serve kserve)."""
        started = time.monotonic()
        flags = arena.KServeFlags(
            name=name,
            namespace=namespace,
            image=image,
            image_pull_policy=image_pull_policy,
            gpus=gpus,
            cpu=cpu,
            memory=memory,
            replicas=replicas,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            scale_metric=scale_metric,
            scale_target=scale_target,
            data=data or [],
            data_dir=data_dir or [],
            env=env or [],
            annotation=annotation or [],
            label=label or [],
            toleration=toleration or [],
            selector=selector or [],
            port=port,
            model_name=model_name,
            shell=shell,
            readiness_probe_path=readiness_probe_path,
            command=command or [],
        )
        kube = _kube(backend)
        try:
            service = arena.service_from_flags(flags)
            if kube:
                for line in kube_serving.submit(service, kubeconfig, context, dry_run, raw):
                    typer.echo(line)
                return
        except TierserveError as exc:
            fail(exc)
        if dry_run:
            text = yaml.safe_dump(arena.manifest(service), sort_keys=False, width=1000)
            typer.echo(text.rstrip())
            return
        try:
            client = client_for(state_dir)
            try:
                client.get(SERVICES, service.name, service.namespace)
            except NotFoundError:
                pass
            else:
                raise ConflictError(
                    f"the serving job {service.name} already exists in namespace "
                    f"{service.namespace}; delete it first with `tierserve serve delete "
                    f"{service.name}`, or change it with `tierserve serve update kserve "
                    f"--name {service.name} ...`"
                )
            client.apply(dump_documents([service], redact=False), source="serve kserve")
        except TierserveError as exc:
            fail(exc)
        for line in arena_layout.submit_lines(service, time.monotonic() - started):
            typer.echo(line)

    @serve.command("get")
    def get(
        name: str = typer.Argument(..., help="Serving job name."),
        namespace: str = NamespaceOption,
        serving_type: str | None = TypeOption,
        version: str | None = VersionOption,
        output: str | None = typer.Option(None, "-o", "--output", help="wide|json|yaml"),
        backend: str = BackendOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Show a serving job and its instances (arena serve get)."""
        _check_output(output)
        try:
            arena.check_type(serving_type)
            arena.check_version(version)
            prices: dict[str, float] = {}
            if _kube(backend):
                services, pods = kube_serving.services_and_pods(namespace, kubeconfig, context)
                found = [s for s in services if s["metadata"]["name"] == name]
                if not found:
                    raise NotFoundError(
                        f"the serving job {name} was not found in namespace {namespace}"
                    )
                service = found[0]
            else:
                client = client_for(state_dir)
                service = _service(client, name, namespace)
                pods = client.list_objects("pods", namespace)
                prices = _prices(client) if output is not None else {}
        except TierserveError as exc:
            fail(exc)
        now = time.time()
        if output in ("json", "yaml"):
            _dump(arena_layout.job_info(service, pods, now, prices), output)
            return
        typer.echo(arena_layout.format_get(service, pods, now, output == "wide", prices), nl=False)

    @serve.command("list")
    def list_(
        namespace: str = NamespaceOption,
        all_namespaces: bool = typer.Option(False, "-A", "--all-namespaces"),
        serving_type: str | None = TypeOption,
        output: str | None = typer.Option(None, "-o", "--output", help="wide|json|yaml"),
        backend: str = BackendOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """List serving jobs (arena serve list)."""
        _check_output(output)
        ns = None if all_namespaces else namespace
        try:
            arena.check_type(serving_type)
            costs: dict[str, float] = {}
            if _kube(backend):
                services, pods = kube_serving.services_and_pods(ns, kubeconfig, context)
            else:
                client = client_for(state_dir)
                services = client.list_objects(SERVICES, ns)
                pods = client.list_objects("pods", ns)
                if output == "wide":
                    costs = {
                        k: float(v.get("cloudCost", 0.0))
                        for k, v in client.cost().get("services", {}).items()
                    }
        except TierserveError as exc:
            fail(exc)
        now = time.time()
        if output in ("json", "yaml"):
            _dump([arena_layout.job_info(s, pods, now) for s in services], output)
            return
        typer.echo(
            arena_layout.format_list(services, pods, now, output == "wide", costs, all_namespaces),
            nl=False,
        )

    @serve.command("delete")
    def delete(
        names: list[str] = typer.Argument(..., help="Serving job names."),
        namespace: str = NamespaceOption,
        serving_type: str | None = TypeOption,
        version: str | None = VersionOption,
        backend: str = BackendOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Delete serving jobs and their replicas (arena serve delete)."""
        started = time.monotonic()
        try:
            arena.check_type(serving_type)
            arena.check_version(version)
            if _kube(backend):
                for job, deleted in kube_serving.delete(
                    names, namespace, kubeconfig, context
                ).items():
                    if deleted is None:
                        typer.echo(_skipped(job, time.monotonic() - started))
                        continue
                    for what in deleted:
                        typer.echo(f"{what} deleted")
                return
            client = client_for(state_dir)
            for name in names:
                try:
                    client.delete(SERVICES, name, namespace)
                except NotFoundError:
                    typer.echo(_skipped(name, time.monotonic() - started))
                    continue
                typer.echo(f'inferenceservice.serving.kserve.io "{name}" deleted')
                typer.echo(
                    arena_layout.info_line(
                        time.monotonic() - started,
                        f"The serving job {name} with version {arena.VERSION} has been deleted "
                        "successfully",
                    )
                )
        except TierserveError as exc:
            fail(exc)

    @update.command("kserve")
    def update_kserve(
        name: str | None = typer.Option(
            None, "--name", help="Serving job name (required).", show_default=False
        ),
        namespace: str = NamespaceOption,
        version: str | None = VersionOption,
        image: str | None = typer.Option(None, "--image"),
        gpus: int | None = typer.Option(None, "--gpus"),
        cpu: str | None = typer.Option(None, "--cpu"),
        memory: str | None = typer.Option(None, "--memory"),
        replicas: int | None = typer.Option(None, "--replicas"),
        min_replicas: int | None = typer.Option(None, "--min-replicas"),
        max_replicas: int | None = typer.Option(None, "--max-replicas"),
        scale_metric: str | None = typer.Option(None, "--scale-metric"),
        scale_target: float | None = typer.Option(None, "--scale-target"),
        env: list[str] | None = typer.Option(None, "--env", "-e", help="KEY=VALUE (merged)."),
        annotation: list[str] | None = typer.Option(None, "--annotation", "-a"),
        label: list[str] | None = typer.Option(None, "--label", "-l"),
        toleration: list[str] | None = typer.Option(None, "--toleration"),
        selector: list[str] | None = typer.Option(None, "--selector"),
        command: str | None = typer.Option(None, "--command", help="New command line."),
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Change replicas, bounds, scaling, image or resources (arena serve update kserve)."""
        started = time.monotonic()
        flags = arena.UpdateFlags(
            name=name,
            namespace=namespace,
            image=image,
            gpus=gpus,
            cpu=cpu,
            memory=memory,
            replicas=replicas,
            min_replicas=min_replicas,
            max_replicas=max_replicas,
            scale_metric=scale_metric,
            scale_target=scale_target,
            env=env or [],
            annotation=annotation or [],
            label=label or [],
            toleration=toleration or [],
            selector=selector or [],
            command=command,
        )
        if not name:
            fail(ValidationError("", [FieldError("--name", "is required; e.g. --name=deepseek")]))
        if flags.changes_nothing():
            fail(ValidationError("", [FieldError("", NOTHING_TO_UPDATE)]))
        try:
            arena.check_version(version)
            client = client_for(state_dir)
            changed = arena.apply_update(_service(client, name, namespace), flags)
            results = client.apply(
                dump_documents([changed], redact=False), source="serve update kserve"
            )
        except TierserveError as exc:
            fail(exc)
        done = (
            "is unchanged"
            if results and results[0].get("action") == "unchanged"
            else ("has been updated successfully")
        )
        typer.echo(
            arena_layout.info_line(
                time.monotonic() - started,
                f"The serving job {name} with version {arena.VERSION} {done}",
            )
        )

    @serve.command("logs")
    def logs(
        name: str = typer.Argument(..., help="Serving job name."),
        instance: str | None = typer.Option(
            None,
            "--instance",
            "-i",
            help="Instance (replica) name (default: the first Ready one, or the only one).",
            show_default=False,
        ),
        tail: int | None = typer.Option(None, "--tail", "-t", min=0, help="Last N lines."),
        namespace: str = NamespaceOption,
        serving_type: str | None = TypeOption,
        version: str | None = VersionOption,
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Print one instance's log (arena serve logs)."""
        try:
            arena.check_type(serving_type)
            arena.check_version(version)
            client = client_for(state_dir)
            service = _service(client, name, namespace)
            pods = client.list_objects("pods", namespace)
            chosen = arena_layout.pick_instance(service, pods, instance)
            text = client.logs(namespace, chosen, tail)
        except TierserveError as exc:
            fail(exc)
        typer.echo(text, nl=False)


__all__ = ["register"]

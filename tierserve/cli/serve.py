"""``tierserve serve ...``: arena's ``serve`` commands against the local control plane.

``serve kserve`` takes ``arena serve kserve``'s flags and prints its submit lines;
``serve get|list|delete|update kserve|logs`` print arena's layouts. The translation of
flags to objects and the layouts are pure (``tierserve.cli.arena``); this module reads
the clock, talks to the control plane and prints.

The tier planner's flags (``--autoscaler slo --slo ttft=2s,tpot=100ms
--cloud-budget-per-hour 12 --headroom 0.1 --rebalance``) are tierserve's own; they build
``spec.autoscaling`` (:mod:`tierserve.model.autoscaling`) with the pure functions below
(:func:`parse_slo`, :func:`autoscaling_for_submit`, :func:`autoscaling_for_update`).
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import re
import sys
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pydantic
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
from tierserve.model import InferenceService
from tierserve.model.autoscaling import HPA, SLO, Autoscaling
from tierserve.model.display import shown
from tierserve.model.loader import dump_documents, field_errors
from tierserve.runtime.kube import podlogs as kube_podlogs
from tierserve.runtime.kube import serving as kube_serving
from tierserve.runtime.kube import update as kube_update
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
AutoscalerOption = typer.Option(
    None,
    "--autoscaler",
    help="hpa (default: --scale-metric/--scale-target) or slo (the tier planner sizes "
    "replicas and tiers on --slo); with --backend kubernetes also tierserve (the HPA's "
    "arithmetic run by `tierserve kube autoscaler`, on the metrics it scrapes itself).",
    show_default=False,
)
SloOption = typer.Option(
    None,
    "--slo",
    help="--autoscaler slo: the objective, ttft=DURATION[,tpot=DURATION][,attainment=SHARE], "
    "e.g. ttft=2s,tpot=100ms,attainment=95%.",
    show_default=False,
)
CloudBudgetOption = typer.Option(
    None,
    "--cloud-budget-per-hour",
    help="--autoscaler slo: the most the cloud replicas may cost per hour (node price units).",
    show_default=False,
)
HeadroomOption = typer.Option(
    None,
    "--headroom",
    help="--autoscaler slo: plan for (1 + HEADROOM) times the forecast load (default 0).",
    show_default=False,
)
RebalanceOption = typer.Option(
    None,
    "--rebalance/--no-rebalance",
    help="--autoscaler slo: move replicas back from the cloud when the IDC frees up (default: on).",
    show_default=False,
)


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
    "--scale-metric, --scale-target, --autoscaler, --slo, --cloud-budget-per-hour, "
    "--headroom, --rebalance/--no-rebalance, --image, --gpus, --cpu, --memory, --env, "
    "--annotation, --label, --selector, --toleration, --command"
)


# -- the tier planner's flags -> spec.autoscaling (pure) ------------------------------------

Obj = dict[str, Any]

AUTOSCALERS = (HPA, SLO)
SLO_EXAMPLE = "ttft=2s,tpot=100ms"
SLO_SYNTAX = f"ttft=DURATION[,tpot=DURATION][,attainment=SHARE], e.g. {SLO_EXAMPLE}"
_SLO_KEYS = {"ttft": "ttftSeconds", "tpot": "tpotSeconds", "attainment": "attainment"}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s)")
_SHARE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(%?)")
_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))
# Autoscaling's fields (as pydantic names them) -> the flag that sets them.
_PLANNER_FLAGS = {"budget": "--cloud-budget-per-hour", "headroom": "--headroom", "slo": "--slo"}


@dataclass(frozen=True)
class AutoscalerFlags:
    """The tier planner's flags as given; None: not given."""

    autoscaler: str | None = None
    slo: str | None = None
    cloud_budget_per_hour: float | None = None
    headroom: float | None = None
    rebalance: bool | None = None

    def planner_settings(self) -> list[tuple[str, str]]:
        """(flag as written, value as shown) of each tier planner setting given."""
        given = [
            ("--slo", None if self.slo is None else shown(self.slo)),
            ("--cloud-budget-per-hour", _number(self.cloud_budget_per_hour)),
            ("--headroom", _number(self.headroom)),
        ]
        out = [(flag, value) for flag, value in given if value is not None]
        if self.rebalance is not None:
            out.append(("--rebalance" if self.rebalance else "--no-rebalance", ""))
        return out

    def given(self) -> bool:
        return self.autoscaler is not None or bool(self.planner_settings())


def _number(value: float | None) -> str | None:
    if value is None:
        return None
    return str(int(value)) if float(value).is_integer() else str(value)


def _duration_s(text: str) -> Decimal | None:
    """``2s``, ``1500ms``, ``0.1s`` in seconds; None: not a duration."""
    found = _DURATION.fullmatch(text.strip())
    if found is None:
        return None
    number, unit = Decimal(found[1]), found[2]
    return number / 1000 if unit == "ms" else number


def _share(text: str) -> Decimal | None:
    """``95%`` or ``0.95`` as a fraction; None: not a number."""
    found = _SHARE.fullmatch(text.strip())
    if found is None:
        return None
    number = Decimal(found[1])
    return number / 100 if found[2] else number


def parse_slo(value: str) -> tuple[Obj, list[FieldError]]:
    """``--slo ttft=2s,tpot=100ms[,attainment=95%]`` as ``spec.autoscaling.slo`` (camelCase
    keys, seconds), and what is wrong with it, each error naming its item. ``tpot`` may be
    left out (the objective is then TTFT only); ``attainment`` defaults to the model's 95 %."""
    slo: Obj = {}
    errors: list[FieldError] = []
    keys: set[str] = set()

    def bad(item: str, why: str) -> None:
        errors.append(FieldError("--slo", f"{shown(item)} {why}"))

    for item in (i.strip() for i in value.split(",")):
        if not item:
            continue  # a trailing comma
        key, sep, text = (part.strip() for part in item.partition("="))
        key = key.lower()
        if not sep or not key:
            bad(item, f"is not KEY=VALUE; expected {SLO_SYNTAX}")
            continue
        if key not in _SLO_KEYS:
            close = difflib.get_close_matches(key, list(_SLO_KEYS), n=1)
            hint = f"did you mean {close[0]!r}?" if close else "expected ttft, tpot or attainment"
            bad(item, f"has an unknown key {key!r}; {hint}")
            continue
        if key in keys:
            bad(item, f"gives {key} a second time; expected each of ttft, tpot, attainment once")
            continue
        keys.add(key)
        if key == "attainment":
            share = _share(text)
            if share is None:
                bad(item, "is not a share; expected a percentage or a fraction, e.g. 95% or 0.95")
            elif not 0 < share <= 1:
                bad(item, "is outside (0, 1]; expected a share such as 95% or 0.95")
            else:
                slo["attainment"] = float(share)
            continue
        seconds = _duration_s(text)
        if seconds is None:
            bad(item, "is not a duration; expected a number and its unit, e.g. 2s, 1500ms or 0.1s")
        else:
            slo[_SLO_KEYS[key]] = float(seconds)
    if "ttft" not in keys and not errors:
        errors.append(
            FieldError(
                "--slo",
                f"{shown(value)} has no ttft; expected {SLO_SYNTAX} (ttft: the time to first "
                "token, tpot: the time per output token)",
            )
        )
    return slo, errors


def _item(slo: Obj, value: str, key: str) -> str:
    """The ``--slo`` item that set ``key`` (``ttftSeconds``): how the user wrote it."""
    short = next(k for k, v in _SLO_KEYS.items() if v == key)
    for item in value.split(","):
        if item.partition("=")[0].strip().lower() == short:
            return item.strip()
    return f"{short}={slo.get(key)}"


def _validated_autoscaling(
    doc: Obj, slo_value: str | None
) -> tuple[Autoscaling | None, list[FieldError]]:
    """``doc`` as ``Autoscaling``, or its errors named by the flags that set them (an
    ``--slo`` error by its item, as written: ``'ttft=5000s' is out of range``)."""
    try:
        return Autoscaling.model_validate(doc), []
    except pydantic.ValidationError as exc:
        errors: list[FieldError] = []
        raws = exc.errors(include_url=False)
        for raw, error in zip(raws, field_errors(exc, Autoscaling), strict=True):
            loc = [str(part) for part in raw["loc"]]
            flag = _PLANNER_FLAGS.get(loc[0], "") if loc else ""
            ctx = raw.get("ctx") or {}
            bound = next(((b, words) for b, words in _BOUNDS if b in ctx), None)
            if not flag or bound is None:
                errors.append(FieldError(flag or error.path, error.message))
                continue
            limit = _number(float(ctx[bound[0]]))
            if flag == "--slo" and len(loc) == 2 and slo_value is not None:
                what = "a share" if loc[1] == "attainment" else "a duration"
                unit = "" if loc[1] == "attainment" else "s"
                item = shown(_item(doc.get("slo", {}), slo_value, loc[1]))
                expected = f"{what} {bound[1]} {limit}{unit}"
            else:
                item, expected = str(_number(raw.get("input"))), f"a value {bound[1]} {limit}"
            errors.append(FieldError(flag, f"{item} is out of range; expected {expected}"))
        return None, errors


def _planner_doc(flags: AutoscalerFlags, base: Obj, errors: list[FieldError]) -> Obj:
    """``base`` (the current ``spec.autoscaling`` of an slo service, or ``{}``) with the
    flags' settings; ``--slo`` replaces the whole objective."""
    doc: Obj = {**base, "policy": SLO}
    if flags.slo is not None:
        slo, bad = parse_slo(flags.slo)
        errors += bad
        if not bad:
            doc["slo"] = slo
    if flags.cloud_budget_per_hour is not None:
        doc["budget"] = {"cloudCostPerHour": flags.cloud_budget_per_hour}
    if flags.headroom is not None:
        doc["headroom"] = flags.headroom
    if flags.rebalance is not None:
        doc["rebalance"] = flags.rebalance
    return doc


def _planner(flags: AutoscalerFlags, base: Obj, errors: list[FieldError]) -> Autoscaling | None:
    """The tier planner's ``spec.autoscaling`` from ``base`` and the flags, validated; None
    when anything (in ``errors`` so far, or found here) is wrong."""
    doc = _planner_doc(flags, base, errors)
    # Without an objective (already reported) the other settings are checked all the same.
    checked = doc if doc.get("slo") else {**doc, "policy": HPA}
    autoscaling, bad = _validated_autoscaling(checked, flags.slo)
    errors += bad
    return None if errors else autoscaling


def _check_autoscaler(flags: AutoscalerFlags, errors: list[FieldError]) -> None:
    if flags.autoscaler is not None and flags.autoscaler not in AUTOSCALERS:
        errors.append(
            FieldError(
                "--autoscaler", f"{shown(flags.autoscaler)} is not one of {', '.join(AUTOSCALERS)}"
            )
        )


def _planner_settings_need_slo(flags: AutoscalerFlags, why: str, errors: list[FieldError]) -> None:
    for flag, value in flags.planner_settings():
        said = f"{value} is" if value else "is"
        errors.append(
            FieldError(
                flag,
                f"{said} a tier planner setting, given {why}; add --autoscaler slo, or drop {flag}",
            )
        )


def _scale_flags_conflict(
    scale_metric: str | None,
    scale_target: float | None,
    errors: list[FieldError],
    where: str = "with --autoscaler slo",
) -> None:
    """``--scale-metric``/``--scale-target`` given where the tier planner sizes the service."""
    for flag, value in (
        ("--scale-metric", None if scale_metric is None else shown(scale_metric)),
        ("--scale-target", _number(scale_target)),
    ):
        if value is not None:
            errors.append(
                FieldError(
                    flag,
                    f"{value} {where}: the tier planner sizes on the SLO; drop "
                    f"{flag}, or use --autoscaler hpa",
                )
            )


def _slo_required(errors: list[FieldError], why: str = "") -> None:
    errors.append(
        FieldError("--slo", f"is required with --autoscaler slo{why}; e.g. --slo {SLO_EXAMPLE}")
    )


def autoscaling_for_submit(
    flags: AutoscalerFlags, scale_metric: str | None, scale_target: float | None
) -> tuple[Autoscaling | None, list[FieldError]]:
    """``spec.autoscaling`` of ``serve kserve`` (None: the HPA on ``--scale-metric``, as
    without these flags), and what is wrong with the flags, each naming its flag."""
    errors: list[FieldError] = []
    _check_autoscaler(flags, errors)
    if flags.autoscaler != SLO:
        why = "with --autoscaler hpa" if flags.autoscaler == HPA else "without --autoscaler slo"
        _planner_settings_need_slo(flags, why, errors)
        return None, errors
    _scale_flags_conflict(scale_metric, scale_target, errors)
    if flags.slo is None:
        _slo_required(errors)
    return _planner(flags, {}, errors), errors


def autoscaling_for_update(
    spec: Obj, flags: AutoscalerFlags, scale_metric: str | None, scale_target: float | None
) -> tuple[Obj, list[FieldError]]:
    """``spec`` (a service's, as the API returns it) with ``serve update kserve``'s
    autoscaler flags applied, and what is wrong with them.

    The planner settings change a service the tier planner already sizes, or come with
    ``--autoscaler slo``; switching to it drops ``scaleMetric``/``scaleTarget`` (the HPA
    would fight the planner). ``--autoscaler hpa`` removes ``spec.autoscaling``: the
    service scales on its ``scaleMetric`` again (give one with ``--scale-metric``)."""
    errors: list[FieldError] = []
    _check_autoscaler(flags, errors)
    current: Obj = dict(spec.get("autoscaling") or {})
    was_slo = current.get("policy", HPA) == SLO
    to_slo = flags.autoscaler == SLO or (flags.autoscaler is None and was_slo)
    out = dict(spec)
    if errors:
        return out, errors
    if not to_slo:
        why = (
            "with --autoscaler hpa"
            if flags.autoscaler == HPA
            else "without --autoscaler slo (the service's autoscaler is hpa)"
        )
        _planner_settings_need_slo(flags, why, errors)
        if flags.autoscaler == HPA:
            out.pop("autoscaling", None)
        return out, errors
    where = (
        "with --autoscaler slo" if flags.autoscaler == SLO else "on a service of --autoscaler slo"
    )
    _scale_flags_conflict(scale_metric, scale_target, errors, where)
    if flags.slo is None and not (was_slo and current.get("slo")):
        _slo_required(errors, " (the service has no SLO yet)")
    autoscaling = _planner(flags, current if was_slo else {}, errors)
    if autoscaling is not None:
        out["autoscaling"] = autoscaling.to_dict()
        out.pop("scaleMetric", None)
        out.pop("scaleTarget", None)
    return out, errors


def service_for_submit(flags: arena.KServeFlags, auto: AutoscalerFlags) -> InferenceService:
    """The InferenceService of ``serve kserve``'s flags, the tier planner's included,
    validated, or a ValidationError naming every bad flag at once."""
    autoscaling, errors = autoscaling_for_submit(auto, flags.scale_metric, flags.scale_target)
    if auto.autoscaler == SLO:
        # Reported above in the planner's terms; arena's "both or neither" would mislead.
        flags = dataclasses.replace(flags, scale_metric=None, scale_target=None)
    try:
        service = arena.service_from_flags(flags)
    except ValidationError as exc:
        raise ValidationError("", [*exc.errors, *errors]) from None
    if errors:
        raise ValidationError("", errors)
    if autoscaling is None:
        return service
    return service.model_copy(
        update={"spec": service.spec.model_copy(update={"autoscaling": autoscaling})}
    )


def service_for_update(
    current: Obj, flags: arena.UpdateFlags, auto: AutoscalerFlags
) -> InferenceService:
    """``current`` (as the API returns it) with ``serve update kserve``'s flags applied,
    validated, or a ValidationError naming every bad flag at once."""
    spec, errors = autoscaling_for_update(
        current["spec"], auto, flags.scale_metric, flags.scale_target
    )
    if spec.get("autoscaling", {}).get("policy") == SLO:
        flags = dataclasses.replace(flags, scale_metric=None, scale_target=None)
    try:
        changed = arena.apply_update({**current, "spec": spec}, flags)
    except ValidationError as exc:
        raise ValidationError("", [*exc.errors, *errors]) from None
    if errors:
        raise ValidationError("", errors)
    return changed


def kube_service_for_update(
    current: Obj, flags: arena.UpdateFlags, auto: AutoscalerFlags
) -> InferenceService:
    """:func:`service_for_update` on Kubernetes, where the autoscaler is chosen as
    ``serve kserve --backend kubernetes`` chooses it: ``slo`` (the tier planner) and
    ``tierserve`` (the HPA's arithmetic) are run by tierserve's autoscaler (the service
    carries ``autoscaling.tierserve.io/autoscaler: tierserve``, no HPA object); ``hpa``
    is the stock HPA again (the annotation goes). Without ``--autoscaler``: as it is."""
    mode = auto.autoscaler
    if mode == kube_serving.TIERSERVE:
        auto = dataclasses.replace(auto, autoscaler=HPA)  # off the planner, if it was on it
    changed = service_for_update(current, flags, auto)
    annotations = dict(changed.spec.annotations)
    if mode in (SLO, kube_serving.TIERSERVE):
        annotations[kube_serving.AUTOSCALER_ANNOTATION] = kube_serving.TIERSERVE
    elif mode == HPA:
        annotations.pop(kube_serving.AUTOSCALER_ANNOTATION, None)
    else:
        return changed
    spec = changed.spec.model_copy(update={"annotations": annotations})
    return changed.model_copy(update={"spec": spec})


def _update_on_kubernetes(
    flags: arena.UpdateFlags,
    auto: AutoscalerFlags,
    version: str | None,
    dry_run: bool,
    kubeconfig: str | None,
    context: str | None,
    started: float,
) -> None:
    """``serve update kserve --backend kubernetes``: the same flags and checks as the local
    path (:func:`service_for_update`), applied to the job read back from the cluster and
    rendered as ``serve kserve`` renders it (:mod:`tierserve.runtime.kube.update`)."""
    assert flags.name is not None
    try:
        arena.check_version(version)

        def change(current: Obj) -> InferenceService:
            return kube_service_for_update(current, flags, auto)

        done = kube_update.update(flags.name, flags.namespace, change, kubeconfig, context, dry_run)
    except TierserveError as exc:
        fail(exc)
    suffix = " (server dry run)" if done.dry_run else ""
    for what in done.configured:
        typer.echo(f"{what} configured{suffix}")
    for what in done.deleted:
        typer.echo(f"{what} deleted{suffix}")
    state = (
        "is unchanged"
        if done.unchanged
        else "would be updated (server dry run)"
        if done.dry_run
        else "has been updated successfully"
    )
    typer.echo(
        arena_layout.info_line(
            time.monotonic() - started,
            f"The serving job {flags.name} with version {arena.VERSION} {state}",
        )
    )


def _logs_on_kubernetes(
    name: str,
    namespace: str,
    instance: str | None,
    tail: int | None,
    follow: bool,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """``serve logs --backend kubernetes``: the instance picked as locally, its log read
    through the API server's ``pods/log`` (:mod:`tierserve.runtime.kube.podlogs`)."""
    out = sys.stdout.buffer

    def pick(service: Obj, pods: list[Obj]) -> str:
        return arena_layout.pick_instance(service, pods, instance)

    def write(chunk: bytes) -> None:
        out.write(chunk)
        out.flush()

    try:
        kube_podlogs.logs(name, namespace, pick, write, tail, follow, kubeconfig, context)
    except KeyboardInterrupt:
        return  # Ctrl-C ends --follow: exit 0, as kubectl logs -f does


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
        autoscaler: str | None = AutoscalerOption,
        slo: str | None = SloOption,
        cloud_budget_per_hour: float | None = CloudBudgetOption,
        headroom: float | None = HeadroomOption,
        rebalance: bool | None = RebalanceOption,
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
        by_tierserve = autoscaler == kube_serving.TIERSERVE
        if by_tierserve:
            if not kube:
                what = (
                    "'tierserve' is for --backend kubernetes (tierserve kube autoscaler); "
                    "locally tierserve's control plane is the autoscaler: use hpa or slo"
                )
                fail(ValidationError("", [FieldError("--autoscaler", what)]))
            autoscaler = None  # the HPA's arithmetic, run by tierserve's autoscaler
        auto = AutoscalerFlags(autoscaler, slo, cloud_budget_per_hour, headroom, rebalance)
        # On Kubernetes the tier planner is tierserve's autoscaler (`tierserve kube
        # autoscaler`): the service is rendered for it, with no HPA.
        by_tierserve = by_tierserve or (kube and auto.autoscaler == SLO)
        try:
            service = service_for_submit(flags, auto)
            if by_tierserve:
                annotations = {
                    **service.spec.annotations,
                    kube_serving.AUTOSCALER_ANNOTATION: kube_serving.TIERSERVE,
                }
                spec = service.spec.model_copy(update={"annotations": annotations})
                service = service.model_copy(update={"spec": spec})
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
                    raise kube_serving.job_not_found(name, namespace)
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
        autoscaler: str | None = AutoscalerOption,
        slo: str | None = SloOption,
        cloud_budget_per_hour: float | None = CloudBudgetOption,
        headroom: float | None = HeadroomOption,
        rebalance: bool | None = RebalanceOption,
        env: list[str] | None = typer.Option(None, "--env", "-e", help="KEY=VALUE (merged)."),
        annotation: list[str] | None = typer.Option(None, "--annotation", "-a"),
        label: list[str] | None = typer.Option(None, "--label", "-l"),
        toleration: list[str] | None = typer.Option(None, "--toleration"),
        selector: list[str] | None = typer.Option(None, "--selector"),
        command: str | None = typer.Option(None, "--command", help="New command line."),
        dry_run: bool = typer.Option(
            False,
            "--dry-run",
            help="kubernetes: what would change (the API server's dry run); change nothing.",
        ),
        backend: str = BackendOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
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
        auto = AutoscalerFlags(autoscaler, slo, cloud_budget_per_hour, headroom, rebalance)
        if flags.changes_nothing() and not auto.given():
            fail(ValidationError("", [FieldError("", NOTHING_TO_UPDATE)]))
        kube = _kube(backend)
        if kube:
            _update_on_kubernetes(flags, auto, version, dry_run, kubeconfig, context, started)
            return
        if dry_run:
            what = "is served with --backend kubernetes (the API server's dry run)"
            fail(ValidationError("", [FieldError("--dry-run", what)]))
        try:
            arena.check_version(version)
            client = client_for(state_dir)
            changed = service_for_update(_service(client, name, namespace), flags, auto)
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
        follow: bool = typer.Option(
            False,
            "--follow",
            "-f",
            help="kubernetes: then what the instance writes, until it ends or Ctrl-C.",
        ),
        namespace: str = NamespaceOption,
        serving_type: str | None = TypeOption,
        version: str | None = VersionOption,
        backend: str = BackendOption,
        kubeconfig: str | None = KubeconfigOption,
        context: str | None = ContextOption,
        state_dir: Path | None = StateDirOption,
    ) -> None:
        """Print one instance's log (arena serve logs)."""
        kube = _kube(backend)
        if follow and not kube:
            what = "is served with --backend kubernetes; locally use `tierserve logs -f INSTANCE`"
            fail(ValidationError("", [FieldError("--follow", what)]))
        try:
            arena.check_type(serving_type)
            arena.check_version(version)
            if kube:
                _logs_on_kubernetes(name, namespace, instance, tail, follow, kubeconfig, context)
                return
            client = client_for(state_dir)
            service = _service(client, name, namespace)
            pods = client.list_objects("pods", namespace)
            chosen = arena_layout.pick_instance(service, pods, instance)
            text = client.logs(namespace, chosen, tail)
        except TierserveError as exc:
            fail(exc)
        typer.echo(text, nl=False)


__all__ = ["register"]

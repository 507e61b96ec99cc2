"""arena's ``serve`` vocabulary, pure: flags to an InferenceService and back.

Nothing here talks to the control plane or reads the clock; arena's printed layouts are
in :mod:`tierserve.cli.arena_layout`.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pydantic

from tierserve.errors import FieldError, ValidationError
from tierserve.model import InferenceService
from tierserve.model.loader import field_errors
from tierserve.model.service import SERVING_GROUP_VERSION

Obj = dict[str, Any]

SERVING_TYPE = "kserve"
TYPE_ALIAS = "KServe"
VERSION = "1"
PORT = 80
ARENA_TYPES = ("custom", "kf", "tf", "trt", "triton", "seldon", "distributed")

# InferenceService field (camelCase, as errors name it) -> the flag that sets it.
FLAGS: dict[str, str] = {
    "name": "--name",
    "namespace": "--namespace",
    "image": "--image",
    "imagePullPolicy": "--image-pull-policy",
    "gpus": "--gpus",
    "cpu": "--cpu",
    "memory": "--memory",
    "replicas": "--replicas",
    "minReplicas": "--min-replicas",
    "maxReplicas": "--max-replicas",
    "scaleMetric": "--scale-metric",
    "scaleTarget": "--scale-target",
    "data": "--data",
    "dataDir": "--data-dir",
    "env": "--env",
    "annotations": "--annotation",
    "labels": "--label",
    "tolerations": "--toleration",
    "nodeSelector": "--selector",
    "port": "--port",
    "modelName": "--model-name",
    "shell": "--shell",
    "readinessProbe": "--readiness-probe-path",
    "command": "COMMAND",
}


# -- flags -> InferenceService -------------------------------------------------------------


@dataclass
class _ServiceFlags:
    """The flags ``serve kserve`` and ``serve update kserve`` share; None/empty: not given."""

    name: str | None = None
    namespace: str = "default"
    image: str | None = None
    gpus: int | None = None
    cpu: str | None = None
    memory: str | None = None
    replicas: int | None = None
    min_replicas: int | None = None
    max_replicas: int | None = None
    scale_metric: str | None = None
    scale_target: float | None = None
    env: list[str] = field(default_factory=list)
    annotation: list[str] = field(default_factory=list)
    label: list[str] = field(default_factory=list)
    toleration: list[str] = field(default_factory=list)
    selector: list[str] = field(default_factory=list)


@dataclass
class KServeFlags(_ServiceFlags):
    """What ``serve kserve`` was given; None/empty means "not given" (the model's default)."""

    image_pull_policy: str | None = None
    data: list[str] = field(default_factory=list)
    data_dir: list[str] = field(default_factory=list)
    port: int | None = None
    model_name: str | None = None
    shell: str | None = None
    readiness_probe_path: str | None = None
    command: list[str] = field(default_factory=list)


@dataclass
class UpdateFlags(_ServiceFlags):
    """What ``serve update kserve`` was given: only the fields to change."""

    command: str | None = None

    def changes_nothing(self) -> bool:
        given = [v for k, v in vars(self).items() if k not in ("name", "namespace")]
        return all(v is None or v == [] for v in given)


def _pairs(values: Sequence[str], flag: str, errors: list[FieldError]) -> dict[str, str]:
    """``KEY=VALUE`` flags (split at the first ``=``); a later KEY wins, as in arena."""
    out: dict[str, str] = {}
    for value in values:
        key, sep, rest = value.partition("=")
        if not sep or not key.strip():
            errors.append(FieldError(flag, f"{value!r} is not KEY=VALUE; e.g. {flag}=a=b"))
            continue
        out[key.strip()] = rest
    return out


def parse_toleration(value: str) -> dict[str, Any]:
    """arena's ``--toleration``: ``all``, ``key``, ``key=value``, ``key[=value]:Effect[,Op]``."""
    if value == "all":
        return {"operator": "Exists"}
    main, _, operator = value.partition(",")
    main, _, effect = main.partition(":")
    key, sep, val = main.partition("=")
    out: dict[str, Any] = {"key": key, "operator": operator or ("Equal" if sep else "Exists")}
    if sep:
        out["value"] = val
    if effect:
        out["effect"] = effect
    return out


def _check_bounds(
    replicas: int | None,
    low: int | None,
    high: int | None,
    errors: list[FieldError],
    low_is_flag: bool = True,
) -> None:
    """min <= max, and replicas within them; ``low_is_flag`` False: min is the service's."""
    if low is not None and high is not None and low > high:
        if low_is_flag:
            errors.append(
                FieldError(
                    "--min-replicas",
                    (
                        f"{low} is greater than --max-replicas {high}; expected --min-replicas <= "
                        "--max-replicas"
                    ),
                )
            )
        else:
            errors.append(
                FieldError(
                    "--max-replicas",
                    (
                        f"{high} is less than the service's minReplicas {low}; expected at least "
                        f"{low} (or lower --min-replicas too)"
                    ),
                )
            )
    elif replicas is not None and (
        (low is not None and replicas < low) or (high is not None and replicas > high)
    ):
        bounds = f"{'' if low is None else low}..{'' if high is None else high}"
        errors.append(
            FieldError(
                "--replicas",
                (
                    f"{replicas} is outside minReplicas..maxReplicas ({bounds}); expected a number "
                    "within them"
                ),
            )
        )


def _check_scale(metric: str | None, target: float | None, errors: list[FieldError]) -> None:
    if (metric is None) != (target is None):
        given, missing = (
            ("--scale-metric", "--scale-target")
            if target is None
            else ("--scale-target", "--scale-metric")
        )
        errors.append(FieldError(given, f"given without {missing}; expected both or neither"))


def _flag_for(path: str) -> str:
    parts = path.replace("[", ".").split(".")
    if parts and parts[0] in ("spec", "metadata"):
        parts = parts[1:]
    return FLAGS.get(parts[0], "") if parts else ""


def _validated(doc: Obj) -> InferenceService:
    """The object, or a ValidationError whose fields are named by their flags."""
    try:
        return InferenceService.model_validate(doc)
    except pydantic.ValidationError as exc:
        # A union with Literal[""] (a toleration's effect) adds an empty "is not one of".
        errors = [
            FieldError(_flag_for(e.path) or e.path, e.message)
            for e in field_errors(exc, InferenceService)
            if not e.message.rstrip().endswith("is not one of")
        ]
        raise ValidationError("", errors) from None


def service_from_flags(flags: KServeFlags) -> InferenceService:
    """The InferenceService ``arena serve kserve`` flags describe, validated, or why not.

    ``replicas`` defaults to ``--min-replicas`` when given, else 1 (KServe starts at min).
    Raises ``ValidationError`` naming each bad flag, its value and what was expected.
    """
    errors: list[FieldError] = []
    if not flags.name:
        errors.append(FieldError("--name", "is required; e.g. --name=deepseek"))
    command = " ".join(flags.command).strip()
    if not command:
        errors.append(
            FieldError(
                "COMMAND",
                (
                    "the command to serve with is required, as the last argument; e.g. "
                    '"vllm serve /model/DeepSeek-R1-Distill-Qwen-7B --port 8080"'
                ),
            )
        )
    _check_bounds(flags.replicas, flags.min_replicas, flags.max_replicas, errors)
    _check_scale(flags.scale_metric, flags.scale_target, errors)
    spec: Obj = {"command": command}
    env = _pairs(flags.env, "--env", errors)
    annotations = _pairs(flags.annotation, "--annotation", errors)
    labels = _pairs(flags.label, "--label", errors)
    selector = _pairs(flags.selector, "--selector", errors)
    scalar = {
        "image": flags.image,
        "imagePullPolicy": flags.image_pull_policy,
        "gpus": flags.gpus,
        "cpu": flags.cpu,
        "memory": flags.memory,
        "minReplicas": flags.min_replicas,
        "maxReplicas": flags.max_replicas,
        "scaleMetric": flags.scale_metric,
        "scaleTarget": flags.scale_target,
        "port": flags.port,
        "modelName": flags.model_name,
        "shell": flags.shell,
    }
    spec.update({k: v for k, v in scalar.items() if v is not None})
    if flags.readiness_probe_path is not None:
        spec["readinessProbe"] = {"httpGet": {"path": flags.readiness_probe_path}}
    spec["replicas"] = (
        flags.replicas
        if flags.replicas is not None
        else flags.min_replicas
        if flags.min_replicas is not None
        else 1
    )
    lists = {
        "data": list(flags.data),
        "dataDir": list(flags.data_dir),
        "tolerations": [parse_toleration(t) for t in flags.toleration],
    }
    maps = {"env": env, "annotations": annotations, "labels": labels, "nodeSelector": selector}
    spec.update({k: v for k, v in {**lists, **maps}.items() if v})
    doc = {
        "apiVersion": SERVING_GROUP_VERSION,
        "kind": "InferenceService",
        "metadata": {"name": flags.name, "namespace": flags.namespace},
        "spec": spec,
    }
    try:
        service = _validated(doc)
    except ValidationError as exc:
        # One report with every bad flag; skip what the checks above already said.
        said = {e.path for e in errors}
        errors += [
            e for e in exc.errors if e.path not in said and not (errors and e.path == "spec")
        ]
        raise ValidationError("", errors) from None
    if errors:
        raise ValidationError("", errors)
    return service


def manifest(service: InferenceService) -> Obj:
    """The object as a user would write it: no status, no empty fields."""
    doc = service.to_dict()
    doc.pop("status", None)

    def prune(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: prune(v) for k, v in value.items() if v not in ({}, [], None)}
        if isinstance(value, float) and value.is_integer():
            return int(value)  # --scale-target=50 reads back as 50, as typed
        return value

    out: Obj = prune(doc)
    return out


def apply_update(service: Obj, flags: UpdateFlags) -> InferenceService:
    """``service`` (as the API returns it) with the flags' changes, validated, or why not."""
    spec: Obj = dict(service["spec"])
    errors: list[FieldError] = []
    low = flags.min_replicas if flags.min_replicas is not None else spec.get("minReplicas")
    high = flags.max_replicas if flags.max_replicas is not None else spec.get("maxReplicas")
    _check_bounds(flags.replicas, low, high, errors, low_is_flag=flags.min_replicas is not None)
    metric = flags.scale_metric if flags.scale_metric is not None else spec.get("scaleMetric")
    target = flags.scale_target if flags.scale_target is not None else spec.get("scaleTarget")
    _check_scale(metric, target, errors)
    merges = {
        "env": _pairs(flags.env, "--env", errors),
        "annotations": _pairs(flags.annotation, "--annotation", errors),
        "labels": _pairs(flags.label, "--label", errors),
        "nodeSelector": _pairs(flags.selector, "--selector", errors),
    }
    if errors:
        raise ValidationError("", errors)
    scalar = {
        "image": flags.image,
        "gpus": flags.gpus,
        "cpu": flags.cpu,
        "memory": flags.memory,
        "replicas": flags.replicas,
        "minReplicas": flags.min_replicas,
        "maxReplicas": flags.max_replicas,
        "scaleMetric": flags.scale_metric,
        "scaleTarget": flags.scale_target,
        "command": flags.command,
    }
    spec.update({k: v for k, v in scalar.items() if v is not None})
    # Bring replicas into the new bounds (arena leaves that to the HPA; we have it at hand).
    if flags.replicas is None:
        if low is not None and spec.get("replicas", 1) < low:
            spec["replicas"] = low
        if high is not None and spec.get("replicas", 1) > high:
            spec["replicas"] = high
    for key, values in merges.items():
        if values:
            spec[key] = {**spec.get(key, {}), **values}
    if flags.toleration:
        new = [parse_toleration(t) for t in flags.toleration]
        seen = {(t.get("key", ""), t.get("value", "")) for t in new}
        old = [
            t
            for t in spec.get("tolerations", [])
            if (t.get("key", ""), t.get("value", "")) not in seen
        ]
        spec["tolerations"] = new + old
    meta = {
        k: v
        for k, v in service["metadata"].items()
        if k not in ("uid", "resourceVersion", "creationTimestamp", "generation")
    }
    return _validated(
        {
            "apiVersion": service.get("apiVersion", SERVING_GROUP_VERSION),
            "kind": "InferenceService",
            "metadata": meta,
            "spec": spec,
        }
    )


def check_type(value: str | None) -> None:
    """``--type``: arena's habit; only ``kserve`` is served here."""
    if value is None or value.lower() == SERVING_TYPE:
        return
    known = [SERVING_TYPE, *ARENA_TYPES]
    close = difflib.get_close_matches(value.lower(), [SERVING_TYPE], n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    other = " (an arena type tierserve does not serve)" if value.lower() in known else ""
    raise ValidationError(
        "", [FieldError("--type", (f"{value!r}{other} is not supported; expected kserve{hint}"))]
    )


def check_version(value: str | None) -> None:
    """``--version``: every tierserve service has one version, ``1``."""
    if value is not None and value != VERSION:
        raise ValidationError(
            "",
            [
                FieldError(
                    "--version",
                    (
                        f"{value!r} is not a version of this service; expected {VERSION} "
                        "(tierserve keeps one version per service)"
                    ),
                )
            ],
        )


__all__ = [
    "FLAGS",
    "KServeFlags",
    "UpdateFlags",
    "apply_update",
    "check_type",
    "check_version",
    "manifest",
    "parse_toleration",
    "service_from_flags",
]

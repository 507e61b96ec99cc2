"""A simulation scenario: one YAML file with the cluster, the services, the controllers'
periods and the workload.

::

    apiVersion: sim.tierserve.io/v1alpha1
    kind: Scenario
    metadata: {name: seed-burst}
    spec:
      duration: 9m              # simulated time of the workload (then in-flight requests end)
      warmStart: true           # initial replicas are Ready when the workload starts
      seed: 1
      autoscaler: hpa           # optional: run this one of policy.autoscaling.AUTOSCALERS for
                                # every service (default: each service's spec.autoscaling)
      slo: {ttftSeconds: 2, tpotSeconds: 0.1}
      controllers:              # the local runtime's flags, in seconds
        tickSeconds: 1
        metricsIntervalSeconds: 5
        drainGraceSeconds: 30
        holdTimeoutSeconds: 60
        startupOverheadSeconds: 0
        slowStartSeconds: 10    # the gateway's slow start of a newly Ready replica (0: off)
        autoscaler: {periodSeconds: 15, tolerance: 0.1,
                     downscaleStabilizationSeconds: 300, metricMaxAgeSeconds: 30}
      engine: {model: fast}     # fast | step (the step-level reference)
      objects:                  # Nodes, ResourcePolicies, InferenceServices, as apply takes them
        - file: ../cluster.yaml # multi-document YAML, relative to this file
        - {apiVersion: serving.tierserve.io/v1alpha1, kind: InferenceService, ...}
      workload: [...]           # tierserve.sim.workload (docs/simulate.md)

:func:`vary` applies ``--vary PATH=V1,V2,...`` overrides to the raw document before it is
parsed: ``PATH`` is a dotted path (``spec.controllers.autoscaler.periodSeconds``) or
``autoscaling`` (or ``autoscaling:NAME``, one service), which merges a mapping into every
InferenceService's ``spec`` (its
``scaleMetric``, ``scaleTarget``, ``metrics``, ``minReplicas``, ``maxReplicas``); a value
is YAML (``15``, ``{a: 1}``) or ``@file.yaml``.
"""

from __future__ import annotations

import copy
import difflib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tierserve.errors import FieldError, ValidationError
from tierserve.model import InferenceService, Node, load_documents
from tierserve.model.base import TypedObject
from tierserve.model.display import shown
from tierserve.model.loader import parse_object
from tierserve.model.resourcepolicy import parse_duration_s
from tierserve.policy.autoscaling import AUTOSCALERS, AutoscalerConfig
from tierserve.sim.engine import REPLICA_MODELS
from tierserve.sim.workload import Workload, parse_workload
from tierserve.sim.world import SimSettings, Slo

API_VERSION = "sim.tierserve.io/v1alpha1"
KIND = "Scenario"

_SPEC_KEYS = (
    "duration",
    "warmStart",
    "seed",
    "autoscaler",
    "slo",
    "controllers",
    "engine",
    "objects",
    "workload",
)
_CONTROLLER_KEYS = {
    "tickSeconds": "tick_s",
    "metricsIntervalSeconds": "metrics_interval_s",
    "drainGraceSeconds": "drain_grace_s",
    "holdTimeoutSeconds": "hold_timeout_s",
    "startupOverheadSeconds": "startup_overhead_s",
    "drainLimitSeconds": "drain_limit_s",
    "timelineStepSeconds": "timeline_step_s",
    "slowStartSeconds": "routing_slow_start_s",
}
_AUTOSCALER_KEYS = {
    "periodSeconds": "period_s",
    "tolerance": "tolerance",
    "downscaleStabilizationSeconds": "downscale_stabilization_s",
    "metricMaxAgeSeconds": "metric_max_age_s",
}
AUTOSCALING_FIELDS = (
    "scaleMetric",
    "scaleTarget",
    "metrics",
    "minReplicas",
    "maxReplicas",
    "autoscaling",
)


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str
    duration_s: float
    seed: int
    objects: tuple[TypedObject, ...]
    workload: Workload
    settings: SimSettings
    slo: Slo


class _Errors:
    def __init__(self, subject: str) -> None:
        self.subject = subject
        self.items: list[FieldError] = []

    def add(self, path: str, message: str) -> None:
        self.items.append(FieldError(path, message))

    def unknown(self, data: Mapping[str, Any], allowed: tuple[str, ...] | Any, path: str) -> None:
        for key in data:
            if key not in allowed:
                close = difflib.get_close_matches(str(key), list(allowed), n=1, cutoff=0.6)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                self.add(
                    f"{path}.{key}", f"unknown field; expected one of {', '.join(allowed)}{hint}"
                )

    def raise_if_any(self) -> None:
        if self.items:
            raise ValidationError(self.subject, self.items)


def _seconds(value: Any, path: str, errors: _Errors, minimum: float = 0.0) -> float | None:
    try:
        seconds = float(value) if isinstance(value, int | float) else parse_duration_s(str(value))
    except (TypeError, ValueError):
        seconds = None
    if seconds is None or seconds < minimum or isinstance(value, bool):
        errors.add(
            path,
            f"{shown(value)} is not valid; expected seconds >= {minimum:g} "
            "(a number, or a duration such as 90s, 5m, 1h30m)",
        )
        return None
    return seconds


def _mapping(value: Any, path: str, errors: _Errors) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        errors.add(path, f"{shown(value)} is not a mapping")
        return {}
    return value


def _objects(items: Any, base: Path, errors: _Errors) -> list[TypedObject]:
    if not isinstance(items, list) or not items:
        errors.add(
            "spec.objects",
            f"{shown(items)} is not valid; expected a list of objects or {{file: PATH}} entries",
        )
        return []
    out: list[TypedObject] = []
    for i, item in enumerate(items):
        where = f"spec.objects[{i}]"
        if isinstance(item, Mapping) and set(item) == {"file"}:
            path = base / str(item["file"])
            try:
                out.extend(load_documents(path.read_text(encoding="utf-8"), str(path)))
            except OSError as exc:
                errors.add(
                    f"{where}.file", f"{shown(item['file'])} cannot be read: {exc.strerror or exc}"
                )
            except ValidationError as exc:
                errors.add(f"{where}.file", str(exc))
            continue
        try:
            out.append(parse_object(item, i))
        except ValidationError as exc:
            errors.add(where, str(exc))
    return out


def parse(document: Any, source: str = "<scenario>", base_dir: Path | None = None) -> Scenario:
    """A scenario from its parsed YAML. Raises one ``ValidationError`` with every bad
    field (``spec.controllers.tickSeconds: '-1' is not valid; expected seconds > 0``)."""
    base = base_dir if base_dir is not None else Path(".")
    errors = _Errors(f"scenario {source}")
    doc = _mapping(document, "", errors)
    errors.raise_if_any()
    if doc.get("apiVersion") != API_VERSION or doc.get("kind") != KIND:
        errors.add(
            "apiVersion/kind",
            f"{shown(doc.get('apiVersion'))}/{shown(doc.get('kind'))}"
            f" is not valid; expected {API_VERSION}/{KIND}",
        )
    errors.unknown(doc, ("apiVersion", "kind", "metadata", "spec"), "")
    name = str(_mapping(doc.get("metadata"), "metadata", errors).get("name") or Path(source).stem)
    spec = _mapping(doc.get("spec"), "spec", errors)
    errors.unknown(spec, _SPEC_KEYS, "spec")
    duration = _seconds(spec.get("duration", "10m"), "spec.duration", errors, minimum=1e-9)
    seed = spec.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        errors.add("spec.seed", f"{shown(seed)} is not valid; expected an integer")
        seed = 0
    autoscaler = spec.get("autoscaler")
    if autoscaler is not None and autoscaler not in AUTOSCALERS:
        errors.add(
            "spec.autoscaler",
            f"{shown(autoscaler)} is not valid; expected one of {', '.join(AUTOSCALERS)}",
        )
    slo_doc = _mapping(spec.get("slo"), "spec.slo", errors)
    errors.unknown(slo_doc, ("ttftSeconds", "tpotSeconds"), "spec.slo")
    ttft = _seconds(slo_doc.get("ttftSeconds", 2.0), "spec.slo.ttftSeconds", errors, 1e-9)
    tpot = _seconds(slo_doc.get("tpotSeconds", 0.1), "spec.slo.tpotSeconds", errors, 1e-9)
    controllers = _mapping(spec.get("controllers"), "spec.controllers", errors)
    errors.unknown(controllers, (*_CONTROLLER_KEYS, "autoscaler"), "spec.controllers")
    fields: dict[str, Any] = {}
    for key, attr in _CONTROLLER_KEYS.items():
        if key in controllers:
            positive = 1e-9 if key in ("tickSeconds", "metricsIntervalSeconds") else 0.0
            fields[attr] = _seconds(controllers[key], f"spec.controllers.{key}", errors, positive)
    hpa = _mapping(controllers.get("autoscaler"), "spec.controllers.autoscaler", errors)
    errors.unknown(hpa, tuple(_AUTOSCALER_KEYS), "spec.controllers.autoscaler")
    hpa_fields: dict[str, Any] = {}
    for key, attr in _AUTOSCALER_KEYS.items():
        if key in hpa:
            minimum = 1e-9 if key == "periodSeconds" else 0.0
            hpa_fields[attr] = _seconds(
                hpa[key], f"spec.controllers.autoscaler.{key}", errors, minimum
            )
    engine = _mapping(spec.get("engine"), "spec.engine", errors)
    errors.unknown(engine, ("model",), "spec.engine")
    engine_model = engine.get("model", "fast")
    if engine_model not in REPLICA_MODELS:
        errors.add(
            "spec.engine.model",
            f"{shown(engine_model)} is not valid; expected one of {', '.join(REPLICA_MODELS)}",
        )
    objects = _objects(spec.get("objects"), base, errors)
    if objects and not any(isinstance(o, Node) for o in objects):
        errors.add(
            "spec.objects",
            "no Node: a scenario needs a cluster (Node objects, e.g. "
            "{file: cluster.yaml} as `tierserve up --cluster` takes it)",
        )
    if objects and not any(isinstance(o, InferenceService) for o in objects):
        errors.add("spec.objects", "no InferenceService to serve the workload")
    workload: Workload | None = None
    if "workload" not in spec:
        errors.add("spec.workload", "required field is missing")
    else:
        try:
            workload = parse_workload(
                spec["workload"], base_dir=base, subject=errors.subject, path="spec.workload"
            )
        except ValidationError as exc:
            errors.items.extend(exc.errors)
    warm = spec.get("warmStart", False)
    if not isinstance(warm, bool):
        errors.add("spec.warmStart", f"{shown(warm)} is not valid; expected true or false")
    errors.raise_if_any()
    assert workload is not None and duration is not None and ttft is not None
    assert tpot is not None
    settings = SimSettings(
        **{k: v for k, v in fields.items() if v is not None},
        autoscaler=AutoscalerConfig(**{k: v for k, v in hpa_fields.items() if v is not None}),
        autoscaler_policy=None if autoscaler is None else str(autoscaler),
        engine_model=str(engine_model),
        seed=seed,
        warm_start=bool(warm),
    )
    return Scenario(
        name, source, duration, seed, tuple(objects), workload, settings, Slo(ttft, tpot)
    )


def load(path: Path | str, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """Read, override (``vary``) and parse the scenario file at ``path``."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValidationError(
            f"scenario {path}", [FieldError("", f"cannot be read: {exc.strerror or exc}")]
        ) from None
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValidationError(f"scenario {path}", [FieldError("", f"is not YAML: {exc}")]) from None
    for key, value in (overrides or {}).items():
        document = vary(document, key, value, path.parent)
    return parse(document, str(path), path.parent)


def vary(document: Any, key: str, value: Any, base_dir: Path) -> Any:
    """``document`` with ``key`` set to ``value`` (see the module doc); not changed in place."""
    doc = copy.deepcopy(document)
    only: str | None = None
    if key.startswith("autoscaling:"):  # autoscaling:NAME: only the service called NAME
        key, only = "autoscaling", key.split(":", 1)[1]
    if key == "autoscaling":
        if not isinstance(value, Mapping):
            raise ValidationError(
                "--vary",
                [
                    FieldError(
                        "autoscaling",
                        f"{shown(value)} is not a mapping of {', '.join(AUTOSCALING_FIELDS)}",
                    )
                ],
            )
        bad = [k for k in value if k not in AUTOSCALING_FIELDS]
        if bad:
            raise ValidationError(
                "--vary",
                [
                    FieldError(
                        f"autoscaling.{bad[0]}",
                        f"unknown field; expected one of {', '.join(AUTOSCALING_FIELDS)}",
                    )
                ],
            )
        spec = doc.get("spec", {}) if isinstance(doc, dict) else {}
        objects = spec.get("objects", []) if isinstance(spec, dict) else []
        found = False
        for i, item in enumerate(objects):
            if isinstance(item, Mapping) and set(item) == {"file"}:
                path = base_dir / str(item["file"])
                docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
                objects[i : i + 1] = docs  # inline the file so its services can change
        for item in objects:
            if (
                isinstance(item, dict)
                and item.get("kind") == "InferenceService"
                and (only is None or (item.get("metadata") or {}).get("name") == only)
            ):
                item.setdefault("spec", {}).update(copy.deepcopy(dict(value)))
                found = True
        if not found:
            raise ValidationError(
                "--vary",
                [FieldError("autoscaling", "the scenario has no InferenceService to change")],
            )
        return doc
    parts = key.split(".")
    node = doc
    for i, part in enumerate(parts[:-1]):
        if not isinstance(node, dict):
            raise ValidationError(
                "--vary",
                [FieldError(key, f"{'.'.join(parts[: i + 1])} is not a mapping in the scenario")],
            )
        node = node.setdefault(part, {})
    if not isinstance(node, dict):
        raise ValidationError("--vary", [FieldError(key, "its parent is not a mapping")])
    node[parts[-1]] = value
    return doc


def parse_vary(text: str, base_dir: Path = Path(".")) -> tuple[str, list[tuple[str, Any]]]:
    """``PATH=V1,V2`` → (PATH, [(label, value), ...]); ``@file.yaml`` values are read."""
    key, sep, values = text.partition("=")
    if not sep or not key or not values:
        raise ValidationError(
            "--vary",
            [
                FieldError(
                    "",
                    f"{shown(text)} is not valid; expected "
                    "PATH=V1,V2 (e.g. autoscaling=@a.yaml,@b.yaml"
                    " or spec.controllers.tickSeconds=0.5,1)",
                )
            ],
        )
    out: list[tuple[str, Any]] = []
    for raw in values.split(","):
        raw = raw.strip()
        if raw.startswith("@"):
            path = base_dir / raw[1:]
            try:
                out.append((Path(raw[1:]).stem, yaml.safe_load(path.read_text(encoding="utf-8"))))
            except OSError as exc:
                raise ValidationError(
                    "--vary",
                    [FieldError(key, f"{shown(raw)} cannot be read: {exc.strerror or exc}")],
                ) from None
        else:
            out.append((f"{key}={raw}", yaml.safe_load(raw)))
    return key, out

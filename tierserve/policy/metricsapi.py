"""The custom metrics API's decisions: which metrics are served, what a pod's value is, and
the documents the API returns (``custom.metrics.k8s.io/v1beta2``).

Pure: the Kubernetes adapter (``runtime/kube/custom_metrics.py``) lists the pods, scrapes
their ``/metrics`` and calls these functions.

- A pod's value of a metric is the sum of its samples of that name (several label sets of
  one name add up, as the local runtime's scraper does); with a metric selector
  (``metricLabelSelector``) only the samples whose labels match count. A pod that exports
  no such sample has no value (the HPA counts it as *missing*).
- Values are rendered as Kubernetes quantities in milli-units (``73500m``, ``2``), as the
  HPA reads them.
- Label selectors follow Kubernetes' syntax: ``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``,
  ``k notin (a,b)``, ``k``, ``!k``; terms separated by commas all hold.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tierserve.errors import FieldError, ValidationError
from tierserve.model.quantity import format_milli

GROUP = "custom.metrics.k8s.io"
VERSION = "v1beta2"
GROUP_VERSION = f"{GROUP}/{VERSION}"

DCGM_METRICS = (
    "DCGM_CUSTOM_PROCESS_SM_UTIL",
    "DCGM_CUSTOM_PROCESS_MEM_USED",
    "DCGM_FI_DEV_GPU_UTIL",
    "DCGM_FI_PROF_SM_ACTIVE",
    "DCGM_FI_DEV_FB_USED",
    "DCGM_FI_DEV_FB_FREE",
)
"""dcgm-exporter's names, as the emulator and the local runtime (NVML) export them."""
VLLM_METRICS = (
    "vllm:num_requests_running",
    "vllm:num_requests_waiting",
    "vllm:kv_cache_usage_perc",
    "vllm:num_preemptions",
)
"""vLLM's per-replica gauges (and the preemption counter)."""
SERVED_METRICS = DCGM_METRICS + VLLM_METRICS
"""What the API serves by default (``--metric`` adds more)."""

_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME})?")
_SET_TERM = re.compile(r"(\S+?)\s+(in|notin)\s+\(([^()]*)\)")
_EQ_TERM = re.compile(r"(!?)\s*([^=!\s]+)\s*(?:(==|=|!=)\s*(\S*))?")


def metric_names(extra: Iterable[str] = ()) -> tuple[str, ...]:
    """The served metric names: the defaults, then ``extra`` (each a Prometheus metric
    name; a bad one is a ValidationError naming ``--metric``)."""
    names = list(SERVED_METRICS)
    errors = []
    for name in extra:
        if not _METRIC_NAME.fullmatch(name):
            errors.append(FieldError("--metric", f"{name!r} is not a Prometheus metric name"))
        elif name not in names:
            names.append(name)
    if errors:
        raise ValidationError("", errors)
    return tuple(names)


@dataclass(frozen=True)
class Requirement:
    """One selector term: ``key`` ``op`` ``values`` (``op``: ``=``, ``!=``, ``in``,
    ``notin``, ``exists``, ``!exists``)."""

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op in ("=", "in"):
            return self.key in labels and labels[self.key] in self.values
        if self.op in ("!=", "notin"):  # Kubernetes: an object without the key matches too
            return labels.get(self.key) not in self.values
        return (self.key in labels) == (self.op == "exists")


@dataclass(frozen=True)
class Selector:
    """A parsed label selector; the empty one selects everything."""

    requirements: tuple[Requirement, ...] = ()
    text: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(r.matches(labels) for r in self.requirements)

    def to_label_selector(self) -> dict[str, Any] | None:
        """As a ``metav1.LabelSelector`` (None when empty), for ``metric.selector``."""
        if not self.requirements:
            return None
        match: dict[str, str] = {}
        expressions: list[dict[str, Any]] = []
        ops = {"in": "In", "notin": "NotIn", "!=": "NotIn", "exists": "Exists",
               "!exists": "DoesNotExist"}  # fmt: skip
        for r in self.requirements:
            if r.op == "=":
                match[r.key] = r.values[0]
            else:
                expr: dict[str, Any] = {"key": r.key, "operator": ops[r.op]}
                if r.values:
                    expr["values"] = list(r.values)
                expressions.append(expr)
        out: dict[str, Any] = {}
        if match:
            out["matchLabels"] = match
        if expressions:
            out["matchExpressions"] = expressions
        return out


def _split_terms(text: str) -> list[str]:
    """Split on commas outside parentheses."""
    terms, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            terms.append(text[start:i])
            start = i + 1
    terms.append(text[start:])
    return [t.strip() for t in terms]


def _check(field: str, key: str, values: Sequence[str], errors: list[FieldError]) -> bool:
    if not _LABEL_KEY.fullmatch(key):
        errors.append(FieldError(field, f"{key!r} is not a valid label key"))
        return False
    bad = [v for v in values if not _LABEL_VALUE.fullmatch(v)]
    if bad:
        errors.append(FieldError(field, f"{bad[0]!r} is not a valid label value"))
        return False
    return True


def parse_selector(text: str, field: str = "labelSelector") -> Selector:
    """Kubernetes' label selector syntax (see the module doc); a ValidationError names
    ``field`` and every bad term."""
    text = text.strip()
    if not text:
        return Selector()
    requirements: list[Requirement] = []
    errors: list[FieldError] = []
    expected = "expected key=value, key!=value, key in (a,b), key notin (a,b), key or !key"
    for term in _split_terms(text):
        set_term = _SET_TERM.fullmatch(term)
        if set_term:
            key, op = set_term[1], set_term[2]
            values = tuple(v.strip() for v in set_term[3].split(",") if v.strip())
            if not values:
                errors.append(FieldError(field, f"{term!r}: {op} needs at least one value"))
            elif _check(field, key, values, errors):
                requirements.append(Requirement(key, op, values))
            continue
        eq = _EQ_TERM.fullmatch(term)
        if not term or not eq or (eq[1] and eq[3]):
            errors.append(FieldError(field, f"{term!r} is not a selector term; {expected}"))
            continue
        negated, key, op, value = eq[1], eq[2], eq[3], eq[4] or ""
        if not _check(field, key, [value] if op else [], errors):
            continue
        if op:
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", (value,)))
        else:
            requirements.append(Requirement(key, "!exists" if negated else "exists"))
    if errors:
        raise ValidationError("", errors)
    return Selector(tuple(requirements), text)


Sample = tuple[str, Mapping[str, str], float]
"""One scraped sample: (metric name, labels, value)."""


def pod_value(samples: Iterable[Sample], metric: str, selector: Selector) -> float | None:
    """The pod's value of ``metric``: the sum of its samples of that name whose labels
    ``selector`` matches; None when there is none (or only NaN)."""
    total, found = 0.0, False
    for name, labels, value in samples:
        if name == metric and not math.isnan(value) and selector.matches(labels):
            total += value
            found = True
    return total if found else None


GATEWAY_METRICS: Mapping[str, str] = {
    "tierserve:inflight_requests": "tierserve_gateway_replica_in_flight",
}
"""Per-pod signals the gateway measures (what the local runtime's HPA scales on), by the
name the API serves them under, from the gateway family that holds them per replica."""


def gateway_value(
    expositions: Iterable[Iterable[Sample]], metric: str, namespace: str, pod: str
) -> float:
    """A pod's gateway signal: the sum over every gateway of its family's samples for
    ``namespace``/``pod`` (a gateway that never routed to the pod has none: 0)."""
    family = GATEWAY_METRICS[metric]
    total = 0.0
    for samples in expositions:
        for name, labels, value in samples:
            if (
                name == family
                and labels.get("replica") == pod
                and labels.get("namespace", namespace) == namespace
                and not math.isnan(value)
            ):
                total += value
    return total


def quantity(value: float) -> str:
    """A metric value as a Kubernetes quantity, to the milli-unit: 73.5 -> ``73500m``,
    2.0 -> ``2``, 1500.0 -> ``1500`` (decimal suffixes only for exact thousands)."""
    if math.isinf(value):
        value = math.copysign(9.2e15, value)  # int64 milli-units' range
    milli = round(value * 1000)
    if milli % 1000 == 0 and milli // 1000 % 1000 != 0:
        return str(milli // 1000)
    return format_milli(milli)


@dataclass(frozen=True)
class PodValue:
    """One pod's value of one metric, scraped at ``timestamp`` (RFC 3339)."""

    namespace: str
    pod: str
    value: float
    timestamp: str


def metric_value_list(
    metric: str, selector: Selector, values: Sequence[PodValue], window_s: int
) -> dict[str, Any]:
    """The ``MetricValueList`` for pods' ``metric`` (v1beta2)."""
    return {
        "kind": "MetricValueList",
        "apiVersion": GROUP_VERSION,
        "metadata": {},
        "items": [
            {
                "describedObject": {
                    "kind": "Pod",
                    "namespace": v.namespace,
                    "name": v.pod,
                    "apiVersion": "/v1",
                },
                "metric": {"name": metric, "selector": selector.to_label_selector()},
                "timestamp": v.timestamp,
                "windowSeconds": window_s,
                "value": quantity(v.value),
            }
            for v in values
        ],
    }


def api_resource_list(metrics: Iterable[str]) -> dict[str, Any]:
    """Discovery: one ``pods/<metric>`` resource per served metric."""
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [
            {
                "name": f"pods/{m}",
                "singularName": "",
                "namespaced": True,
                "kind": "MetricValueList",
                "verbs": ["get"],
            }
            for m in metrics
        ],
    }


def api_group() -> dict[str, Any]:
    gv = {"groupVersion": GROUP_VERSION, "version": VERSION}
    return {
        "kind": "APIGroup",
        "apiVersion": "v1",
        "name": GROUP,
        "versions": [gv],
        "preferredVersion": gv,
    }


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    """A ``metav1.Status`` failure, what Kubernetes clients print."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


__all__ = [
    "DCGM_METRICS",
    "GATEWAY_METRICS",
    "GROUP",
    "GROUP_VERSION",
    "SERVED_METRICS",
    "VERSION",
    "VLLM_METRICS",
    "PodValue",
    "Requirement",
    "Sample",
    "Selector",
    "api_group",
    "api_resource_list",
    "gateway_value",
    "metric_names",
    "metric_value_list",
    "parse_selector",
    "pod_value",
    "quantity",
    "status",
]

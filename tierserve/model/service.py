"""InferenceService: what ``arena serve kserve`` takes, as one declarative object."""

from __future__ import annotations

import re
import shlex
from typing import Any, ClassVar, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from tierserve.model.autoscaling import Autoscaling
from tierserve.model.base import FieldProblem, Strict, TypedObject, check_labels, new_input
from tierserve.model.display import shown
from tierserve.model.dns import (
    MAX_DNS_LABEL,
    MAX_LABEL_VALUE,
    MAX_SUBDOMAIN,
    dns1035_problem,
    label_problem,
)
from tierserve.model.probe import ReadinessProbe, default_readiness_paths
from tierserve.model.quantity import QuantityError, parse_milli
from tierserve.model.resources import CPU, GPU, MEMORY, Toleration

SERVING_GROUP_VERSION = "serving.tierserve.io/v1alpha1"
HOST_SUFFIX = "example.com"
APP_LABEL_PREFIX = "isvc."
PREDICTOR_SUFFIX = "-predictor"
REPLICA_NAME_SUFFIX = len("-bcdfghjklm-bcdfg")
"""What a replica name adds to ``<name>-predictor``: ``-<pod-template-hash>-<suffix>``,
10 and 5 characters (the local runtime's ``naming.replica_name``, as a Deployment's pods)."""
_MOUNT = re.compile(r"^(?P<source>[^:]+):(?P<path>/.*)$")


def _split_mount(value: Any, source_key: str, flag: str) -> Any:
    if isinstance(value, str):
        match = _MOUNT.match(value)
        if not match:
            raise ValueError(
                f"{shown(value)} is not {flag}; expected <{source_key}>:<absolute mount path>, "
                "e.g. llm-model:/model/DeepSeek-R1-Distill-Qwen-7B"
            )
        return {source_key: match.group("source"), "mountPath": match.group("path")}
    return value


class DataVolume(Strict):
    """``--data pvc:/path``: mount the claim ``name`` at ``mount_path`` inside the replica."""

    name: str
    mount_path: str

    @model_validator(mode="before")
    @classmethod
    def _from_flag(cls, value: Any) -> Any:
        return _split_mount(value, "name", "a --data value")

    @field_validator("name")
    @classmethod
    def _volume_name(cls, value: str, info: ValidationInfo) -> str:
        # On Kubernetes the claim's name is also the pod's volume name: a DNS-1123 label.
        problem = label_problem(value, "claim name for a pod volume") if new_input(info) else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{shown(value)} is not an absolute path")
        return value


class HostDir(Strict):
    """``--data-dir host:/path``: mount a directory of the node at ``mount_path``."""

    host_path: str
    mount_path: str

    @model_validator(mode="before")
    @classmethod
    def _from_flag(cls, value: Any) -> Any:
        return _split_mount(value, "hostPath", "a --data-dir value")


class MetricTarget(Strict):
    """One scale metric: a per-replica metric name and its target average value."""

    name: str
    target: float = Field(gt=0)


class InferenceServiceSpec(Strict):
    image: str = "vllm/vllm-openai:latest"
    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    gpus: int = Field(default=0, ge=0)
    cpu: str | None = None
    memory: str | None = None
    replicas: int = Field(default=1, ge=0)
    min_replicas: int | None = Field(default=None, ge=0)
    max_replicas: int | None = Field(default=None, ge=1)
    scale_metric: str | None = None
    scale_target: float | None = Field(default=None, gt=0)
    metrics: list[MetricTarget] = Field(default_factory=list)
    """More scale metrics beyond ``scaleMetric``; the largest recommendation wins."""
    data: list[DataVolume] = Field(default_factory=list)
    data_dir: list[HostDir] = Field(default_factory=list)
    env: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    """Annotations put on every replica (arena's ``--annotation``)."""
    labels: dict[str, str] = Field(default_factory=dict)
    """Labels put on every replica (arena's ``--label``)."""
    tolerations: list[Toleration] = Field(default_factory=list)
    node_selector: dict[str, str] = Field(default_factory=dict)
    port: int = Field(default=8080, ge=1, le=65535)
    readiness_probe: ReadinessProbe | None = None
    autoscaling: Autoscaling | None = None
    """Which autoscaler sizes the service (``policy: slo``: the tier planner); None:
    the HPA on ``scaleMetric``/``metrics``."""
    """When a replica takes traffic; None: the engine's default paths, every second."""
    model_name: str | None = None
    shell: str = "sh"
    command: str = Field(min_length=1)

    @field_validator("cpu", "memory")
    @classmethod
    def _quantity(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                parse_milli(value)
            except QuantityError as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return check_labels(value, "label")

    @field_validator("command")
    @classmethod
    def _command(cls, value: str) -> str:
        try:
            shlex.split(value)
        except ValueError as exc:
            raise ValueError(f"{shown(value)} is not a shell command line: {exc}") from None
        return value

    @model_validator(mode="after")
    def _bounds(self) -> InferenceServiceSpec:
        low, high = self.min_replicas, self.max_replicas
        if low is not None and high is not None and low > high:
            raise ValueError(f"minReplicas {low} is greater than maxReplicas {high}")
        if (self.scale_metric is None) != (self.scale_target is None):
            raise ValueError("scaleMetric and scaleTarget must be given together")
        probe_port = self.readiness_probe.http_get.port if self.readiness_probe else None
        if probe_port is not None and probe_port != self.port:
            raise ValueError(
                f"readinessProbe.httpGet.port {probe_port} is not the serving port {self.port}: "
                "tierserve probes the port the engine serves on (leave it out, or give "
                f"{self.port})"
            )
        return self


class AutoscalerStatus(Strict):
    """The tier planner's last plan, as ``describe isvc`` shows it (written by the
    autoscaler only)."""

    policy: str
    at_s: float
    desired: int
    per_tier: dict[str, int] = Field(default_factory=dict)
    forecast_rate: float | None = None
    """Requests/s expected at ``now + horizon``."""
    horizon_s: float | None = None
    capacity: float | None = None
    """Requests/s one replica carries at the SLO."""
    expected_cost_per_hour: float | None = None
    budget_blocked: bool = False
    reason: str = ""


class InferenceServiceStatus(Strict):
    desired_replicas: int = 0
    available_replicas: int = 0
    message: str = ""
    autoscaler: AutoscalerStatus | None = None
    """The tier planner's last plan (None for the HPA)."""


def name_limits(namespace: str) -> list[tuple[int, str]]:
    """Every bound on an InferenceService name in ``namespace``: (most characters, what
    it keeps valid), from each name and label derived from it."""
    return [
        (
            MAX_LABEL_VALUE - len(APP_LABEL_PREFIX) - len(PREDICTOR_SUFFIX),  # 48
            f"the label app={APP_LABEL_PREFIX}<name>{PREDICTOR_SUFFIX} stays within "
            f"{MAX_LABEL_VALUE}",
        ),
        (
            MAX_DNS_LABEL - len(PREDICTOR_SUFFIX),  # 53
            f"the Kubernetes Deployment and Service <name>{PREDICTOR_SUFFIX} stay within "
            f"{MAX_DNS_LABEL}",
        ),
        (
            MAX_LABEL_VALUE,
            "the labels serving.kserve.io/inferenceservice=<name> and servingName=<name> "
            f"stay within {MAX_LABEL_VALUE}",
        ),
        (
            MAX_DNS_LABEL - 1 - len(namespace),  # 55 in "default"
            f"in namespace {namespace!r} the host's first DNS label <name>-<namespace> "
            f"(<name>-<namespace>.{HOST_SUFFIX}) stays within {MAX_DNS_LABEL}",
        ),
        (
            MAX_SUBDOMAIN - len(PREDICTOR_SUFFIX) - REPLICA_NAME_SUFFIX,  # 226
            f"replica names <name>{PREDICTOR_SUFFIX}-<hash>-<suffix> stay within {MAX_SUBDOMAIN}",
        ),
    ]


def name_problem(name: str, namespace: str) -> str | None:
    """Why ``name`` cannot name an InferenceService in ``namespace``, or None."""
    problem = dns1035_problem(name, "InferenceService name")
    if problem is not None:
        return f"{problem} (it names the Kubernetes Service <name>{PREDICTOR_SUFFIX})"
    limit, why = min(name_limits(namespace))
    if len(name) > limit:
        return (
            f"{shown(name)} is {len(name)} characters; an InferenceService name must be at "
            f"most {limit} so that {why}"
        )
    return None


class InferenceService(TypedObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = (SERVING_GROUP_VERSION,)
    KIND: ClassVar[str] = "InferenceService"

    api_version: str = SERVING_GROUP_VERSION
    kind: str = "InferenceService"
    spec: InferenceServiceSpec
    status: InferenceServiceStatus = Field(default_factory=InferenceServiceStatus)

    @model_validator(mode="after")
    def _derived_names(self, info: ValidationInfo) -> InferenceService:
        problem = name_problem(self.name, self.namespace) if new_input(info) else None
        if problem is not None:
            raise FieldProblem("metadata.name", problem)
        return self

    @property
    def predictor(self) -> str:
        """KServe's predictor name, used for replica names and the ``app`` label."""
        return f"{self.name}{PREDICTOR_SUFFIX}"

    def replica_labels(self) -> dict[str, str]:
        """Labels every replica carries; ``app: isvc.<name>-predictor`` is what policies select."""
        return {
            **self.spec.labels,
            "app": f"{APP_LABEL_PREFIX}{self.predictor}",
            "serving.kserve.io/inferenceservice": self.name,
            "servingName": self.name,
            "servingType": "kserve",
        }

    @property
    def host(self) -> str:
        """The virtual host the gateway routes on: ``<name>-<namespace>.example.com``."""
        return f"{self.name}-{self.namespace}.{HOST_SUFFIX}"

    def requests(self) -> dict[str, int]:
        """Per-replica resource requests in milli-units."""
        wanted: dict[str, int] = {}
        if self.spec.gpus:
            wanted[GPU] = self.spec.gpus * 1000
        if self.spec.cpu:
            wanted[CPU] = parse_milli(self.spec.cpu)
        if self.spec.memory:
            wanted[MEMORY] = parse_milli(self.spec.memory)
        return wanted

    def scale_metrics(self) -> list[MetricTarget]:
        """Every configured scale metric: ``scaleMetric`` first, then ``metrics``."""
        first = []
        if self.spec.scale_metric is not None and self.spec.scale_target is not None:
            first.append(MetricTarget(name=self.spec.scale_metric, target=self.spec.scale_target))
        return first + list(self.spec.metrics)

    def readiness_paths(self) -> tuple[str, ...]:
        """What the readiness probe asks, in order: the service's path, else the default
        for its engine (``/health`` then ``/v1/models``; see :mod:`tierserve.model.probe`)."""
        probe = self.spec.readiness_probe
        if probe is not None:
            return probe.paths(self.spec.command)
        return default_readiness_paths(self.spec.command)

    def served_model_name(self) -> str:
        """The model name clients send: ``--served-model-name`` in the command, else modelName."""
        words = shlex.split(self.spec.command)
        for i, word in enumerate(words):
            if word == "--served-model-name" and i + 1 < len(words):
                return words[i + 1]
            if word.startswith("--served-model-name="):
                return word.split("=", 1)[1]
        return self.spec.model_name or self.name


__all__ = [
    "APP_LABEL_PREFIX",
    "HOST_SUFFIX",
    "PREDICTOR_SUFFIX",
    "REPLICA_NAME_SUFFIX",
    "SERVING_GROUP_VERSION",
    "DataVolume",
    "HostDir",
    "InferenceService",
    "InferenceServiceSpec",
    "InferenceServiceStatus",
    "MetricTarget",
    "name_limits",
    "name_problem",
]

"""ResourcePolicy: ACK's ordered-units scheduling policy (IDC first, then cloud).

Field names follow ACK's ``scheduling.alibabacloud.com/v1alpha1`` ResourcePolicy so that
its YAML loads verbatim; ``scheduling.tierserve.io/v1alpha1`` is our own group.
"""

from __future__ import annotations

import re
from typing import ClassVar, Literal

from pydantic import Field, field_validator

from tierserve.model.base import Strict, TypedObject, check_labels
from tierserve.model.display import shown
from tierserve.model.resources import ResourceList

ACK_GROUP_VERSION = "scheduling.alibabacloud.com/v1alpha1"
TIERSERVE_GROUP_VERSION = "scheduling.tierserve.io/v1alpha1"

UnitResource = Literal["ecs", "eci", "acs", "elastic"]
"""``ecs``: ordinary (IDC) nodes; ``eci``/``acs``: virtual nodes; ``elastic``: autoscaled pools."""

VIRTUAL_RESOURCES = frozenset({"eci", "acs"})

TryNextPolicy = Literal[
    "LackResourceOrExceedMax", "ExceedMax", "TimeoutOrExceedMax", "LackResourceAndNoTerminating"
]

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNITS_S = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration_s(text: str) -> float:
    """A Go duration (``15m``, ``1m30s``, ``90s``, ``500ms``) in seconds."""
    pos, total = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS_S[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"{shown(text)} is not a duration; expected e.g. 15m, 1m30s, 90s or 500ms")
    return total


class Unit(Strict):
    """One tier of capacity, tried in order."""

    resource: UnitResource = "ecs"
    node_selector: dict[str, str] = Field(default_factory=dict)
    max: int | None = Field(default=None, ge=0)
    """At most this many matched pods in the unit (per ``matchLabelKeys`` group)."""
    max_resources: ResourceList | None = None
    """At most this much summed requests of matched pods in the unit."""
    pod_labels: dict[str, str] = Field(default_factory=dict)
    pod_annotations: dict[str, str] = Field(default_factory=dict)
    spot_instance: bool | None = None

    @field_validator("pod_labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return check_labels(value, "podLabels")

    @property
    def virtual(self) -> bool:
        """eci/acs units run on virtual nodes and tolerate the virtual-kubelet taint."""
        return self.resource in VIRTUAL_RESOURCES


class WhenTryNextUnits(Strict):
    policy: TryNextPolicy = "LackResourceOrExceedMax"
    timeout: str = "15m"
    """Go duration; only ``TimeoutOrExceedMax`` uses it, measured from pod creation."""

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: str) -> str:
        parse_duration_s(value)
        return value

    @property
    def timeout_s(self) -> float:
        return parse_duration_s(self.timeout)


class ResourcePolicySpec(Strict):
    selector: dict[str, str]
    strategy: Literal["prefer", "required"] = "prefer"
    units: list[Unit] = Field(min_length=1)
    when_try_next_units: WhenTryNextUnits = Field(default_factory=WhenTryNextUnits)
    ignore_previous_pod: bool = False
    ignore_terminating_pod: bool = True
    match_label_keys: list[str] = Field(default_factory=list)
    preempt_policy: Literal["AfterAllUnits", "BeforeNextUnit"] | None = None
    """Recorded only (tierserve does not preempt yet); None: not set (ACK: AfterAllUnits)."""

    @field_validator("selector")
    @classmethod
    def _selector(cls, value: dict[str, str]) -> dict[str, str]:
        if not value:
            raise ValueError("an empty selector would match every pod; name at least one label")
        return check_labels(value, "selector")


class ResourcePolicy(TypedObject):
    API_VERSIONS: ClassVar[tuple[str, ...]] = (TIERSERVE_GROUP_VERSION, ACK_GROUP_VERSION)
    KIND: ClassVar[str] = "ResourcePolicy"

    api_version: str = TIERSERVE_GROUP_VERSION
    kind: str = "ResourcePolicy"
    spec: ResourcePolicySpec

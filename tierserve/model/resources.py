"""Resource lists, taints and tolerations: the vocabulary of node fit."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, PlainSerializer

from tierserve.model.base import Strict
from tierserve.model.display import cut, shown
from tierserve.model.quantity import QuantityError, format_milli, parse_milli

GPU = "nvidia.com/gpu"
CPU = "cpu"
MEMORY = "memory"
PODS = "pods"
# Byte-valued resources are printed with binary suffixes (12Gi), the rest decimal (500m, 1k).
_BINARY_RESOURCES = frozenset({MEMORY, "ephemeral-storage", "storage"})


def _parse_list(value: Any) -> dict[str, int]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{shown(value)} is not a mapping of resource name to quantity")
    parsed: dict[str, int] = {}
    for name, amount in value.items():
        try:
            parsed[str(name)] = parse_milli(amount)
        except QuantityError as exc:
            raise ValueError(f"{cut(str(name), 80)}: {exc}") from None
        if parsed[str(name)] < 0:
            raise ValueError(
                f"{cut(str(name), 80)}: {shown(amount)} is negative; expected a quantity >= 0"
            )
    return parsed


def format_amount(name: str, milli: int) -> str:
    return format_milli(milli, binary=name in _BINARY_RESOURCES)


def _format_list(value: dict[str, int]) -> dict[str, str]:
    return {name: format_amount(name, milli) for name, milli in value.items()}


ResourceList = Annotated[
    dict[str, int],
    BeforeValidator(_parse_list),
    PlainSerializer(_format_list, return_type=dict[str, str]),
]
"""Resource name -> amount in milli-units; parsed from and printed as Kubernetes quantities."""

TaintEffect = Literal["NoSchedule", "PreferNoSchedule", "NoExecute"]


class Taint(Strict):
    key: str
    value: str = ""
    effect: TaintEffect


class Toleration(Strict):
    key: str = ""
    operator: Literal["Exists", "Equal"] = "Equal"
    value: str = ""
    effect: TaintEffect | Literal[""] = ""
    toleration_seconds: int | None = None

    def tolerates(self, taint: Taint) -> bool:
        """Kubernetes' ToleratesTaint: empty key with Exists tolerates everything."""
        if self.effect and self.effect != taint.effect:
            return False
        if not self.key:
            return self.operator == "Exists"
        if self.key != taint.key:
            return False
        return self.operator == "Exists" or self.value == taint.value


def untolerated(taints: list[Taint], tolerations: list[Toleration]) -> list[Taint]:
    """Taints that repel a pod: NoSchedule/NoExecute ones no toleration matches."""
    return [
        t
        for t in taints
        if t.effect != "PreferNoSchedule" and not any(tol.tolerates(t) for tol in tolerations)
    ]


def matches(selector: Mapping[str, str], labels: Mapping[str, str]) -> bool:
    """An equality-based label selector: every key present with the same value."""
    return all(labels.get(k) == v for k, v in selector.items())

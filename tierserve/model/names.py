"""kubectl-style resource names: plurals, singulars and short names for every kind."""

from __future__ import annotations

import difflib

from tierserve.errors import FieldError, ValidationError
from tierserve.model.base import TypedObject
from tierserve.model.display import shown
from tierserve.model.node import Node
from tierserve.model.replica import Replica
from tierserve.model.resourcepolicy import ResourcePolicy
from tierserve.model.service import InferenceService
from tierserve.model.storage import PersistentVolume, PersistentVolumeClaim, Secret

PLURALS: dict[type[TypedObject], str] = {
    Node: "nodes",
    Replica: "pods",
    ResourcePolicy: "resourcepolicies",
    InferenceService: "inferenceservices",
    PersistentVolume: "persistentvolumes",
    PersistentVolumeClaim: "persistentvolumeclaims",
    Secret: "secrets",
}
"""The canonical (URL) name of each kind. Replicas are ``pods``, as kubectl users expect."""

_SHORT_NAMES: dict[str, type[TypedObject]] = {
    "no": Node,
    "pod": Replica,
    "po": Replica,
    "replicas": Replica,
    "rp": ResourcePolicy,
    "isvc": InferenceService,
    "pv": PersistentVolume,
    "pvc": PersistentVolumeClaim,
}

_RESOURCES: dict[str, type[TypedObject]] = {
    **{plural: cls for cls, plural in PLURALS.items()},
    **{cls.KIND.lower(): cls for cls in PLURALS},
    **_SHORT_NAMES,
}
"""Every name kubectl-style commands accept: plurals, singulars (the kind) and short names."""


def resolve_resource(name: str) -> type[TypedObject]:
    """The kind a kubectl-style resource name means (``pods``, ``pvc``, ``isvc``, ...)."""
    lowered = name.lower()
    if lowered in _RESOURCES:
        return _RESOURCES[lowered]
    known = sorted(_RESOURCES)
    close = difflib.get_close_matches(lowered, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValidationError(
        "resource",
        [
            FieldError(
                "",
                f"{shown(name)} is not a resource type: expected one of "
                f"{', '.join(PLURALS.values())}{hint}",
            )
        ],
    )

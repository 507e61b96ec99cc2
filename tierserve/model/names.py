"""kubectl-style resource names: plurals, singulars and short names for every kind."""

from __future__ import annotations

import difflib

from tierserve.errors import FieldError, ValidationError
from tierserve.model.base import TypedObject
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

_ALIASES: dict[str, type[TypedObject]] = {
    "node": Node,
    "no": Node,
    "pod": Replica,
    "po": Replica,
    "replica": Replica,
    "replicas": Replica,
    "resourcepolicy": ResourcePolicy,
    "rp": ResourcePolicy,
    "inferenceservice": InferenceService,
    "isvc": InferenceService,
    "persistentvolume": PersistentVolume,
    "pv": PersistentVolume,
    "persistentvolumeclaim": PersistentVolumeClaim,
    "pvc": PersistentVolumeClaim,
    "secret": Secret,
}


def resolve_resource(name: str) -> type[TypedObject]:
    """The kind a kubectl-style resource name means (``pods``, ``pvc``, ``isvc``, ...)."""
    lowered = name.lower()
    for cls, plural in PLURALS.items():
        if lowered in (plural, cls.KIND.lower()):
            return cls
    if lowered in _ALIASES:
        return _ALIASES[lowered]
    known = sorted({*PLURALS.values(), *_ALIASES})
    close = difflib.get_close_matches(lowered, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise ValidationError(
        "resource",
        [
            FieldError(
                "",
                f"{name!r} is not a resource type: expected one of "
                f"{', '.join(PLURALS.values())}{hint}",
            )
        ],
    )

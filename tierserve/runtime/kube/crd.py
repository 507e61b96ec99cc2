"""The ResourcePolicy CustomResourceDefinition: ACK's field names, an OpenAPI v3 schema
that makes the API server reject bad specs with a message naming the field.

``group`` is ``scheduling.tierserve.io`` (ours) or ``scheduling.alibabacloud.com``
(``--ack-compatible``: the seed's YAML then applies unchanged with ``kubectl create -f``).
"""

from __future__ import annotations

from typing import Any

from tierserve.model.resourcepolicy import ACK_GROUP_VERSION, TIERSERVE_GROUP_VERSION

Obj = dict[str, Any]

TIERSERVE_GROUP = TIERSERVE_GROUP_VERSION.split("/")[0]
ACK_GROUP = ACK_GROUP_VERSION.split("/")[0]
VERSION = "v1alpha1"
PLURAL = "resourcepolicies"

_LABELS: Obj = {"type": "object", "additionalProperties": {"type": "string"}}
_QUANTITY: Obj = {
    "anyOf": [{"type": "integer"}, {"type": "string"}],
    "pattern": r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))"
    r"(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$",
    "x-kubernetes-int-or-string": True,
}
_DURATION = r"^([0-9]+(\.[0-9]+)?(ms|h|m|s))+$"

_UNIT: Obj = {
    "type": "object",
    "properties": {
        "resource": {
            "type": "string",
            "enum": ["ecs", "eci", "acs", "elastic"],
            "default": "ecs",
            "description": "ecs: ordinary (IDC) nodes; eci/acs: virtual nodes; elastic: "
            "autoscaled node pools.",
        },
        "nodeSelector": _LABELS,
        "max": {"type": "integer", "minimum": 0, "format": "int32"},
        "maxResources": {"type": "object", "additionalProperties": _QUANTITY},
        "podLabels": _LABELS,
        "podAnnotations": _LABELS,
        "spotInstance": {"type": "boolean"},
    },
}

SCHEMA: Obj = {
    "type": "object",
    "required": ["spec"],
    "properties": {
        "apiVersion": {"type": "string"},
        "kind": {"type": "string"},
        "metadata": {"type": "object"},
        "spec": {
            "type": "object",
            "required": ["selector", "units"],
            "properties": {
                "selector": {**_LABELS, "minProperties": 1},
                "strategy": {"type": "string", "enum": ["prefer", "required"]},
                "units": {"type": "array", "minItems": 1, "items": _UNIT},
                "whenTryNextUnits": {
                    "type": "object",
                    "properties": {
                        "policy": {
                            "type": "string",
                            "enum": [
                                "LackResourceOrExceedMax",
                                "ExceedMax",
                                "TimeoutOrExceedMax",
                                "LackResourceAndNoTerminating",
                            ],
                        },
                        "timeout": {"type": "string", "pattern": _DURATION},
                    },
                },
                "ignorePreviousPod": {"type": "boolean"},
                "ignoreTerminatingPod": {"type": "boolean"},
                "matchLabelKeys": {"type": "array", "items": {"type": "string"}},
                "preemptPolicy": {"type": "string", "enum": ["AfterAllUnits", "BeforeNextUnit"]},
            },
        },
        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
    },
}


def resource_policy_crd(group: str = TIERSERVE_GROUP) -> Obj:
    """The CRD object for ``group``."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{PLURAL}.{group}",
            "labels": {"app.kubernetes.io/part-of": "tierserve"},
        },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": {
                "plural": PLURAL,
                "singular": "resourcepolicy",
                "kind": "ResourcePolicy",
                "listKind": "ResourcePolicyList",
                "shortNames": ["rp"],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": SCHEMA},
                    "additionalPrinterColumns": [
                        {"name": "Strategy", "type": "string", "jsonPath": ".spec.strategy"},
                        {
                            "name": "Units",
                            "type": "string",
                            "jsonPath": ".spec.units[*].resource",
                        },
                        {
                            "name": "Age",
                            "type": "date",
                            "jsonPath": ".metadata.creationTimestamp",
                        },
                    ],
                }
            ],
        },
    }


def policies_path(group: str, namespace: str | None = None) -> str:
    where = f"/namespaces/{namespace}" if namespace else ""
    return f"/apis/{group}/{VERSION}{where}/{PLURAL}"


__all__ = ["ACK_GROUP", "SCHEMA", "TIERSERVE_GROUP", "policies_path", "resource_policy_crd"]

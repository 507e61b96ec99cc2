"""Shared pieces of every object: pydantic configuration, metadata, the typed-object base."""

from __future__ import annotations

import re
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.alias_generators import to_camel

# A DNS-1123 label/subdomain name, as Kubernetes requires for object names.
_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


class Strict(BaseModel):
    """Base of every schema: camelCase field names, unknown fields rejected, immutable."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        frozen=True,
        validate_default=True,
    )

    def to_dict(self) -> dict[str, Any]:
        """The object as a plain dict with camelCase keys and empty optionals left out."""
        return self.model_dump(by_alias=True, exclude_none=True, mode="json")


def check_labels(value: dict[str, str], what: str) -> dict[str, str]:
    """Validate label values (Kubernetes' 63-character rule); keys are kept as given."""
    for key, label in value.items():
        if len(str(label)) > 63 or not _LABEL_VALUE.match(str(label)):
            raise ValueError(
                f"{what} {key}={label!r}: a label value must be at most 63 characters of "
                "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            )
    return value


class ObjectMeta(Strict):
    """The subset of Kubernetes ``metadata`` tierserve keeps."""

    name: str
    namespace: str = "default"
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    creation_timestamp: str | None = None
    resource_version: str | None = None
    generation: int | None = None
    # Kubernetes bookkeeping that round-trips from `kubectl get -o yaml`; tierserve ignores it.
    managed_fields: list[dict[str, Any]] | None = None
    finalizers: list[str] | None = None
    deletion_timestamp: str | None = None

    @field_validator("name", "namespace")
    @classmethod
    def _dns_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(
                f"{value!r} is not a valid name: expected lower-case letters, digits, '-' or "
                "'.', starting and ending with a letter or digit (at most 253 characters)"
            )
        return value

    @field_validator("labels")
    @classmethod
    def _labels(cls, value: dict[str, str]) -> dict[str, str]:
        return check_labels(value, "label")


class TypedObject(Strict):
    """An object with ``apiVersion``, ``kind`` and ``metadata`` (subclasses add spec/status)."""

    API_VERSIONS: ClassVar[tuple[str, ...]] = ()
    KIND: ClassVar[str] = ""
    NAMESPACED: ClassVar[bool] = True

    api_version: str
    kind: str
    metadata: ObjectMeta

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if cls.API_VERSIONS and value not in cls.API_VERSIONS:
            raise ValueError(f"{value!r} is not one of {', '.join(cls.API_VERSIONS)}")
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if cls.KIND and value != cls.KIND:
            raise ValueError(f"{value!r} is not {cls.KIND!r}")
        return value

    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def namespace(self) -> str:
        return self.metadata.namespace

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity in a store: (kind, namespace, name); cluster-scoped kinds use ''."""
        return (self.KIND, self.namespace if self.NAMESPACED else "", self.name)

    @classmethod
    def new(cls, name: str, namespace: str = "default", **fields: Any) -> Any:
        """Build an object in code with the default apiVersion and kind filled in."""
        meta = fields.pop("metadata", {})
        return cls.model_validate(
            {
                "apiVersion": cls.API_VERSIONS[0],
                "kind": cls.KIND,
                "metadata": {"name": name, "namespace": namespace, **meta},
                **fields,
            }
        )

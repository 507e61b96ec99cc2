"""Shared pieces of every object: pydantic configuration, metadata, the typed-object base."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from pydantic.alias_generators import to_camel

from tierserve.model.display import cut, shown
from tierserve.model.dns import label_problem, label_value_problem, subdomain_problem

STORED: dict[str, Any] = {"stored": True}
"""Validation context for objects read back from a store (``model_validate(data,
context=STORED)``): rules that only new input must pass, such as name limits added in a
later version, are not applied again, so that an object an older version stored still
loads (and can be shown, fixed or deleted) instead of failing every read."""


def new_input(info: ValidationInfo) -> bool:
    """Whether a validator sees new input (not an object read back from a store)."""
    return not (isinstance(info.context, dict) and info.context.get("stored"))


class FieldProblem(ValueError):
    """A validator's finding about one field below the model it validates.

    Raised from a model-level validator (one that sees several fields, such as a name
    and its namespace) so that the error still names the field: ``field`` is its path
    relative to the model, e.g. ``metadata.name``.
    """

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(message)


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
        problem = label_value_problem(label)
        if problem is not None:
            raise ValueError(f"{what} {cut(key, 80)}={problem}")
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

    @field_validator("name")
    @classmethod
    def _dns_name(cls, value: str, info: ValidationInfo) -> str:
        problem = subdomain_problem(value) if new_input(info) else None
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("namespace")
    @classmethod
    def _dns_label(cls, value: str, info: ValidationInfo) -> str:
        problem = label_problem(value, "namespace") if new_input(info) else None
        if problem is not None:
            raise ValueError(problem)
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
    SECRET_FIELDS: ClassVar[tuple[str, ...]] = ()
    """Top-level fields whose values no message may show (a Secret's ``data``)."""

    api_version: str
    kind: str
    metadata: ObjectMeta

    @field_validator("api_version")
    @classmethod
    def _api_version(cls, value: str) -> str:
        if cls.API_VERSIONS and value not in cls.API_VERSIONS:
            raise ValueError(f"{shown(value)} is not one of {', '.join(cls.API_VERSIONS)}")
        return value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        if cls.KIND and value != cls.KIND:
            raise ValueError(f"{shown(value)} is not {cls.KIND!r}")
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

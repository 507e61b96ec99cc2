"""Multi-document YAML in and out, with field-level errors.

``load_documents`` turns text into typed objects or raises one ``ValidationError`` that
lists every bad field of every document as ``Kind name: field.path: what was wrong``,
e.g. ``ResourcePolicy deepseek: spec.units[1].resource: 'ecx' is not one of ecs, eci,
acs, elastic``. Unknown fields get a "did you mean" hint.

Messages stay short whatever the input: values are quoted cut short (``display.shown``),
each message is capped at ``MAX_MESSAGE_CHARS`` and at most ``MAX_ERRORS`` are listed.
The values of a kind's ``SECRET_FIELDS`` (a Secret's ``data``/``stringData``) are never
quoted, only their keys. The YAML itself is read within the bounds of ``yamlsafe``.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections.abc import Iterable, Sequence
from typing import Any

import pydantic
import yaml
from pydantic import BaseModel

from tierserve.errors import FieldError, ValidationError
from tierserve.model.base import FieldProblem, TypedObject
from tierserve.model.display import cut, shown
from tierserve.model.node import Node
from tierserve.model.replica import Replica
from tierserve.model.resourcepolicy import ResourcePolicy
from tierserve.model.service import InferenceService
from tierserve.model.storage import PersistentVolume, PersistentVolumeClaim, Secret
from tierserve.model.yamlsafe import parse_yaml

KINDS: dict[str, type[TypedObject]] = {
    cls.KIND: cls
    for cls in (
        Node,
        ResourcePolicy,
        InferenceService,
        Replica,
        PersistentVolume,
        PersistentVolumeClaim,
        Secret,
    )
}
"""Every kind tierserve accepts, by ``kind``."""

_QUOTED = re.compile(r"'([^']*)'")
MAX_MESSAGE_CHARS = 600
"""Longest message of one field (room for a "known fields" list)."""
MAX_ERRORS = 50
"""At most this many field errors are listed; one more line counts the rest."""
_SUBJECT_NAME_CHARS = 80
_HIDDEN = "(value not shown)"


def _path(loc: Sequence[int | str]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.startswith(("function-", "dict[", "list[")):
            continue  # pydantic's internal validator steps, not user-visible fields
        else:
            out += f".{part}" if out else part
    return out


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The pydantic models an annotation can hold (through Optional, list, dict, Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in typing.get_args(annotation):
        found.extend(_models_in(arg))
    return found


def _fields_at(cls: type[BaseModel], loc: Sequence[int | str]) -> list[str]:
    """The field names (aliases) accepted at ``loc`` inside ``cls``, for "did you mean"."""
    models: list[type[BaseModel]] = [cls]
    for part in loc:
        if isinstance(part, int):
            continue
        nxt: list[type[BaseModel]] = []
        for model in models:
            for name, info in model.model_fields.items():
                if part in (name, info.alias):
                    nxt.extend(_models_in(info.annotation))
        if not nxt:
            return []
        models = nxt
    return sorted({info.alias or name for m in models for name, info in m.model_fields.items()})


def _hidden(loc: Sequence[int | str], cls: type[BaseModel] | None) -> bool:
    """Whether ``loc`` is inside one of ``cls``'s secret fields (by name or alias)."""
    secret = getattr(cls, "SECRET_FIELDS", ())
    if not secret or not loc or cls is None:
        return False
    info = cls.model_fields.get(str(loc[0]))
    return loc[0] in secret or (info is not None and info.alias in secret)


def _message(error: Any, cls: type[BaseModel] | None) -> str:
    kind = error["type"]
    value = error.get("input")
    ctx = error.get("ctx") or {}
    hidden = _hidden(error["loc"], cls)
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        loc = error["loc"]
        known = _fields_at(cls, loc[:-1]) if cls is not None else []
        close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        allowed = f" (known fields: {', '.join(known)})" if known and not close else ""
        return f"unknown field{hint}{allowed}"
    quoted = _HIDDEN if hidden else shown(value)
    if kind == "literal_error":
        allowed = ", ".join(_QUOTED.findall(str(ctx.get("expected", ""))))
        return f"{quoted} is not one of {allowed}"
    if kind in ("value_error", "assertion_error"):
        found = ctx.get("error")
        if isinstance(found, FieldProblem):
            return found.message
        return str(found if found is not None else error["msg"])
    msg = str(error["msg"])
    return f"{quoted}: {msg[0].lower()}{msg[1:]}"


def _error_path(error: Any) -> str:
    path = _path(error["loc"])
    found = (error.get("ctx") or {}).get("error")
    if isinstance(found, FieldProblem) and found.field:
        return f"{path}.{found.field}" if path else found.field
    return path


def field_errors(exc: pydantic.ValidationError, cls: type[BaseModel] | None) -> list[FieldError]:
    """Translate pydantic's errors into tierserve's ``FieldError`` list (short messages)."""
    return [
        FieldError(_error_path(e), cut(_message(e, cls), MAX_MESSAGE_CHARS))
        for e in exc.errors(include_url=False, include_input=True)
    ]


def _capped(errors: list[FieldError]) -> list[FieldError]:
    if len(errors) <= MAX_ERRORS:
        return errors
    more = len(errors) - MAX_ERRORS
    return [*errors[:MAX_ERRORS], FieldError("", f"... and {more} more errors")]


def _subject(doc: dict[str, Any], index: int) -> str:
    kind = doc.get("kind")
    kind = cut(kind, _SUBJECT_NAME_CHARS) if isinstance(kind, str) and kind else "object"
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, dict) else None
    if isinstance(name, str) and name:
        return f"{kind} {cut(name, _SUBJECT_NAME_CHARS)}"
    return f"{kind} (document {index + 1})"


def parse_object(doc: Any, index: int = 0) -> TypedObject:
    """Validate one already-parsed document into its typed object."""
    try:
        return _parse(doc, index)
    except ValidationError as exc:
        raise ValidationError(exc.subject, _capped(exc.errors)) from None


def _parse(doc: Any, index: int) -> TypedObject:
    if not isinstance(doc, dict):
        raise ValidationError(
            f"document {index + 1}", [FieldError("", f"{shown(doc)} is not a mapping")]
        )
    subject = _subject(doc, index)
    kind = doc.get("kind")
    if not kind:
        raise ValidationError(subject, [FieldError("kind", "required field is missing")])
    cls = KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        close = difflib.get_close_matches(kind, list(KINDS), n=1) if isinstance(kind, str) else []
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValidationError(
            subject,
            [FieldError("kind", f"{shown(kind)} is not one of {', '.join(KINDS)}{hint}")],
        )
    if "apiVersion" not in doc:
        raise ValidationError(subject, [FieldError("apiVersion", "required field is missing")])
    try:
        return cls.model_validate(doc)
    except pydantic.ValidationError as exc:
        raise ValidationError(subject, field_errors(exc, cls)) from None


def load_documents(text: str, source: str = "<input>") -> list[TypedObject]:
    """Parse multi-document YAML (or JSON) into typed objects; all errors at once.

    The input is bounded as ``yamlsafe.parse_yaml`` states (1 MiB, alias expansion,
    nesting); CPU-heavy for big inputs, so a server calls it off its event loop.
    """
    docs = parse_yaml(text, source)
    objects: list[TypedObject] = []
    errors: list[FieldError] = []
    seen: dict[tuple[str, str, str], int] = {}
    for index, doc in enumerate(docs):
        try:
            obj = _parse(doc, index)
        except ValidationError as exc:
            errors.extend(
                FieldError(f"{exc.subject}: {e.path}".rstrip(": "), e.message) for e in exc.errors
            )
            continue
        if obj.key in seen:
            errors.append(
                FieldError(
                    f"{obj.KIND} {obj.name}",
                    f"defined twice (documents {seen[obj.key] + 1} and {index + 1})",
                )
            )
            continue
        seen[obj.key] = index
        objects.append(obj)
    if errors:
        raise ValidationError(source, _capped(errors))
    return objects


def dump_documents(objects: Iterable[TypedObject], redact: bool = True) -> str:
    """Multi-document YAML, as ``kubectl get -o yaml`` of several objects would print.

    ``redact=False`` keeps Secret values (to hand objects to the control plane, never to
    print them).
    """
    docs = [
        obj.to_dict() if redact else obj.model_dump(by_alias=True, exclude_none=True, mode="json")
        for obj in objects
    ]
    return yaml.safe_dump_all(docs, sort_keys=False, allow_unicode=True)

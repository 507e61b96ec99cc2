"""Shared CLI output helpers: errors to stderr with a non-zero exit, kubectl-style names."""

from __future__ import annotations

from typing import Any, NoReturn

import typer
from rich.console import Console

from tierserve.errors import FieldError, TierserveError, ValidationError
from tierserve.model import TypedObject

err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def print_error(error: TierserveError | str) -> None:
    """Print ``error: ...`` to stderr, every field of a ValidationError on its own line."""
    if isinstance(error, ValidationError):
        for field in error.errors:
            err_console.print(f"error: {field.render(error.subject)}", markup=False)
    else:
        err_console.print(f"error: {error}", markup=False)


def fail(error: TierserveError | str, code: int = 1) -> NoReturn:
    """Print ``error: ...`` (every field of a ValidationError on its own line) and exit."""
    print_error(error)
    raise typer.Exit(code)


KUBECTL_KINDS = {"Replica": "pod"}
"""Kinds kubectl users know by another name: a replica is a ``pod`` (of the core group)."""


def kind_name(kind: str) -> str:
    """kubectl's lower-case name of a kind without its group: ``pod``, ``inferenceservice``
    (the OBJECT column of ``get events``)."""
    return KUBECTL_KINDS.get(kind, kind.lower())


def object_name(kind: str, api_version: str, name: str) -> str:
    """kubectl's ``kind.group/name`` (``-o name``, apply and delete lines): ``pod/x``,
    ``inferenceservice.serving.tierserve.io/x``; core kinds have no group."""
    if kind in KUBECTL_KINDS:
        return f"{KUBECTL_KINDS[kind]}/{name}"
    group = api_version.split("/")[0] if "/" in api_version else ""
    return f"{kind.lower()}.{group}/{name}" if group else f"{kind.lower()}/{name}"


def resource_name(obj: TypedObject) -> str:
    """kubectl's ``kind.group/name`` form, e.g. ``resourcepolicy.scheduling.tierserve.io/x``."""
    return object_name(obj.KIND, obj.api_version, obj.name)


# -- typer's (click's) usage errors, as tierserve's validation errors ------------------------

_PYDANTIC_MESSAGES = {
    "int_parsing": "is not a valid integer",
    "int_from_float": "is not a valid integer",
    "float_parsing": "is not a valid number",
    "bool_parsing": "is not true or false",
}


def _flag(param: Any) -> str:
    """How the user wrote the parameter: its longest flag (``--gpus``), or an argument's
    name in capitals (``RESOURCE``)."""
    opts = [o for o in getattr(param, "opts", None) or [] if o.startswith("-")]
    if opts and getattr(param, "param_type_name", "option") == "option":
        return str(max(opts, key=len))
    return str(getattr(param, "name", None) or "").upper()


def _sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].lower() + text[1:]


def _bad_value(exc: Exception) -> str:
    """What is wrong with the value, from pydantic's error when typer coerced with it."""
    cause = exc.__cause__
    errors = getattr(cause, "errors", None)
    if callable(errors):
        (first, *_) = errors() or [{}]
        value, kind, ctx = first.get("input"), first.get("type", ""), first.get("ctx") or {}
        if kind in _PYDANTIC_MESSAGES:
            return f"{value!r} {_PYDANTIC_MESSAGES[kind]}"
        for bound, words in (("ge", ">="), ("gt", ">"), ("le", "<="), ("lt", "<")):
            if bound in ctx:
                return f"{value} is out of range; expected a value {words} {ctx[bound]}"
        if "msg" in first:
            return f"{value!r}: {_sentence(str(first['msg']))}"
    return _sentence(str(getattr(exc, "message", exc)))


def usage_error(exc: Exception) -> ValidationError:
    """A usage error of typer (click): a bad value, a missing or unknown flag, an unknown
    command, as one ``error: FLAG: what is wrong`` line, as every other validation error
    of the CLI prints (``error: --gpus: 'abc' is not a valid integer``)."""
    kind = type(exc).__name__
    param = getattr(exc, "param", None)
    if kind == "NoSuchOption":
        flag = str(getattr(exc, "option_name", ""))
        close = sorted(getattr(exc, "possibilities", None) or [])
        hint = f"; did you mean {' or '.join(close)}?" if close else ""
        return ValidationError("", [FieldError(flag, f"no such flag{hint}")])
    if kind == "MissingParameter" and param is not None:
        return ValidationError("", [FieldError(_flag(param), "is required")])
    if kind == "BadParameter" and param is not None:
        return ValidationError("", [FieldError(_flag(param), _bad_value(exc))])
    return ValidationError("", [FieldError("", _sentence(str(getattr(exc, "message", exc))))])

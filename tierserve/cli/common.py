"""Options and helpers every control-plane command shares: the state directory, the
namespace, a client of the control plane, label selectors."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import typer

from tierserve.cli.output import fail
from tierserve.errors import FieldError, TierserveError, ValidationError
from tierserve.runtime.local.client import Client
from tierserve.runtime.local.config import ENV_STATE_DIR, state_dir

StateDirOption = typer.Option(
    None,
    "--state-dir",
    envvar=ENV_STATE_DIR,
    help=f"State directory of the control plane (default: ${ENV_STATE_DIR}, then the "
    "user's data directory).",
    show_default=False,
)
NamespaceOption = typer.Option("default", "-n", "--namespace", help="Namespace.")


def root_of(explicit: Path | None) -> Path:
    return state_dir(explicit)


def client_for(explicit: Path | None) -> Client:
    """A client of the control plane of this state directory, or exit with why not."""
    try:
        return Client.from_state_dir(root_of(explicit))
    except TierserveError as exc:
        fail(exc)


# -- label selectors (kubectl's -l/--selector) ------------------------------------------------

SelectorOption = typer.Option(
    None,
    "-l",
    "--selector",
    help="Label selector: key=value, key==value, key!=value, key (has it) or !key, "
    "comma-separated, all must hold (default: everything).",
    show_default=False,
)

_LABEL_NAME = r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
_LABEL_KEY = re.compile(rf"([a-z0-9]([-a-z0-9.]{{0,251}}[a-z0-9])?/)?{_LABEL_NAME}")
_LABEL_VALUE = re.compile(rf"({_LABEL_NAME})?")


@dataclass(frozen=True)
class Requirement:
    """One term of an equality-based selector: ``key`` compared with ``value`` by ``op``
    (``=``, ``!=``), or ``exists`` / ``!exists``."""

    key: str
    op: str
    value: str = ""

    def matches(self, labels: Mapping[str, str]) -> bool:
        if self.op == "=":
            return labels.get(self.key) == self.value
        if self.op == "!=":  # kubectl: an object without the key matches too
            return labels.get(self.key) != self.value
        return (self.key in labels) == (self.op == "exists")


def parse_selector(text: str, flag: str = "-l") -> list[Requirement]:
    """kubectl's equality-based selector syntax; ValidationError naming ``flag`` and every
    bad term. Set-based terms (``in``, ``notin``) are refused, not misread."""
    requirements: list[Requirement] = []
    errors: list[FieldError] = []
    if "(" in text or re.search(r"\s(not)?in\s", text):
        raise ValidationError(
            "",
            [
                FieldError(
                    flag,
                    f"{text!r}: set-based terms (in, notin) are not supported; "
                    "expected key=value, key!=value, key or !key",
                )
            ],
        )
    for term in (t.strip() for t in text.split(",")):
        match = re.fullmatch(r"(!?)\s*([^=!\s]+)\s*(?:(==|=|!=)\s*(\S*))?", term)
        if not match or (match[1] and match[3]):
            errors.append(
                FieldError(
                    flag,
                    f"{term!r} is not a selector term; expected key=value, key!=value, key or !key",
                )
            )
            continue
        negated, key, op, value = match[1], match[2], match[3], match[4] or ""
        if not _LABEL_KEY.fullmatch(key):
            errors.append(FieldError(flag, f"{key!r} is not a valid label key"))
        elif op and not _LABEL_VALUE.fullmatch(value):
            errors.append(FieldError(flag, f"{value!r} is not a valid label value"))
        elif op:
            requirements.append(Requirement(key, "!=" if op == "!=" else "=", value))
        else:
            requirements.append(Requirement(key, "!exists" if negated else "exists"))
    if errors:
        raise ValidationError("", errors)
    return requirements


def selected(labels: Mapping[str, str], requirements: list[Requirement]) -> bool:
    return all(r.matches(labels) for r in requirements)

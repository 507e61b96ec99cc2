"""Kubernetes' name rules: DNS-1123 labels and subdomains, DNS-1035 labels, label values.

Each check returns ``None`` for a good value, else what is wrong (with the value shown
cut short), so that model validators and the API's path/query checks word it the same:

- object names are DNS-1123 subdomains: at most 253 characters of ``[a-z0-9.-]``, each
  dot-separated part starting and ending with a letter or digit;
- namespaces are DNS-1123 labels: at most 63 characters of ``[a-z0-9-]``, no dots
  (a namespace is part of the service's host and of directories in the state dir);
- names that become a Kubernetes Service (``<name>-predictor``) are DNS-1035 labels:
  a DNS-1123 label that starts with a letter;
- label values are at most 63 characters of letters, digits, ``-``, ``_`` and ``.``,
  starting and ending with a letter or digit.
"""

from __future__ import annotations

import re
from typing import Any

from tierserve.model.display import shown

MAX_DNS_LABEL = 63
MAX_SUBDOMAIN = 253
MAX_LABEL_VALUE = 63

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_LABEL = re.compile(rf"^{_LABEL}$")
_DNS1123_SUBDOMAIN = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_DNS1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")


def _too_long(value: str, limit: int) -> str:
    return f"{shown(value)} is {len(value)} characters; at most {limit} are allowed"


def subdomain_problem(value: Any) -> str | None:
    """Why ``value`` is not an object name (a DNS-1123 subdomain), or None."""
    if not isinstance(value, str):
        return f"{shown(value)} is not a string"
    if len(value) > MAX_SUBDOMAIN:
        return _too_long(value, MAX_SUBDOMAIN)
    if not _DNS1123_SUBDOMAIN.match(value):
        return (
            f"{shown(value)} is not a valid name: expected lower-case letters, digits, '-' "
            "or '.', each dot-separated part starting and ending with a letter or digit "
            f"(at most {MAX_SUBDOMAIN} characters)"
        )
    return None


def label_problem(value: Any, what: str = "name") -> str | None:
    """Why ``value`` is not a DNS-1123 label (a namespace, a volume name), or None."""
    if not isinstance(value, str):
        return f"{shown(value)} is not a string"
    if len(value) > MAX_DNS_LABEL:
        return _too_long(value, MAX_DNS_LABEL)
    if not _DNS1123_LABEL.match(value):
        return (
            f"{shown(value)} is not a valid {what}: expected lower-case letters, digits or "
            f"'-', starting and ending with a letter or digit, no dots (at most "
            f"{MAX_DNS_LABEL} characters)"
        )
    return None


def dns1035_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot name a Kubernetes Service (a DNS-1035 label), or None."""
    if not _DNS1035_LABEL.match(value):
        return (
            f"{shown(value)} is not a valid {what}: expected lower-case letters, digits or "
            "'-', starting with a letter and ending with a letter or digit, no dots"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why ``value`` is not a label value, or None."""
    if len(value) > MAX_LABEL_VALUE or not _LABEL_VALUE.match(value):
        length = f" (it is {len(value)})" if len(value) > MAX_LABEL_VALUE else ""
        return (
            f"{shown(value)}: a label value must be at most {MAX_LABEL_VALUE} characters of "
            "letters, digits, '-', '_' or '.', starting and ending with a letter or digit"
            f"{length}"
        )
    return None


__all__ = [
    "MAX_DNS_LABEL",
    "MAX_LABEL_VALUE",
    "MAX_SUBDOMAIN",
    "dns1035_problem",
    "label_problem",
    "label_value_problem",
    "subdomain_problem",
]

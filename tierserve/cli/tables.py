"""kubectl-shaped output, pure and kind-agnostic: ``get``'s tables (plain columns three
spaces apart, headers in capitals), human ages, and ``describe``'s ``Key:  value`` layout
with its indented tables. The per-kind rows and sections are in ``kubectl_layout.py``."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


def render(headers: Sequence[str], rows: Sequence[Sequence[str]], gap: int = 3) -> str:
    """Left-aligned columns, as ``kubectl get`` prints them (``gap`` spaces apart)."""
    widths = column_widths(headers, rows)
    return "\n".join(render_row(widths, row, gap) for row in [headers, *rows])


def age(seconds: float) -> str:
    """kubectl's short human duration: 31s, 5m, 3h, 10d, 7d21h, 2y."""
    s = max(0, int(seconds))
    if s < 120:
        return f"{s}s"
    minutes = s // 60
    if minutes < 10:
        rest = s % 60
        return f"{minutes}m{rest}s" if rest else f"{minutes}m"
    if minutes < 180:
        return f"{minutes}m"
    hours = s // 3600
    if hours < 8:
        rest_m = (s % 3600) // 60
        return f"{hours}h{rest_m}m" if rest_m else f"{hours}h"
    if hours < 48:
        return f"{hours}h"
    days = hours // 24
    if days < 8:
        rest_h = hours % 24
        return f"{days}d{rest_h}h" if rest_h else f"{days}d"
    if days < 365 * 2:
        return f"{days}d"
    return f"{days // 365}y"


def parse_timestamp(text: str | None) -> float | None:
    if not text:
        return None
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def age_of(created: str | float | None, now: float) -> str:
    ts = parse_timestamp(created) if isinstance(created, str) else created
    return "<unknown>" if ts is None else age(now - ts)


def column_widths(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[int]:
    """The widths ``render`` gives each column."""
    return [max(len(str(row[i])) for row in [headers, *rows]) for i in range(len(headers))]


def render_row(widths: Sequence[int], row: Sequence[str], gap: int = 3) -> str:
    """One more row of a table already printed with these widths (``get --watch``); a
    longer cell pushes the rest of its row right, as kubectl's watch lines do."""
    return (" " * gap).join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()


def timestamp(seconds: float | None) -> str:
    """kubectl describe's time (RFC 1123 with a numeric zone), local time; ``<none>``."""
    if seconds is None:
        return "<none>"
    return datetime.fromtimestamp(seconds).astimezone().strftime("%a, %d %b %Y %H:%M:%S %z")


# -- describe: kubectl's "Key:  value" layout --------------------------------------------------

Entry = tuple[str, str] | str
"""A describe line: a run of ``(key, value)`` pairs at one indentation is aligned as
kubectl's tabwriter does (values two spaces past the longest key; a pair with an empty key
continues the run, e.g. a second label); a plain string stands alone and ends a run."""


def _indent(key: str) -> int:
    return len(key) - len(key.lstrip(" "))


def describe_lines(entries: Sequence[Entry]) -> list[str]:
    lines: list[str] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        if run:
            width = max(len(k) for k, _ in run) + 2
            lines.extend(f"{k:<{width}}{v}".rstrip() for k, v in run)
            run.clear()

    for entry in entries:
        if isinstance(entry, str):
            flush()
            lines.append(entry.rstrip())
            continue
        if run and entry[0] and _indent(entry[0]) != _indent(run[0][0]):
            flush()
        run.append(entry)
    flush()
    return lines


def mapping_entries(title: str, values: Mapping[str, str], indent: str = "") -> list[Entry]:
    """``Labels:  a=b`` with one more ``k=v`` a line below it, or ``<none>``."""
    pairs = [f"{k}={v}" for k, v in values.items()] or ["<none>"]
    return [(indent + title, pairs[0]), *[(indent, p) for p in pairs[1:]]]


def field_title(key: str) -> str:
    """kubectl's label for a camelCase field: ``mountPath`` -> ``Mount Path``; other keys
    (``nvidia.com/gpu``, ``MY_ENV``) stay as they are."""
    if not re.fullmatch(r"[a-z][a-zA-Z0-9]*", key):
        return key
    words = re.sub(r"(?<=[a-z0-9])([A-Z])", r" \1", key)
    return words[:1].upper() + words[1:]


FREE_FORM = frozenset(
    {"labels", "annotations", "selector", "nodeSelector", "env", "podLabels",
     "podAnnotations", "requests", "capacity", "allocatable", "matchLabels"}
)  # fmt: skip
"""Fields whose keys are data (label keys, variable names), printed as they are."""


def nested_entries(data: Any, level: int = 1, raw_keys: bool = False) -> list[Entry]:
    """A spec or status the way ``kubectl describe`` prints a custom resource: one
    ``Field Name:  value`` a line, nested mappings and lists indented two more; empty
    fields are left out."""
    indent = "  " * level
    out: list[Entry] = []
    items = data.items() if isinstance(data, Mapping) else enumerate(data)
    for key, value in items:
        if value is None or value == "" or value == [] or value == {}:
            continue
        label = str(key) if raw_keys else field_title(str(key))
        title = f"{indent}{label}:" if isinstance(key, str) else ""
        if isinstance(value, Mapping | list):
            if title:
                out.append(title)
            out.extend(nested_entries(value, level + 1 if title else level, key in FREE_FORM))
        elif title:
            out.append((title, _scalar(value)))
        else:
            out.append(f"{indent}{_scalar(value)}")
    return out


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def event_age(event: Mapping[str, Any], now: float) -> str:
    """``12s``, or ``3m (x4 over 10m)`` for an event seen more than once (kubectl's)."""
    last = age(now - event["lastTimestamp"])
    if event.get("count", 1) > 1:
        return f"{last} (x{event['count']} over {age(now - event['firstTimestamp'])})"
    return last


def describe_events(events: Sequence[Mapping[str, Any]], now: float) -> list[Entry]:
    """``describe``'s Events section: Type, Reason, Age, From, Message, oldest first."""
    if not events:
        return [("Events:", "<none>")]
    rows = [
        [e["type"], e["reason"], event_age(e, now), "tierserve", e["message"]]
        for e in sorted(events, key=lambda e: e["lastTimestamp"])
    ]
    headers = ["Type", "Reason", "Age", "From", "Message"]
    # kubectl's own dashes: four under Age
    return [
        "Events:",
        *indented_table(headers, rows, ["----", "------", "----", "----", "-------"]),
    ]


def indented_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[str]],
    dashes: bool | Sequence[str] = True,
) -> list[str]:
    """A table inside describe: two spaces in, columns two apart, a dashes line under the
    headers (kubectl describe's Events, Non-terminated Pods, Allocated resources; not
    under Conditions); ``dashes`` may give that line's cells."""
    if dashes is True:
        dashes = ["-" * len(h) for h in headers]
    under = [list(dashes)] if dashes else []
    return ["  " + line for line in render(headers, [*under, *rows], gap=2).splitlines()]

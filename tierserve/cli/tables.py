"""kubectl-shaped tables: plain columns separated by three spaces, headers in capitals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime


def render(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Left-aligned columns, as ``kubectl get`` prints them."""
    table = [list(headers), *[list(r) for r in rows]]
    widths = [max(len(str(row[i])) for row in table) for i in range(len(headers))]
    lines = []
    for row in table:
        cells = [str(c).ljust(w) for c, w in zip(row, widths, strict=True)]
        lines.append("   ".join(cells).rstrip())
    return "\n".join(lines)


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

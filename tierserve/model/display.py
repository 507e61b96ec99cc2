"""Values in error messages, cut short without ever formatting the whole value.

``shown(value)`` is ``repr(value)`` cut to about 60 characters. It walks containers
lazily and stops once it has enough, so a value built from a megabyte of YAML, or one
that a few aliases make exponentially large, costs no more to show than a short one.
Every message that quotes user input goes through it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

SHOWN_CHARS = 60
"""How much of a value an error message quotes."""
_MAX_NESTING = 8


def _pieces(value: Any, budget: int, depth: int) -> Iterator[str]:
    if isinstance(value, str | bytes):
        yield repr(value[: budget + 1])
    elif isinstance(value, dict):
        if depth >= _MAX_NESTING:
            yield "{...}"
            return
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ", " if i else ""
            yield from _pieces(key, budget, depth + 1)
            yield ": "
            yield from _pieces(item, budget, depth + 1)
        yield "}"
    elif isinstance(value, list | tuple | set | frozenset):
        opening, closing = ("[", "]") if isinstance(value, list) else ("(", ")")
        if depth >= _MAX_NESTING:
            yield f"{opening}...{closing}"
            return
        yield opening
        for i, item in enumerate(value):
            yield ", " if i else ""
            yield from _pieces(item, budget, depth + 1)
        yield closing
    elif isinstance(value, int):
        try:
            yield repr(value)
        except ValueError:  # past Python's digit limit for str()
            yield f"<int of {value.bit_length()} bits>"
    elif isinstance(value, float) or value is None:
        yield repr(value)
    else:
        yield f"<{type(value).__name__}>"


def shown(value: Any, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)``, or its first ``limit`` characters and ``…`` when longer (a string
    keeps its closing quote: ``'aaaa…'``)."""
    if isinstance(value, str):
        if len(value) <= limit:
            return repr(value)
        text = repr(value[:limit])
        return text[:-1] + "…" + text[-1]
    out: list[str] = []
    used = 0
    for piece in _pieces(value, limit, 0):
        out.append(piece)
        used += len(piece)
        if used > limit:
            return "".join(out)[:limit] + "…"
    return "".join(out)


def cut(text: str, limit: int) -> str:
    """``text``, or its first ``limit`` characters and ``…`` when longer."""
    return text if len(text) <= limit else text[:limit] + "…"


__all__ = ["SHOWN_CHARS", "cut", "shown"]

"""Event-loop choice shared by every server tierserve runs (gateway, control plane, emulator)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from tierserve.errors import FieldError, ValidationError

LOOPS = ("auto", "asyncio", "uvloop")


def loop_factory(kind: str) -> Callable[[], asyncio.AbstractEventLoop] | None:
    """``uvloop`` when asked for (or ``auto`` and installed), else asyncio's default loop.

    uvloop roughly halves the gateway's CPU per request (docs/gateway.md), but it is
    optional: the gateway is correct on either loop.
    """
    if kind not in LOOPS:
        raise ValidationError("gateway", [FieldError("loop", f"{kind!r} is not one of {LOOPS}")])
    if kind == "asyncio":
        return None
    try:
        import uvloop
    except ImportError:
        if kind == "uvloop":
            raise ValidationError(
                "gateway", [FieldError("loop", "uvloop is not installed (pip install uvloop)")]
            ) from None
        return None
    factory: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
    return factory

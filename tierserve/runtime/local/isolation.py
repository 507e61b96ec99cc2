"""One object's failure stays its own: the controllers and the autoscaler run each object
inside :func:`each_object`, which turns an exception into a ``FailedReconcile`` Warning
event on that object (and a logged traceback) and lets the loop go on."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator

from tierserve.model.base import TypedObject
from tierserve.model.display import cut
from tierserve.runtime.local.store import Store

MAX_ERROR_CHARS = 300
"""Characters of an exception's text kept in a FailedReconcile event."""


@contextlib.contextmanager
def each_object(
    store: Store, obj: TypedObject, step: str, now: float, log: logging.Logger
) -> Iterator[None]:
    """Run one object's part of ``step``; a failure is that object's alone."""
    try:
        yield
    except Exception as exc:  # one bad object must not stop the others
        what = f"{obj.KIND} {obj.namespace}/{obj.name}" if obj.NAMESPACED else obj.name
        log.exception("%s: %s could not be reconciled", step, what)
        text = cut(f"{type(exc).__name__}: {exc}", MAX_ERROR_CHARS)
        with contextlib.suppress(Exception):  # the store itself may be what failed
            store.record(obj, "Warning", "FailedReconcile", f"{step}: {text}", now)

"""Holding requests while a service has no Ready replica (scale from zero, cold start).

The request waits for the route table to change (``RouteTable.set_routes`` wakes
it) until a Ready replica appears or ``hold_timeout_s`` passes; then it is sent,
or answered 503 with ``Retry-After``.
"""

from __future__ import annotations

import asyncio
import contextlib

from tierserve.errors import NotFoundError, RetryLater
from tierserve.gateway.table import RouteTable, ServiceRoute


async def wait_until_ready(
    table: RouteTable, key: str, timeout_s: float, retry_after_s: int
) -> ServiceRoute:
    """The service's route once it has a Ready replica.

    Raises ``RetryLater`` after ``timeout_s`` and ``NotFoundError`` when the
    service disappears from the table meanwhile.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        route = table.by_key(key)
        if route is None:
            raise NotFoundError(f"The service `{key}` was removed while the request waited.")
        if route.has_ready():
            return route
        left = deadline - loop.time()
        if left <= 0:
            raise RetryLater(
                f"No replica of `{key}` became Ready within {timeout_s:g} s; retry later.",
                retry_after_s=retry_after_s,
            )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(table.changed(), left)

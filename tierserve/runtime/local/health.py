"""Health checks of a replica: ``GET http://127.0.0.1:<port>/health`` answers 200.

vLLM (and the emulator) answer ``/health`` with 200 once the engine is up. The
probe never follows redirects or proxies and treats every error as "not healthy".
"""

from __future__ import annotations

from typing import Protocol

import aiohttp

from tierserve.runtime.local.ports import LOOPBACK


class HealthProbe(Protocol):
    async def healthy(self, port: int) -> bool:
        """Whether the replica on ``port`` answers its health check now."""
        ...


class HttpHealthProbe:
    """One aiohttp session, opened on first use; ``close()`` it when done."""

    def __init__(self, path: str = "/health", timeout_s: float = 1.0, host: str = LOOPBACK):
        self.path = path
        self.timeout_s = timeout_s
        self.host = host
        self._session: aiohttp.ClientSession | None = None

    async def healthy(self, port: int) -> bool:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                # A fresh connection per check: a restarted replica reuses the port.
                connector=aiohttp.TCPConnector(force_close=True),
                trust_env=False,
            )
        url = f"http://{self.host}:{port}{self.path}"
        try:
            async with self._session.get(url, allow_redirects=False) as response:
                return response.status == 200
        except (aiohttp.ClientError, OSError):  # TimeoutError is an OSError
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

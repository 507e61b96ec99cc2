"""Readiness checks of a replica: ``GET http://127.0.0.1:<port><path>`` answers 200.

vLLM (and the emulator) answer ``/health`` with 200 once the engine is up; llama.cpp's
``llama_cpp.server`` has no ``/health`` (404) but answers ``/v1/models``. A check walks
its paths in order and moves to the next only when a path does not exist (404, 405,
501); any other answer decides. The probe never follows redirects or proxies and
treats every error as "not ready".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import aiohttp

from tierserve.model.probe import DEFAULT_READINESS_PATHS
from tierserve.runtime.local.ports import LOOPBACK

_MISSING = frozenset({404, 405, 501})
"""Answers that say "no such path here": try the next one."""


@dataclass(frozen=True)
class ProbeTarget:
    """What one readiness check asks: the paths in order and the per-request timeout."""

    paths: tuple[str, ...] = DEFAULT_READINESS_PATHS
    timeout_s: float = 1.0


class HealthProbe(Protocol):
    async def healthy(self, port: int, target: ProbeTarget) -> bool:
        """Whether the replica on ``port`` answers its readiness check now."""
        ...


class HttpHealthProbe:
    """One aiohttp session, opened on first use; ``close()`` it when done."""

    def __init__(self, host: str = LOOPBACK):
        self.host = host
        self._session: aiohttp.ClientSession | None = None

    async def healthy(self, port: int, target: ProbeTarget) -> bool:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                # A fresh connection per check: a restarted replica reuses the port.
                connector=aiohttp.TCPConnector(force_close=True),
                trust_env=False,
            )
        timeout = aiohttp.ClientTimeout(total=target.timeout_s)
        for path in target.paths:
            url = f"http://{self.host}:{port}{path}"
            try:
                async with self._session.get(
                    url, allow_redirects=False, timeout=timeout
                ) as response:
                    if response.status in _MISSING:
                        continue
                    return response.status == 200
            except (aiohttp.ClientError, OSError):  # TimeoutError is an OSError
                return False
        return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

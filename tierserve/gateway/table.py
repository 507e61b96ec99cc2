"""The gateway's view of the world: services, their hosts and model names, their replicas.

The control plane (or a ``RouteSource``) replaces the whole table with
``set_routes``; that wakes requests held for a service with no Ready replica.
Lookups are dictionary reads: by ``Host`` (``<name>-<namespace>.example.com``,
port ignored, case-insensitive), else by the request's ``model``.

``set_routes`` must be called on the gateway's event loop (the embedded control
plane runs there); from another thread use ``loop.call_soon_threadsafe``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

HOST_SUFFIX = "example.com"


@dataclass(frozen=True, slots=True)
class Backend:
    """One replica the gateway may send requests to."""

    replica: str
    url: str
    """Base URL of the engine, without ``/v1`` (``http://127.0.0.1:8001``)."""
    unit: int = 0
    """ResourcePolicy unit index; lower units win ties (IDC before cloud)."""
    tier: str = "idc"
    """What metrics call the unit's kind: ``idc`` or ``cloud``."""
    ready: bool = True
    """Only Ready replicas get new requests; Terminating ones finish what they have."""


@dataclass(frozen=True, slots=True)
class ServiceRoute:
    """One InferenceService: where its requests go."""

    namespace: str
    name: str
    host: str = ""
    """Virtual host; empty means ``<name>-<namespace>.example.com``."""
    model_names: tuple[str, ...] = ()
    backends: tuple[Backend, ...] = ()

    def __post_init__(self) -> None:
        if not self.host:
            object.__setattr__(self, "host", f"{self.name}-{self.namespace}.{HOST_SUFFIX}")
        object.__setattr__(self, "model_names", tuple(self.model_names))
        object.__setattr__(self, "backends", tuple(self.backends))

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    def has_ready(self) -> bool:
        return any(b.ready for b in self.backends)

    def backend(self, replica: str) -> Backend | None:
        for b in self.backends:
            if b.replica == replica:
                return b
        return None


def _bare_host(host: str) -> str:
    """``Deepseek-Default.example.com:80`` → ``deepseek-default.example.com``."""
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal: never a service host
        return host
    return host.rsplit(":", 1)[0] if ":" in host else host


@dataclass
class RouteTable:
    """Services by host, by model name and by key; replaced wholesale by ``set_routes``."""

    _routes: tuple[ServiceRoute, ...] = ()
    _by_host: dict[str, ServiceRoute] = field(default_factory=dict)
    _by_model: dict[str, ServiceRoute] = field(default_factory=dict)
    _by_key: dict[str, ServiceRoute] = field(default_factory=dict)
    _waiters: list[asyncio.Future[None]] = field(default_factory=list)

    @classmethod
    def of(cls, routes: list[ServiceRoute] | tuple[ServiceRoute, ...]) -> RouteTable:
        table = cls()
        table.set_routes(routes)
        return table

    def set_routes(self, routes: list[ServiceRoute] | tuple[ServiceRoute, ...]) -> None:
        """Replace every route; wakes held requests so they look again."""
        self._routes = tuple(routes)
        self._by_host = {_bare_host(r.host): r for r in self._routes}
        by_model: dict[str, ServiceRoute] = {}
        for r in self._routes:
            for m in r.model_names:
                by_model.setdefault(m, r)  # first service listed wins a shared name
        self._by_model = by_model
        self._by_key = {r.key: r for r in self._routes}
        waiters, self._waiters = self._waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    @property
    def routes(self) -> tuple[ServiceRoute, ...]:
        return self._routes

    def by_host(self, host: str | None) -> ServiceRoute | None:
        if not host:
            return None
        return self._by_host.get(_bare_host(host))

    def by_model(self, model: str) -> ServiceRoute | None:
        return self._by_model.get(model)

    def by_key(self, key: str) -> ServiceRoute | None:
        return self._by_key.get(key)

    def model_names(self) -> list[str]:
        return list(self._by_model)

    async def changed(self) -> None:
        """Return at the next ``set_routes``."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

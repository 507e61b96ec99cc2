"""Outlier detection: a replica that fails is ejected from its pool for a short back-off.

A failure is a replica fault as ``tierserve.policy.retry`` defines it (a connection
error, a timeout, 502/503/504, a 5xx without a body) -- never an answer such as a 500
that carries a body. The back-off doubles with each consecutive failure of the same
replica (``base_s``, ``2*base_s``, ... up to ``max_s``); an answer resets it. Time is
passed in (``now`` in seconds of any monotonic clock).
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class OutlierDetector:
    base_s: float = 5.0
    max_s: float = 60.0
    _until: dict[str, float] = field(default_factory=dict)
    _consecutive: dict[str, int] = field(default_factory=dict)

    def failed(self, replica: str, now: float) -> float:
        """Record a failure; returns the ejection's length in seconds."""
        n = self._consecutive.get(replica, 0) + 1
        self._consecutive[replica] = n
        backoff = min(self.max_s, self.base_s * float(2 ** min(n - 1, 30)))
        self._until[replica] = now + backoff
        return backoff

    def succeeded(self, replica: str) -> None:
        if replica in self._consecutive:
            del self._consecutive[replica]
            self._until.pop(replica, None)

    def ejected(self, replica: str, now: float) -> bool:
        until = self._until.get(replica)
        return until is not None and now < until

    def forget(self, keep: set[str]) -> None:
        """Drop replicas no longer in any route (bounded memory)."""
        for name in [r for r in self._consecutive if r not in keep]:
            self._consecutive.pop(name, None)
            self._until.pop(name, None)

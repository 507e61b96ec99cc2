"""Signals an autoscaler reads beside a replica's own ``/metrics``, and where they come from.

A :class:`MetricsSource` gives per-replica values at ``now`` (one clock, passed in).
Sources: the gateway (:class:`GatewaySource` over anything shaped like
:class:`GatewayView` — the gateway's in-flight counts and its recent TTFTs), NVML for
real GPUs (the local runtime), the simulator's replicas. The runtime records a source's
values with the scraped ones, under the names below, so a scale metric names them like
any other metric.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Protocol

ReplicaKey = tuple[str, str]
"""(namespace, replica name)."""

INFLIGHT_METRIC = "tierserve:inflight_requests"
"""Gateway-side signal: requests the gateway has in flight to the replica."""
TTFT_P90_METRIC = "tierserve:ttft_p90_seconds"
"""Gateway-side signal: p90 time to first token of the replica's recent requests (seconds);
scaling on it with a target equal to the TTFT SLO keeps p90 under the SLO."""
TTFT_WINDOW_S = 30.0
"""The TTFT p90 signal covers requests of the last 30 s."""


class MetricsSource(Protocol):
    """Per-replica signal values at ``now``."""

    def signals(self, key: ReplicaKey, now: float) -> Mapping[str, float]: ...


class GatewayView(Protocol):
    """What the gateway knows of one replica (keyed by replica name)."""

    def in_flight(self, replica: str) -> int: ...

    def ttft_quantile(
        self, replica: str, q: float, window_s: float, now: float
    ) -> float | None: ...


class GatewaySource:
    """The gateway's signals as a :class:`MetricsSource`.

    ``time_scale``: emulated replicas run ``time_scale`` times faster than the wall clock
    (demos, tests); the TTFT signal is converted to emulated seconds over an emulated
    30 s window, like the emulator's own metrics, so one target works at any scale.
    """

    def __init__(self, view: GatewayView, time_scale: float = 1.0) -> None:
        self.view = view
        self.time_scale = time_scale

    def signals(self, key: ReplicaKey, now: float) -> Mapping[str, float]:
        name = key[1]
        out = {INFLIGHT_METRIC: float(self.view.in_flight(name))}
        scale = self.time_scale
        p90 = self.view.ttft_quantile(name, 0.9, TTFT_WINDOW_S * scale, now)
        if p90 is not None:
            out[TTFT_P90_METRIC] = p90 / scale
        return out


def nearest_rank(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile of sorted, non-empty ``ordered`` by the nearest-rank method
    (what the gateway's TTFT p90 signal uses)."""
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

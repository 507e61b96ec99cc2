"""Gateway signals through the MetricsSource protocol, with one clock passed in."""

from __future__ import annotations

import pytest

from tierserve.policy.signals import INFLIGHT_METRIC, TTFT_P90_METRIC, TTFT_WINDOW_S, GatewaySource


class View:
    def __init__(self) -> None:
        self.asked: list[tuple[str, float, float, float]] = []

    def in_flight(self, replica: str) -> int:
        return {"r1": 3}.get(replica, 0)

    def ttft_quantile(self, replica: str, q: float, window_s: float, now: float) -> float | None:
        self.asked.append((replica, q, window_s, now))
        return 0.5 if replica == "r1" else None


def test_gateway_source_keys_by_replica_and_passes_now() -> None:
    view = View()
    source = GatewaySource(view)
    assert source.signals(("default", "r1"), 42.0) == {INFLIGHT_METRIC: 3.0, TTFT_P90_METRIC: 0.5}
    assert source.signals(("default", "r2"), 43.0) == {INFLIGHT_METRIC: 0.0}
    assert view.asked[0] == ("r1", 0.9, TTFT_WINDOW_S, 42.0)


def test_time_scale_converts_to_emulated_seconds() -> None:
    view = View()
    source = GatewaySource(view, time_scale=0.1)
    out = source.signals(("default", "r1"), 1.0)
    assert out[TTFT_P90_METRIC] == pytest.approx(5.0)
    assert view.asked[0][2] == pytest.approx(TTFT_WINDOW_S * 0.1)

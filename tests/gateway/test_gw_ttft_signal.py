"""The gateway-side TTFT signal the autoscaler can scale on."""

from __future__ import annotations

import pytest

from tierserve.gateway.balancer import Balancer
from tierserve.gateway.metrics import GatewayMetrics
from tierserve.gateway.table import RouteTable
from tierserve.policy.outlier import OutlierDetector
from tierserve.policy.routing import routing_policy


class Clock:
    t = 100.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def metrics() -> tuple[GatewayMetrics, Clock]:
    clock = Clock()
    balancer = Balancer(routing_policy("least_outstanding"), OutlierDetector(5, 60), clock)
    return GatewayMetrics(RouteTable(), balancer, clock), clock


def test_ttft_p90_per_replica_over_a_window(metrics: tuple[GatewayMetrics, Clock]) -> None:
    m, clock = metrics
    for i in range(1, 11):  # TTFTs 0.1 .. 1.0 s on replica a
        m.finished("default", "svc", "idc", 200, i / 10, 2.0, replica="a")
    m.finished("default", "svc", "cloud", 200, 5.0, 6.0, replica="b")
    m.finished("default", "svc", "idc", 503, 9.0, 9.0, replica="a")  # errors don't count
    # nearest rank: ceil(0.9 * 10) = 9th of 10 sorted values = 0.9 s
    assert m.ttft_quantile("a", 0.9, window_s=30) == pytest.approx(0.9)
    assert m.ttft_quantile("b", 0.9, window_s=30) == pytest.approx(5.0)
    assert m.ttft_quantile("c", 0.9, window_s=30) is None
    clock.t += 31  # everything older than the window is ignored
    assert m.ttft_quantile("a", 0.9, window_s=30) is None

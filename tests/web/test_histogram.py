"""Quantiles and SLO shares from histogram buckets, as Prometheus' histogram_quantile."""

from __future__ import annotations

import math

import pytest

from tierserve.web import histogram

INF = math.inf
# 10 requests: 2 at most 0.1 s, 8 at most 0.5 s, 10 at most 1 s.
B = {0.1: 2.0, 0.5: 8.0, 1.0: 10.0, INF: 10.0}


@pytest.mark.parametrize(
    ("q", "expected"),
    [
        (0.1, 0.05),  # rank 1 of 2 in (0, 0.1]: 0.1 * 1/2
        (0.5, 0.3),  # rank 5: 0.1 + 0.4 * (5 - 2) / (8 - 2)
        (0.9, 0.75),  # rank 9: 0.5 + 0.5 * (9 - 8) / 2
        (1.0, 1.0),
    ],
)
def test_quantile(q: float, expected: float) -> None:
    value = histogram.quantile(B, q)
    assert value == pytest.approx(expected, rel=1e-6)


def test_a_quantile_past_the_last_finite_bound_is_that_bound() -> None:
    assert histogram.quantile({0.1: 1.0, INF: 4.0}, 0.9) == 0.1


def test_empty_histograms_have_no_quantile_nor_share() -> None:
    assert histogram.quantile({}, 0.5) is None
    assert histogram.quantile({0.1: 0.0, INF: 0.0}, 0.5) is None
    assert histogram.share_at_most({}, 1.0) is None


@pytest.mark.parametrize(
    ("limit", "expected"),
    [
        (0.1, 0.2),
        (0.3, 0.5),  # (2 + 6 * (0.2 / 0.4)) / 10
        (1.0, 1.0),
        (5.0, 1.0),  # past the last finite bound: those in +Inf are over it
    ],
)
def test_share_at_most(limit: float, expected: float) -> None:
    assert histogram.share_at_most(B, limit) == pytest.approx(expected)


def test_share_with_requests_in_the_inf_bucket() -> None:
    assert histogram.share_at_most({1.0: 3.0, INF: 4.0}, 2.0) == 0.75


def test_delta_and_add() -> None:
    before = {0.1: 1.0, INF: 2.0}
    now = {0.1: 3.0, INF: 5.0}
    assert histogram.delta(now, before) == {0.1: 2.0, INF: 3.0}
    assert histogram.delta(now, None) == now
    # A counter that went down: the engine restarted, all it counts now is new.
    assert histogram.delta({0.1: 1.0, INF: 1.0}, now) == {0.1: 1.0, INF: 1.0}
    assert histogram.add([before, now]) == {0.1: 4.0, INF: 7.0}

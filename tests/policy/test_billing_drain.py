"""Billing intervals and the drain decision, as pure functions."""

from __future__ import annotations

import pytest
from builders import VK, idc, pod, virtual

from tierserve.policy.billing import bill
from tierserve.policy.drain import stop_due

IDC = idc().build()
VIRT = virtual().build()


def test_bill_charges_the_interval_since_last_billed_per_gpu_at_the_price() -> None:
    r = pod("a", gpu=2).on(VK, 1).build().with_status(scheduled_s=100.0)
    charge = bill(r, VIRT, 160.0)
    assert charge is not None
    assert charge.gpu_seconds == pytest.approx(120.0)  # 60 s x 2 GPUs
    price = VIRT.spec.virtual.price_per_gpu_hour  # type: ignore[union-attr]
    assert charge.cloud_cost == pytest.approx(120.0 / 3600 * price)
    assert charge.cloud and charge.until_s == 160.0
    assert dict(charge.labels) == {
        "namespace": "default",
        "service": "deepseek",
        "tier": "cloud",
        "node": VK,
    }
    again = bill(r.with_status(billed_until_s=160.0), VIRT, 170.0)
    assert again is not None and again.gpu_seconds == pytest.approx(20.0)


def test_idc_is_billed_gpu_seconds_without_cost_and_nothing_twice() -> None:
    r = pod("a").on("idc001").build().with_status(scheduled_s=0.0, billed_until_s=50.0)
    charge = bill(r, IDC, 80.0)
    assert charge is not None and not charge.cloud and charge.cloud_cost == 0.0
    assert charge.gpu_seconds == pytest.approx(30.0)
    assert bill(r, IDC, 50.0) is None  # nothing new since
    assert bill(pod("b").build(), IDC, 80.0) is None  # never scheduled
    assert bill(r, None, 80.0) is None  # node unknown


def test_stop_due_when_drained_or_grace_over() -> None:
    going = pod("a").on("idc001", 0, "Terminating").build().with_status(terminating_s=100.0)
    assert stop_due(going, 0, 100.0, 30.0)
    assert not stop_due(going, 2, 129.9, 30.0)
    assert stop_due(going, 2, 130.0, 30.0)
    assert not stop_due(pod("b").on("idc001").build(), 0, 100.0, 30.0)  # not terminating


def test_billing_from_time_zero() -> None:
    r = pod("a").on("idc001").build().with_status(scheduled_s=0.0, billed_until_s=0.0)
    charge = bill(r, IDC, 10.0)
    assert charge is not None and charge.gpu_seconds == pytest.approx(10.0)

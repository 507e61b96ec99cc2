"""The dashboard's history ring: order, overwrite, missing values, and memory that stays
bounded however long it runs."""

from __future__ import annotations

import math
import tracemalloc

import pytest

from tierserve.web.history import (
    FIELDS,
    POINT_BYTES,
    History,
    Point,
    Series,
    bytes_per_service_hour,
)


def test_a_point_is_its_fields_under_the_json_names() -> None:
    d = Point(t=10.0, idc_ready=1, ttft_p50=None, usd_per_m_tok_cloud=2.5).to_dict()
    assert list(d) == list(FIELDS)
    assert d["t"] == 10.0 and d["idcReady"] == 1 and d["usdPerMTokCloud"] == 2.5
    assert d["ttftP50"] is None  # not known yet: null, never NaN (JSON has no NaN)


def test_the_series_keeps_the_newest_points_oldest_first() -> None:
    s = Series(capacity=3)
    for t in range(5):  # 0 and 1 are overwritten by 3 and 4
        s.append(Point(t=float(t), cloud_ready=t, request_rate=None if t == 3 else t / 2))
    cols = s.columns()
    assert cols["t"] == [2.0, 3.0, 4.0]
    assert cols["cloudReady"] == [2.0, 3.0, 4.0]
    assert cols["requestRate"] == [1.0, None, 2.0]
    assert len(s) == 3
    last = s.last()
    assert last is not None and last.t == 4.0 and last.cloud_ready == 4
    assert isinstance(last.cloud_ready, int)


def test_the_newest_points_only() -> None:
    s = Series(capacity=4)
    for t in range(6):
        s.append(Point(t=float(t)))
    assert s.columns(2)["t"] == [4.0, 5.0]
    assert s.columns(0)["t"] == []
    assert s.columns(10)["t"] == [2.0, 3.0, 4.0, 5.0]


def test_an_empty_series_has_no_last_point_and_empty_columns() -> None:
    s = Series(capacity=4)
    assert s.last() is None
    assert all(v == [] for v in s.columns().values())


@pytest.mark.parametrize("capacity", [0, -1])
def test_a_series_needs_room_for_a_point(capacity: int) -> None:
    with pytest.raises(ValueError, match="capacity"):
        Series(capacity)


def test_bytes_per_service_hour() -> None:
    # 19 fields x 8 bytes = 152 bytes a point; every 5 s: 720 points an hour.
    assert POINT_BYTES == len(FIELDS) * 8 == 152
    assert bytes_per_service_hour(5.0) == 720 * 152 == 109_440
    assert bytes_per_service_hour(1.0) == 3600 * 152


def test_memory_is_fixed_at_creation_and_never_grows() -> None:
    capacity = 1440
    history = History(capacity=capacity, events_capacity=100)
    history.append("default/a", Point(t=0.0))
    history.append("default/b", Point(t=0.0))
    assert history.nbytes() == 2 * capacity * POINT_BYTES
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for i in range(10 * capacity):  # ten times round the ring
            p = Point(t=float(i), idc_ready=1, cloud_ready=i % 3, ttft_p50=0.1, cloud_cost_total=i)
            history.append("default/a", p)
            history.append("default/b", p)
            history.add_events([{"id": str(i), "reason": "SuccessfulRescale"}])
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert history.nbytes() == 2 * capacity * POINT_BYTES
    assert len(history.series["default/a"]) == capacity
    assert len(history.events) == 100
    # What is left allocated after 28,800 appends is the 100 events kept, not the points.
    assert after - before < 100 * 1024, after - before
    assert history.series["default/a"].columns()["t"][0] == 9 * capacity


def test_a_repeated_event_replaces_its_entry() -> None:
    history = History(capacity=4, events_capacity=2)
    history.add_events([{"id": "a", "count": 1}, {"id": "b", "count": 1}])
    history.add_events([{"id": "a", "count": 2}])
    assert history.events == [{"id": "b", "count": 1}, {"id": "a", "count": 2}]
    history.add_events([{"id": "c", "count": 1}])
    assert [e["id"] for e in history.events] == ["a", "c"]


def test_gone_services_are_forgotten() -> None:
    history = History(capacity=4)
    history.append("default/a", Point(t=0.0))
    history.append("default/b", Point(t=0.0))
    history.keep_only(["default/b"])
    assert list(history.series) == ["default/b"]


def test_nan_in_is_none_out() -> None:
    s = Series(2)
    s.append(Point(t=1.0, tpot_p90=math.nan))
    assert s.columns()["tpotP90"] == [None]

"""The dashboard's history: a fixed-size ring of points per service, and of events.

Each service gets a :class:`Series` of ``capacity`` points allocated once, one
``array('d')`` column per field of :data:`FIELDS` (8 bytes a value, NaN for "no value"),
so a service's history never takes more than ``capacity * len(FIELDS) * 8`` bytes
however long the control plane runs: the oldest point is overwritten by the newest.
With the default 1440 points sampled every autoscaler period (5 s) that is 2 hours of
history in 1440 * 19 * 8 = 218,880 bytes a service, or 109,440 bytes per service-hour
(:func:`bytes_per_service_hour`). Events are kept the same way, the newest
``events_capacity`` of them.

Pure data: no clock, no I/O; the control plane appends what it sampled at its ``now``.
"""

from __future__ import annotations

import math
from array import array
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

FIELDS: tuple[str, ...] = (
    "t",
    "idcAllocated",
    "idcReady",
    "cloudAllocated",
    "cloudReady",
    "pending",
    "coldStarts",
    "requestRate",
    "ttftP50",
    "ttftP90",
    "tpotP50",
    "tpotP90",
    "attainmentTtft",
    "attainmentTpot",
    "cloudCostPerHour",
    "cloudCostTotal",
    "usdPerMTokIdc",
    "usdPerMTokCloud",
    "outputTokensRate",
)
"""One point's fields, in the JSON's names. ``t``: seconds since the epoch; replica
counts per tier (allocated = scheduled and not terminating, Ready = serving);
``coldStarts``: cloud replicas scheduled since the previous point; ``requestRate``:
requests/s routed by the gateway; TTFT/TPOT quantiles in seconds over the recent window
(the engines' histograms, in their units); attainment: the share of the window's
requests within the SLO (0..1); cloud cost in the cluster's currency (per hour now,
and billed so far); $/1M output tokens per tier over the window; output tokens/s."""


def _attr(name: str) -> str:
    """A JSON field's attribute on :class:`Point` (``ttftP50`` -> ``ttft_p50``)."""
    return "".join(f"_{c.lower()}" if c.isupper() else c for c in name)


ATTRS: tuple[str, ...] = tuple(_attr(name) for name in FIELDS)
COUNTS = frozenset({"idcAllocated", "idcReady", "cloudAllocated", "cloudReady", "pending",
                    "coldStarts"})  # fmt: skip
POINT_BYTES = len(FIELDS) * array("d").itemsize
DEFAULT_POINTS = 1440
"""2 hours at the default 5 s autoscaler period."""
DEFAULT_EVENTS = 500


def bytes_per_service_hour(interval_s: float) -> int:
    """What one hour of one service's history takes when sampled every ``interval_s``."""
    return round(3600 / interval_s * POINT_BYTES)


@dataclass(frozen=True)
class Point:
    """One sample of one service; None: not known at that time (e.g. no request yet)."""

    t: float
    idc_allocated: int = 0
    idc_ready: int = 0
    cloud_allocated: int = 0
    cloud_ready: int = 0
    pending: int = 0
    cold_starts: int = 0
    request_rate: float | None = None
    ttft_p50: float | None = None
    ttft_p90: float | None = None
    tpot_p50: float | None = None
    tpot_p90: float | None = None
    attainment_ttft: float | None = None
    attainment_tpot: float | None = None
    cloud_cost_per_hour: float = 0.0
    cloud_cost_total: float = 0.0
    usd_per_m_tok_idc: float | None = None
    usd_per_m_tok_cloud: float | None = None
    output_tokens_rate: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        """The point under the JSON's names (:data:`FIELDS`)."""
        return {name: _clean(getattr(self, attr)) for name, attr in zip(FIELDS, ATTRS, strict=True)}


assert tuple(f.name for f in fields(Point)) == ATTRS


def _clean(value: float | int | None) -> float | int | None:
    """JSON has no NaN: a missing value is null."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    return value


class Series:
    """The newest ``capacity`` points of one service, in preallocated columns."""

    def __init__(self, capacity: int = DEFAULT_POINTS) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: {capacity} is not a whole number >= 1")
        self.capacity = capacity
        self._columns = {name: array("d", [math.nan]) * capacity for name in FIELDS}
        self._next = 0
        self._len = 0

    def __len__(self) -> int:
        return self._len

    def append(self, point: Point) -> None:
        i = self._next
        for name, attr in zip(FIELDS, ATTRS, strict=True):
            value = getattr(point, attr)
            self._columns[name][i] = math.nan if value is None else float(value)
        self._next = (i + 1) % self.capacity
        self._len = min(self._len + 1, self.capacity)

    def _order(self) -> Iterable[int]:
        start = (self._next - self._len) % self.capacity
        return ((start + k) % self.capacity for k in range(self._len))

    def columns(self, last: int | None = None) -> dict[str, list[float | None]]:
        """Every field as a list in time order (oldest first), missing values as None:
        the plain series a chart takes; only the newest ``last`` points when given."""
        order = list(self._order())
        if last is not None:
            order = order[len(order) - min(last, len(order)) :]
        out: dict[str, list[float | None]] = {}
        for name in FIELDS:
            column = self._columns[name]
            values: list[float | None] = []
            for i in order:
                v = column[i]
                values.append(None if math.isnan(v) else v)
            out[name] = values
        return out

    def last(self) -> Point | None:
        if self._len == 0:
            return None
        i = (self._next - 1) % self.capacity
        values: dict[str, Any] = {}
        for name, attr in zip(FIELDS, ATTRS, strict=True):
            v = self._columns[name][i]
            if math.isnan(v):
                values[attr] = None
            else:
                values[attr] = int(v) if name in COUNTS else v
        return Point(**values)

    def nbytes(self) -> int:
        """Bytes the columns take (fixed at creation)."""
        return sum(c.itemsize * len(c) for c in self._columns.values())


@dataclass
class History:
    """Every service's :class:`Series` and the newest events, bounded."""

    capacity: int = DEFAULT_POINTS
    events_capacity: int = DEFAULT_EVENTS
    series: dict[str, Series] = field(default_factory=dict)
    _events: OrderedDict[str, Mapping[str, Any]] = field(init=False)

    def __post_init__(self) -> None:
        if self.capacity < 1:
            raise ValueError(f"capacity: {self.capacity} is not a whole number >= 1")
        self._events = OrderedDict()

    def append(self, service: str, point: Point) -> None:
        """Add ``service``'s newest point (``namespace/name``)."""
        s = self.series.get(service)
        if s is None:
            s = self.series[service] = Series(self.capacity)
        s.append(point)

    def keep_only(self, services: Iterable[str]) -> None:
        """Forget the history of services that are gone."""
        live = set(services)
        for gone in set(self.series) - live:
            del self.series[gone]

    def add_events(self, events: Iterable[Mapping[str, Any]]) -> None:
        """Keep ``events`` (each with an ``id``): a known id is replaced and moves to the
        end (a repeat), and past ``events_capacity`` the oldest go."""
        for e in events:
            key = str(e["id"])
            self._events.pop(key, None)
            self._events[key] = e
        while len(self._events) > self.events_capacity:
            self._events.popitem(last=False)

    @property
    def events(self) -> list[Mapping[str, Any]]:
        """The kept events, oldest first."""
        return list(self._events.values())

    def nbytes(self) -> int:
        return sum(s.nbytes() for s in self.series.values())

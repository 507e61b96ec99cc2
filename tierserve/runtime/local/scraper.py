"""The metrics pipeline: scrape every Ready replica's ``/metrics`` and keep a short history.

Each scrape parses the Prometheus text with ``prometheus_client``'s parser and keeps, per
replica, one number per metric name: the sum of its samples (a replica exports one series
per gauge, e.g. ``DCGM_CUSTOM_PROCESS_SM_UTIL`` or ``vllm:num_requests_waiting``; several
label sets of one name add up). Histogram/summary buckets are not scale metrics and are
skipped (their ``_sum``/``_count`` are kept), except the newest buckets of the
histograms in ``BUCKETS`` (TTFT and TPOT: the dashboard's quantiles), kept apart, one
set per replica. Per-replica signals a replica does not
export (the gateway's, NVML's for real GPUs) come from ``policy.signals.MetricsSource``
objects and are recorded the same way, at the same ``now``.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import aiohttp

from tierserve.policy.signals import MetricsSource
from tierserve.runtime.promtext import HistogramBuckets, parse_metrics

log = logging.getLogger("tierserve.metrics")

Key = tuple[str, str]
"""(namespace, replica name)."""


@dataclass(frozen=True)
class Sample:
    at_s: float
    values: Mapping[str, float]


class MetricsScraper:
    """Scrapes replicas concurrently; ``latest`` answers what the autoscaler asks."""

    def __init__(self, history: int = 120, timeout_s: float = 2.0, host: str = "127.0.0.1") -> None:
        self.history = history
        self.timeout_s = timeout_s
        self.host = host
        self._samples: dict[Key, deque[Sample]] = {}
        self._buckets: dict[Key, HistogramBuckets] = {}
        self._session: aiohttp.ClientSession | None = None

    async def _get(self, port: int) -> str | None:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s), trust_env=False
            )
        try:
            async with self._session.get(f"http://{self.host}:{port}/metrics") as resp:
                if resp.status != 200:
                    return None
                return await resp.text()
        except (aiohttp.ClientError, TimeoutError, OSError):
            return None

    async def scrape(
        self,
        targets: Iterable[tuple[Key, int]],
        now_s: float,
        sources: Sequence[MetricsSource] = (),
    ) -> None:
        """One scrape of every (replica, port); replicas no longer listed are forgotten."""
        targets = list(targets)
        texts = await asyncio.gather(*(self._get(port) for _, port in targets))
        live = set()
        for (key, _), text in zip(targets, texts, strict=True):
            live.add(key)
            values: dict[str, float] = {}
            if text is not None:
                buckets: HistogramBuckets = {}
                try:
                    values = parse_metrics(text, buckets)
                    self._buckets[key] = buckets
                except ValueError as exc:
                    log.warning("bad /metrics from %s/%s: %s", *key, exc)
            for source in sources:
                values.update(source.signals(key, now_s))
            if values:
                self.record(key, now_s, values)
        for gone in set(self._samples) - live:
            del self._samples[gone]
        for gone in set(self._buckets) - live:
            del self._buckets[gone]

    def record(self, key: Key, now_s: float, values: Mapping[str, float]) -> None:
        self._samples.setdefault(key, deque(maxlen=self.history)).append(
            Sample(now_s, dict(values))
        )

    def latest(self, key: Key, metric: str, now_s: float, max_age_s: float) -> float | None:
        """The newest value of ``metric`` for the replica, unless older than ``max_age_s``."""
        samples = self._samples.get(key)
        if not samples or now_s - samples[-1].at_s > max_age_s:
            return None
        return samples[-1].values.get(metric)

    def fresh(self, key: Key, now_s: float, max_age_s: float) -> dict[str, float]:
        """Every value of the replica's newest sample, or nothing when it is older than
        ``max_age_s``."""
        samples = self._samples.get(key)
        if not samples or now_s - samples[-1].at_s > max_age_s:
            return {}
        return dict(samples[-1].values)

    def buckets(self, key: Key) -> HistogramBuckets:
        """The replica's newest buckets of the ``BUCKETS`` histograms (empty: none yet)."""
        return self._buckets.get(key, {})

    def series(self, key: Key, metric: str) -> list[tuple[float, float]]:
        """The kept history of one metric of one replica: (time, value) pairs."""
        return [
            (s.at_s, s.values[metric]) for s in self._samples.get(key, ()) if metric in s.values
        ]

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

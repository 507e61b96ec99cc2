"""Prometheus text as numbers: what both bodies read from an engine's ``/metrics``.

:func:`parse_metrics` keeps one number per metric name, the sum of its samples (a
replica exports one series per gauge, e.g. ``DCGM_CUSTOM_PROCESS_SM_UTIL`` or
``vllm:num_requests_waiting``; several label sets of one name add up). Histogram and
summary buckets are not scale metrics and are skipped (their ``_sum``/``_count`` are
kept), except the buckets of the histograms in ``BUCKETS`` when asked for. The local
runtime's scraper and tierserve's Kubernetes autoscaler both parse with it.
"""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

BUCKETS = ("vllm:time_to_first_token_seconds", "vllm:request_time_per_output_token_seconds")
"""Histograms whose newest buckets are kept per replica (``MetricsScraper.buckets``)."""

HistogramBuckets = dict[str, dict[float, float]]
"""Histogram name -> upper bound (``le``) -> cumulative count."""


def parse_metrics(text: str, buckets: HistogramBuckets | None = None) -> dict[str, float]:
    """Metric name → sum of its plain samples (counters, gauges, untyped); of a histogram
    or summary only its ``_sum`` and ``_count`` (per-request means: the tier planner's
    token mix), never its buckets — but those of ``BUCKETS`` go to ``buckets`` when given
    (summed over label sets)."""
    values: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        histogram = family.type in ("histogram", "summary", "gaugehistogram")
        kept = buckets is not None and family.name in BUCKETS
        for sample in family.samples:
            if kept and buckets is not None and sample.name.endswith("_bucket"):
                le = float(sample.labels.get("le", "inf"))
                per_le = buckets.setdefault(family.name, {})
                per_le[le] = per_le.get(le, 0.0) + float(sample.value)
                continue
            if histogram and not sample.name.endswith(("_sum", "_count")):
                continue
            if sample.name.endswith("_created"):
                continue
            values[sample.name] = values.get(sample.name, 0.0) + float(sample.value)
    return values


__all__ = ["BUCKETS", "HistogramBuckets", "parse_metrics"]

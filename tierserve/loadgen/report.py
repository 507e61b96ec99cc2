"""A load test's figures, built purely from the request results and the run's wall time.

``build_report`` is what both outputs use: ``render.text`` (hey's layout plus an LLM section)
and ``Report.as_dict`` (``--json``).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tierserve.loadgen import stats
from tierserve.loadgen.result import RequestResult
from tierserve.loadgen.stats import Bucket, Goodput, Percentile, Slo, Summary

PHASES = (
    ("DNS+dialup", "conn_s"),
    ("DNS-lookup", "dns_s"),
    ("req write", "req_write_s"),
    ("resp wait", "resp_wait_s"),
    ("resp read", "resp_read_s"),
)


@dataclass(frozen=True)
class Phase:
    """hey's "Details" row: average, fastest and slowest of one phase, in seconds."""

    name: str
    average_s: float
    fastest_s: float
    slowest_s: float


@dataclass(frozen=True)
class LlmFigures:
    """Token counts and latencies of the 2xx responses that reported or streamed tokens."""

    requests: int
    prompt_tokens: int
    completion_tokens: int
    output_tokens_per_s: float
    total_tokens_per_s: float
    ttft: Summary | None
    tpot: Summary | None
    itl: Summary | None
    e2e: Summary | None
    slo: Slo
    goodput: Goodput | None


@dataclass(frozen=True)
class Report:
    """Every figure ``tierserve bench`` prints. Latencies are of responses (any status),
    as hey's are; requests that got no response are in ``errors``."""

    total_s: float
    responses: int
    requests: int
    slowest_s: float
    fastest_s: float
    average_s: float
    requests_per_s: float
    total_bytes: int
    bytes_per_request: int
    histogram: list[Bucket]
    latency_distribution: list[Percentile]
    details: list[Phase]
    status_codes: dict[int, int]
    errors: dict[str, int]
    llm: LlmFigures
    interrupted: bool = False

    def as_dict(self) -> dict[str, Any]:
        llm = self.llm
        gp = llm.goodput

        def summary(s: Summary | None) -> dict[str, float | int] | None:
            return s.as_dict() if s is not None else None

        return {
            "summary": {
                "total_s": self.total_s,
                "requests": self.requests,
                "responses": self.responses,
                "slowest_s": self.slowest_s,
                "fastest_s": self.fastest_s,
                "average_s": self.average_s,
                "requests_per_s": self.requests_per_s,
                "total_bytes": self.total_bytes,
                "bytes_per_request": self.bytes_per_request,
                "interrupted": self.interrupted,
            },
            "histogram": [
                {"mark_s": b.mark_s, "count": b.count, "frequency": b.frequency}
                for b in self.histogram
            ],
            "latency_distribution": [
                {"percentage": p.percentage, "latency_s": p.latency_s}
                for p in self.latency_distribution
            ],
            "details": {
                p.name: {
                    "average_s": p.average_s,
                    "fastest_s": p.fastest_s,
                    "slowest_s": p.slowest_s,
                }
                for p in self.details
            },
            "status_codes": {str(k): v for k, v in sorted(self.status_codes.items())},
            "errors": dict(self.errors),
            "llm": {
                "requests": llm.requests,
                "prompt_tokens": llm.prompt_tokens,
                "completion_tokens": llm.completion_tokens,
                "output_tokens_per_s": llm.output_tokens_per_s,
                "total_tokens_per_s": llm.total_tokens_per_s,
                "ttft_s": summary(llm.ttft),
                "tpot_s": summary(llm.tpot),
                "itl_s": summary(llm.itl),
                "e2e_s": summary(llm.e2e),
                "slo": llm.slo.as_dict(),
                "goodput": None
                if gp is None
                else {
                    "good_requests": gp.good,
                    "requests": gp.total,
                    "requests_per_s": gp.requests_per_s,
                    "attainment_pct": gp.attainment_pct,
                },
            },
        }


def _phase(name: str, attr: str, results: Sequence[RequestResult]) -> Phase:
    values = [float(getattr(r, attr)) for r in results]
    return Phase(name, math.fsum(values) / len(values), min(values), max(values))


def build_llm(results: Sequence[RequestResult], total_s: float, slo: Slo) -> LlmFigures:
    """LLM figures over 2xx responses with a token count (``usage`` or streamed chunks)."""
    llm = [r for r in results if r.ok and r.output_tokens is not None]
    completion = sum(r.output_tokens or 0 for r in llm)
    prompt = sum(r.prompt_tokens or 0 for r in llm)
    ttfts = [r.ttft_s for r in llm if r.ttft_s is not None]
    tpots: list[float] = []
    good = 0
    for r in llm:
        tpot = None
        if r.ttft_s is not None:
            tpot = stats.tpot_s(r.duration_s, r.ttft_s, r.output_tokens or 0)
        if tpot is not None:
            tpots.append(tpot)
        if not slo.empty and stats.meets_slo(slo, r.ttft_s, tpot, r.duration_s):
            good += 1
    per_s = (lambda x: x / total_s) if total_s > 0 else (lambda x: 0.0)
    return LlmFigures(
        requests=len(llm),
        prompt_tokens=prompt,
        completion_tokens=completion,
        output_tokens_per_s=per_s(completion),
        total_tokens_per_s=per_s(completion + prompt),
        ttft=stats.summarize(ttfts),
        tpot=stats.summarize(tpots),
        itl=stats.summarize([gap for r in llm for gap in r.itl_s]),
        e2e=stats.summarize([r.duration_s for r in llm]),
        slo=slo,
        goodput=None if slo.empty else stats.goodput(good, len(llm), total_s),
    )


def build_report(
    results: Sequence[RequestResult], total_s: float, slo: Slo, interrupted: bool = False
) -> Report:
    responses = [r for r in results if r.error is None]
    lats = [r.duration_s for r in responses]
    total_bytes = sum(r.size_bytes for r in responses)
    return Report(
        total_s=total_s,
        responses=len(responses),
        requests=len(results),
        slowest_s=max(lats, default=0.0),
        fastest_s=min(lats, default=0.0),
        average_s=math.fsum(lats) / len(lats) if lats else 0.0,
        requests_per_s=len(results) / total_s if total_s > 0 else 0.0,
        total_bytes=total_bytes,
        bytes_per_request=total_bytes // len(responses) if responses else 0,
        histogram=stats.hey_histogram(lats),
        latency_distribution=stats.hey_latency_distribution(lats),
        details=[_phase(n, a, responses) for n, a in PHASES] if responses else [],
        status_codes=dict(sorted(Counter(r.status for r in responses if r.status).items())),
        errors=dict(Counter(r.error for r in results if r.error is not None).most_common()),
        llm=build_llm(results, total_s, slo),
        interrupted=interrupted,
    )

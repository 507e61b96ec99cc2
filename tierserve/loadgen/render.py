"""Text output: hey's summary layout, then the LLM figures of vLLM's serving benchmark."""

from __future__ import annotations

import json

from tierserve.loadgen.flags import BenchConfig
from tierserve.loadgen.report import Report
from tierserve.loadgen.stats import Summary, hey_bar

BAR_CHAR = "■"  # hey's


def _secs(value: float) -> str:
    return f"{value:4.4f}"


def _ms(value: float) -> str:
    return f"{value * 1000:10.2f}"


def _slo_text(report: Report) -> str:
    slo = report.llm.slo
    parts = [
        f"{name}<={value * 1000:g}ms"
        for name, value in (("ttft", slo.ttft_s), ("tpot", slo.tpot_s), ("e2e", slo.e2e_s))
        if value is not None
    ]
    return ", ".join(parts)


def hey_text(report: Report) -> str:
    """hey's default template, filled in the same order and number formats."""
    out = ["", "Summary:"]
    out.append(f"  Total:\t{_secs(report.total_s)} secs")
    out.append(f"  Slowest:\t{_secs(report.slowest_s)} secs")
    out.append(f"  Fastest:\t{_secs(report.fastest_s)} secs")
    out.append(f"  Average:\t{_secs(report.average_s)} secs")
    out.append(f"  Requests/sec:\t{_secs(report.requests_per_s)}")
    if report.total_bytes > 0:
        out.append("  ")
        out.append(f"  Total data:\t{report.total_bytes} bytes")
        out.append(f"  Size/request:\t{report.bytes_per_request} bytes")
    out += ["", "Response time histogram:"]
    peak = max((b.count for b in report.histogram), default=0)
    for b in report.histogram:
        out.append(f"  {b.mark_s:4.3f} [{b.count}]\t|{BAR_CHAR * hey_bar(b.count, peak)}")
    out += ["", "", "Latency distribution:"]
    out += [f"  {p.percentage}% in {_secs(p.latency_s)} secs" for p in report.latency_distribution]
    out += ["", "Details (average, fastest, slowest):"]
    for ph in report.details:
        out.append(
            f"  {ph.name}:\t{_secs(ph.average_s)} secs, {_secs(ph.fastest_s)} secs, "
            f"{_secs(ph.slowest_s)} secs"
        )
    out += ["", "Status code distribution:"]
    out += [f"  [{code}]\t{n} responses" for code, n in report.status_codes.items()]
    out.append("")
    if report.errors:
        out.append("Error distribution:")
        out += [f"  [{n}]\t{err}" for err, n in report.errors.items()]
        out.append("")
    return "\n".join(out)


def llm_text(report: Report, streamed: bool) -> str:
    llm = report.llm
    out = ["LLM figures (vLLM benchmark definitions):"]
    if llm.requests == 0:
        out.append("  no 2xx response reported token usage (not an OpenAI-compatible endpoint?)")
        return "\n".join([*out, ""])
    per_request = llm.completion_tokens / llm.requests
    out.append(f"  Requests with tokens:\t{llm.requests}")
    out.append(f"  Prompt tokens:\t{llm.prompt_tokens}")
    out.append(f"  Completion tokens:\t{llm.completion_tokens} ({per_request:.1f}/request)")
    out.append(f"  Output tokens/sec:\t{llm.output_tokens_per_s:.2f}")
    out.append(f"  Total tokens/sec:\t{llm.total_tokens_per_s:.2f}")
    out.append("")
    out.append(f"  {'(ms)':<8}{'mean':>10} {'p50':>10} {'p90':>10} {'p99':>10}")
    rows: list[tuple[str, Summary | None]] = [
        ("TTFT", llm.ttft),
        ("TPOT", llm.tpot),
        ("ITL", llm.itl),
        ("E2E", llm.e2e),
    ]
    for name, s in rows:
        if s is None:
            continue
        out.append(f"  {name:<8}{_ms(s.mean)} {_ms(s.p50)} {_ms(s.p90)} {_ms(s.p99)}")
    if not streamed:
        out.append("  TTFT, TPOT, ITL: not measured (responses were not streamed; add --stream)")
    if llm.goodput is not None:
        gp = llm.goodput
        out.append("")
        out.append(
            f"  Goodput ({_slo_text(report)}):\t{gp.requests_per_s:.4f} requests/sec "
            f"({gp.good}/{gp.total} = {gp.attainment_pct:.1f} % met the SLO)"
        )
    return "\n".join([*out, ""])


def text(report: Report, cfg: BenchConfig) -> str:
    parts = [hey_text(report)]
    if report.interrupted:
        parts.append("Interrupted: figures cover the requests completed before the stop.\n")
    if cfg.body or report.llm.requests:
        parts.append(llm_text(report, streamed=cfg.stream or report.llm.ttft is not None))
    return "\n".join(parts)


def json_text(report: Report, cfg: BenchConfig) -> str:
    doc = {
        "config": {
            "url": cfg.url,
            "method": cfg.method,
            "mode": cfg.mode,
            "requests": None if cfg.duration_s is not None else cfg.requests,
            "concurrency": cfg.concurrency,
            "qps_per_worker": cfg.qps_per_worker or None,
            "duration_s": cfg.duration_s,
            "timeout_s": cfg.timeout_s,
            "rate_per_s": cfg.rate_per_s,
            "seed": cfg.seed if cfg.rate_per_s is not None else None,
            "stream": cfg.stream,
        },
        **report.as_dict(),
    }
    return json.dumps(doc, indent=2)

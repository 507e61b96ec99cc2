"""``tierserve bench`` against a real emulator process: token counts, hey's output, --json,
Poisson schedules, concurrency caps, keep-alive, errors."""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import time
from typing import Any

import pytest
from benchkit import SEED_BODY, EmulatorProcess, bench, chat_body
from typer.testing import CliRunner

from tierserve.cli.main import app
from tierserve.loadgen.flags import parse_flags
from tierserve.loadgen.main import run_bench
from tierserve.loadgen.result import RequestResult
from tierserve.loadgen.runner import Runner
from tierserve.loadgen.schedule import poisson_schedule

JSON = ["-m", "POST", "-H", "Content-Type: application/json"]


def run_json(*argv: str) -> dict[str, Any]:
    run = bench(*argv, "--json")
    assert run.code == 0, run.err
    doc: dict[str, Any] = json.loads(run.out)
    return doc


async def run_results(*argv: str) -> list[RequestResult]:
    cfg = parse_flags(list(argv))
    assert cfg is not None
    return (await Runner(cfg).run()).results


def test_non_streaming_token_counts_are_consistent(emulator: EmulatorProcess) -> None:
    doc = run_json("-n", "12", "-c", "4", *JSON, "-d", chat_body(8), emulator.chat_url)
    llm = doc["llm"]
    assert doc["status_codes"] == {"200": 12}
    assert llm["requests"] == 12
    assert llm["completion_tokens"] == 8 * 12  # max_tokens x successful requests
    assert llm["prompt_tokens"] == 11 * 12  # the seed's prompt is 11 tokens
    assert llm["ttft_s"] is None and llm["itl_s"] is None  # not streamed
    assert llm["e2e_s"]["count"] == 12
    assert llm["output_tokens_per_s"] == pytest.approx(96 / doc["summary"]["total_s"])


def test_streaming_token_counts_ttft_and_itl(emulator: EmulatorProcess) -> None:
    doc = run_json("-n", "12", "-c", "4", *JSON, "-d", chat_body(8), "--stream", emulator.chat_url)
    llm = doc["llm"]
    assert llm["requests"] == 12
    assert llm["completion_tokens"] == 8 * 12
    assert llm["ttft_s"]["count"] == 12 and llm["tpot_s"]["count"] == 12
    assert llm["itl_s"]["count"] == 7 * 12  # 8 content chunks -> 7 gaps per request
    assert 0 < llm["ttft_s"]["mean"] < llm["e2e_s"]["mean"]


async def test_streamed_chunks_match_usage(emulator: EmulatorProcess) -> None:
    results = await run_results(
        "-n", "6", "-c", "3", *JSON, "-d", chat_body(5), "--stream", emulator.chat_url
    )
    assert len(results) == 6
    for r in results:
        assert r.ok and r.streamed
        assert r.content_chunks == r.completion_tokens == 5
        assert r.ttft_s is not None and len(r.itl_s) == 4


def test_the_seeds_hey_line_with_tierserve_bench(emulator: EmulatorProcess) -> None:
    """hey -z 5m -c 5 ... with `hey` replaced by `tierserve bench` (and -z shortened)."""
    argv = ["bench", "-z", "2s", "-c", "5", "-m", "POST", "-host", "deepseek-default.example.com"]
    argv += ["-H", "Content-Type: application/json", "-d", SEED_BODY, emulator.chat_url]
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 0, result.output
    out = result.stdout
    for heading in (
        "Summary:",
        "Requests/sec:",
        "Total data:",
        "Response time histogram:",
        "Latency distribution:",
        "Details (average, fastest, slowest):",
        "DNS+dialup:",
        "resp wait:",
        "Status code distribution:",
        "LLM figures",
        "Output tokens/sec:",
    ):
        assert heading in out, heading
    assert "Error distribution:" not in out
    ok = int(re.search(r"\[200\]\t(\d+) responses", out).group(1))  # type: ignore[union-attr]
    # 5 workers, ~0.24 s per 512-token request, 2 s: a few rounds
    assert ok >= 10
    assert f"Completion tokens:\t{512 * ok} (512.0/request)" in out
    assert f"Prompt tokens:\t{11 * ok}" in out
    assert len(re.findall(r"^  \d\.\d{3} \[\d+\]\t\|", out, flags=re.M)) == 11  # hey's rows


def test_json_shape(emulator: EmulatorProcess) -> None:
    slo = ["--stream", "--slo", "ttft=10s,tpot=1s"]
    doc = run_json("-n", "5", "-c", "5", *JSON, "-d", chat_body(4), *slo, emulator.chat_url)
    assert set(doc) == {
        "config",
        "summary",
        "histogram",
        "latency_distribution",
        "details",
        "status_codes",
        "errors",
        "llm",
    }
    assert doc["config"]["mode"] == "closed-loop" and doc["config"]["stream"] is True
    assert doc["summary"]["requests"] == doc["summary"]["responses"] == 5
    assert len(doc["histogram"]) == 11
    assert sum(b["count"] for b in doc["histogram"]) == 5
    assert set(doc["details"]) == {
        "DNS+dialup",
        "DNS-lookup",
        "req write",
        "resp wait",
        "resp read",
    }
    assert doc["errors"] == {}
    for key in ("ttft_s", "tpot_s", "itl_s", "e2e_s"):
        assert set(doc["llm"][key]) == {"count", "mean", "p50", "p90", "p99", "min", "max"}
    assert doc["llm"]["slo"] == {"ttft_s": 10.0, "tpot_s": 1.0}
    gp = doc["llm"]["goodput"]
    assert gp["good_requests"] == gp["requests"] == 5  # generous SLO: every request meets it
    assert gp["attainment_pct"] == 100.0


async def test_poisson_schedule_is_the_seeded_one(emulator: EmulatorProcess) -> None:
    argv = ["-n", "15", "-c", "15", "--rate", "100", "--seed", "5", *JSON, "-d", chat_body(2)]
    first = await run_results(*argv, emulator.chat_url)
    second = await run_results(*argv, emulator.chat_url)
    expected = poisson_schedule(100.0, seed=5, requests=15)
    for results in (first, second):
        assert sorted(r.scheduled_s or 0.0 for r in results) == expected
        assert all(r.ok for r in results)
        # never sent before its arrival time (sent late only by the event loop)
        assert all(r.offset_s >= (r.scheduled_s or 0.0) - 1e-3 for r in results)
    other = await run_results(
        *argv[:-4], "--seed", "6", *JSON, "-d", chat_body(2), emulator.chat_url
    )
    assert sorted(r.scheduled_s or 0.0 for r in other) != expected


async def test_start_at_waits_for_the_wall_clock_time(emulator: EmulatorProcess) -> None:
    """--start-at: nothing is sent before the given Unix time; the run starts there."""
    start = time.time() + 0.4
    cfg = parse_flags(["-n", "3", "-c", "3", "--start-at", f"{start}", *JSON, "-d", chat_body(2),
                       emulator.chat_url])  # fmt: skip
    assert cfg is not None and cfg.start_at == pytest.approx(start)
    report = await run_bench(cfg)
    assert time.time() >= start
    assert report.requests == 3
    late = await run_bench(dataclasses.replace(cfg, start_at=time.time() - 10))  # past: at once
    assert late.requests == 3


async def test_poisson_with_duration_and_concurrency_cap(emulator: EmulatorProcess) -> None:
    results = await run_results(
        "-z", "300ms", "-c", "2", "--rate", "200", *JSON, "-d", chat_body(16), emulator.chat_url
    )
    assert results and all(r.ok for r in results)
    assert all((r.scheduled_s or 0.0) < 0.3 for r in results)
    events = sorted(
        [(r.offset_s, 1) for r in results] + [(r.offset_s + r.duration_s, -1) for r in results],
        key=lambda e: (e[0], e[1]),
    )
    in_flight = peak = 0
    for _, delta in events:
        in_flight += delta
        peak = max(peak, in_flight)
    assert peak <= 2  # -c caps the requests in flight


async def test_keepalive_reuses_one_connection_and_disable_keepalive_dials_each_time(
    emulator: EmulatorProcess,
) -> None:
    argv = ["-n", "5", "-c", "1", *JSON, "-d", chat_body(1), emulator.chat_url]
    kept = await run_results(*argv)
    assert sum(r.conn_s > 0 for r in kept) == 1
    closed = await run_results("-disable-keepalive", *argv)
    assert all(r.conn_s > 0 for r in closed)


async def test_q_limits_each_worker(emulator: EmulatorProcess) -> None:
    argv = ["-n", "4", "-c", "1", "-q", "20", *JSON, "-d", chat_body(1), emulator.chat_url]
    starts = sorted(r.offset_s for r in await run_results(*argv))
    assert len(starts) == 4
    # 20 requests/s per worker on hey's ticker grid: request k starts no sooner than k * 50 ms
    assert all(t >= k * 0.05 - 1e-3 for k, t in enumerate(starts))


def test_unknown_model_is_a_status_not_an_error(emulator: EmulatorProcess) -> None:
    body = chat_body(4).replace('"deepseek-r1"', '"no-such-model"')
    doc = run_json("-n", "3", "-c", "1", *JSON, "-d", body, emulator.chat_url)
    assert doc["status_codes"] == {"404": 3}
    assert doc["errors"] == {} and doc["llm"]["requests"] == 0


def test_timeouts_go_to_the_error_distribution(emulator: EmulatorProcess) -> None:
    run = bench("-n", "2", "-c", "2", "-t", "0.05", *JSON, "-d", SEED_BODY, emulator.chat_url)
    assert run.code == 0
    assert "Error distribution:\n  [2]\tPOST http://127.0.0.1:" in run.out
    assert "timeout" in run.out


def test_refused_connections_go_to_the_error_distribution() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound, not listening: connections are refused
        doc = run_json("-n", "3", "-c", "1", f"http://127.0.0.1:{port}/")
    assert doc["summary"]["responses"] == 0 and doc["summary"]["requests"] == 3
    [(message, count)] = doc["errors"].items()
    assert count == 3 and "ClientConnectorError" in message


async def test_hey_headers_body_and_auth_on_the_wire(echo_server: tuple[str, Any]) -> None:
    url, seen = echo_server
    results = await run_results(
        "-n", "2", "-c", "1", "-m", "put", "-host", "deepseek-default.example.com",
        "-T", "application/x-test", "-H", "X-One: 1", "-H", "X-Two: 2", "-A", "text/plain",
        "-a", "user:secret", "-d", "hello", url,
    )  # fmt: skip
    assert [r.status for r in results] == [200, 200]
    req = seen.requests[0]
    headers = req["headers"]
    assert req["method"] == "PUT" and req["body"] == b"hello"
    assert headers["Host"] == "deepseek-default.example.com"
    assert headers["Content-Type"] == "application/x-test"
    assert (headers["X-One"], headers["X-Two"], headers["Accept"]) == ("1", "2", "text/plain")
    assert headers["Authorization"] == "Basic dXNlcjpzZWNyZXQ="  # base64("user:secret")
    assert headers["User-Agent"].startswith("tierserve-bench/")
